#include "request.hpp"

#include <new>

#define SIMDJSON_EXCEPTIONS 0
#include <simdjson.h>

#include "email.hpp"

namespace resend {

static_assert(body_padding == simdjson::SIMDJSON_PADDING);

struct body_parser::state {
    simdjson::dom::parser json;
};

body_parser::body_parser() noexcept : state_(new (std::nothrow) state) {}

body_parser::~body_parser() { delete state_; }

bool body_parser::reserve(std::size_t max_body) noexcept {
    // simdjson counts the document itself as a level: json_max_depth + 1
    // lets the root object and json_max_depth - 1 containers inside it in.
    return state_ != nullptr &&
           state_->json.allocate(max_body, json_max_depth + 1) == simdjson::SUCCESS;
}

parsed_request body_parser::parse(const char *body, std::size_t size) noexcept {
    simdjson::dom::element root;
    // realloc_if_needed=false: the caller guarantees the padding, so the
    // parser never copies the body onto the heap.
    if (state_ == nullptr ||
        state_->json.parse(body, size, false).get(root) != simdjson::SUCCESS) {
        return {outcome::invalid_json, {}};
    }

    simdjson::dom::object members;
    if (root.get_object().get(members) != simdjson::SUCCESS) {
        return {outcome::invalid_request, {}};
    }

    // Walk every member: a second `email` (also one spelled with escapes,
    // which the parser has decoded) makes the request ambiguous.
    std::string_view email;
    bool seen = false;
    for (simdjson::dom::key_value_pair member : members) {
        if (member.key != "email") continue;
        if (seen || member.value.get_string().get(email) != simdjson::SUCCESS) {
            return {outcome::invalid_request, {}};
        }
        seen = true;
    }
    if (!seen) return {outcome::invalid_request, {}};
    if (!email_is_valid(email)) return {outcome::invalid_email, {}};
    return {outcome::accepted, email};
}

}  // namespace resend
