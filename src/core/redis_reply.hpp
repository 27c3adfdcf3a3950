// Redis replies: hiredis's redisReader parses RESP; this keeps what the link
// needs of each top-level reply (its kind, an error's text, an integer's
// value) and a flat, bounded copy of its elements (for ROLE, SENTINEL and
// CLUSTER SLOTS replies), so that parsing allocates no reply objects. Every
// byte is checked against reply_limits before hiredis has it: a reply larger
// than the module can need fails as soon as its header says so.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace resend {

enum class reply_kind : unsigned char { status, error, string, integer, nil, array };

// One element of a reply, in pre-order: the reply itself first, then an
// array's elements (and theirs) right after it.
struct reply_element {
    reply_kind kind;
    unsigned depth;          // 0: the reply itself; its elements 1, theirs 2, ...
    std::size_t count;       // an array's number of elements
    long long integer;       // reply_kind::integer
    std::string_view text;   // a string's, status's or error's bytes
};

struct redis_reply {
    reply_kind kind;
    std::string_view error;  // the error text for reply_kind::error; valid until the next read
    long long integer;       // the value for reply_kind::integer (0 otherwise)
    // The reply's elements, valid until the next read; `truncated` when the
    // reply had more elements or text than the reader keeps (the elements
    // kept are then a prefix, their text possibly cut).
    std::span<const reply_element> elements;
    bool truncated;
};

// What one reply may be at most. The module asks for XADD ids, script
// integers, ROLE, SENTINEL and CLUSTER SLOTS replies: strings of a few
// hundred bytes at most (an IP, a host name, a node id), short lines (an
// error's text), and arrays of up to 16384 slot ranges. A bulk string's or
// an aggregate's length over its limit, or a line (status, error, integer,
// a header) longer than `line`, fails the reader at that byte: hiredis never
// has the rest, so what is buffered for an unfinished reply stays below
// line + bulk + a few bytes (plus the bytes of one feed).
struct reply_limits {
    std::size_t bulk = 64 * 1024;   // bytes of one bulk string
    std::size_t elements = 65536;   // elements of one array (pairs of a RESP3 map count twice)
    std::size_t line = 64 * 1024;   // bytes of one line, without its CR LF
};

// Follows RESP's framing (a type byte, a line, a bulk string's body) over
// the bytes as they come, to find the first byte past reply_limits. Aggregates
// need no stack: their elements are items that follow in turn.
class reply_scanner {
public:
    explicit reply_scanner(const reply_limits &limits) noexcept : limits_(limits) {}
    // How many of the bytes may go to the parser: `size`, or fewer when the
    // byte there passes a limit (then exceeded() says which, for good).
    std::size_t scan(const char *data, std::size_t size) noexcept;
    // Null while within the limits; else what was over them.
    const char *exceeded() const noexcept { return exceeded_ ? why_ : nullptr; }
    const reply_limits &limits() const noexcept { return limits_; }

private:
    void end_line() noexcept;
    std::size_t fail(std::size_t at, const char *what, std::size_t limit) noexcept;

    enum class state : unsigned char { type, line, body };
    reply_limits limits_;
    state state_ = state::type;
    char type_ = 0;
    bool cr_ = false;          // the line's last byte was CR
    bool counting_ = false;    // the line's length digits are being read
    bool negative_ = false;
    bool malformed_ = false;   // not a length (hiredis fails it)
    std::size_t line_size_ = 0;
    std::size_t number_ = 0;
    std::size_t body_left_ = 0;
    bool exceeded_ = false;
    char why_[96];
};

// Element `i`'s position after its whole subtree, in `elements`.
std::size_t reply_skip(std::span<const reply_element> elements, std::size_t i) noexcept;

class reply_reader {
public:
    explicit reply_reader(const reply_limits &limits = {}) noexcept;
    ~reply_reader();
    reply_reader(const reply_reader &) = delete;
    reply_reader &operator=(const reply_reader &) = delete;

    bool valid() const noexcept { return reader_ != nullptr; }

    // Appends bytes received from Redis. False when out of memory, or after a
    // protocol error (hiredis then refuses bytes until reset()). Bytes past
    // a reply limit are not kept: next() gives the replies before them, then
    // protocol_error.
    bool feed(const char *data, std::size_t size) noexcept;

    enum class status { reply, incomplete, protocol_error };
    // The next complete top-level reply, if any.
    status next(redis_reply &reply) noexcept;

    // Why next() gave protocol_error: "protocol error", or the reply limit
    // passed ("a reply over the limits: ...").
    const char *failure() const noexcept;
    // Bytes received and not yet parsed (what the reader holds for an
    // unfinished reply once next() says incomplete).
    std::size_t buffered() const noexcept;

    // Forgets buffered bytes (after a reconnect).
    void reset() noexcept;

    // Part of the reader's callbacks; not for callers.
    void note(reply_kind kind, const char *text, std::size_t size, long long integer = 0) noexcept;
    void keep(unsigned depth, reply_kind kind, const char *text, std::size_t size, long long integer,
              std::size_t count) noexcept;

    // What one reply's elements may hold at most.
    static constexpr std::size_t max_elements = 512;
    static constexpr std::size_t max_text = 8192;

private:
    void *reader_;
    reply_scanner scanner_;
    const char *failure_ = "protocol error";
    reply_kind last_kind_ = reply_kind::nil;
    std::size_t error_size_ = 0;
    long long integer_ = 0;
    char error_[128];
    std::size_t element_count_ = 0;
    std::size_t text_used_ = 0;
    bool truncated_ = false;
    reply_element elements_[max_elements];
    char text_[max_text];
};

// An error reply that says Redis cannot take writes now but may soon
// (LOADING, OOM, READONLY, MASTERDOWN): worth keeping the command for later.
bool redis_cannot_write_now(std::string_view error) noexcept;

}  // namespace resend
