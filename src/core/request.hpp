// Body -> request: strict JSON parsing and the `email` member.
#pragma once

#include <cstddef>
#include <string_view>

#include "outcome.hpp"

namespace resend {

// Bytes that must be readable (any value) after the body handed to parse():
// the JSON parser reads ahead in SIMD blocks. Equal to SIMDJSON_PADDING.
inline constexpr std::size_t body_padding = 64;

// Nesting levels allowed, the root object counting as one; deeper is
// invalid_json. No member of this request needs depth, and
// a bound keeps the parser's work per byte constant.
inline constexpr std::size_t json_max_depth = 32;

struct parsed_request {
    outcome result;          // accepted, invalid_json, invalid_request or invalid_email
    std::string_view email;  // as sent (JSON escapes decoded); valid until the next parse()
};

// One per worker: it owns the parser's buffers, sized once, so that parsing
// a request allocates nothing.
class body_parser {
public:
    body_parser() noexcept;
    ~body_parser();
    body_parser(const body_parser &) = delete;
    body_parser &operator=(const body_parser &) = delete;

    // Sizes the buffers for bodies up to `max_body` bytes. False when out of memory.
    bool reserve(std::size_t max_body) noexcept;

    // RFC 8259 text (UTF-8 validated, no trailing bytes, depth-limited) whose
    // root is an object with exactly one `email` member, a string that passes
    // the email policy. Other members are ignored. `body` must be followed by
    // body_padding readable bytes and `size` must not exceed reserve()'s.
    // Numbers must fit a 64-bit integer or a finite double (RFC 8259 section 9
    // lets a parser set that limit); others are invalid_json.
    parsed_request parse(const char *body, std::size_t size) noexcept;

private:
    struct state;
    state *state_;
};

}  // namespace resend
