// Redis replies: hiredis's redisReader parses RESP; this keeps what the link
// needs of each top-level reply (its kind, an error's text, an integer's
// value) and a flat, bounded copy of its elements (for ROLE, SENTINEL and
// CLUSTER SLOTS replies), so that parsing allocates no reply objects.
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

// Element `i`'s position after its whole subtree, in `elements`.
std::size_t reply_skip(std::span<const reply_element> elements, std::size_t i) noexcept;

class reply_reader {
public:
    reply_reader() noexcept;
    ~reply_reader();
    reply_reader(const reply_reader &) = delete;
    reply_reader &operator=(const reply_reader &) = delete;

    bool valid() const noexcept { return reader_ != nullptr; }

    // Appends bytes received from Redis. False when out of memory, or after a
    // protocol error (hiredis then refuses bytes until reset()).
    bool feed(const char *data, std::size_t size) noexcept;

    enum class status { reply, incomplete, protocol_error };
    // The next complete top-level reply, if any.
    status next(redis_reply &reply) noexcept;

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
