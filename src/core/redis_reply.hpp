// Redis replies: hiredis's redisReader parses RESP; this keeps only what the
// link needs of each top-level reply (its kind, an error's text, an
// integer's value), so that
// parsing allocates no reply objects.
#pragma once

#include <cstddef>
#include <string_view>

namespace resend {

enum class reply_kind : unsigned char { status, error, string, integer, nil, array };

struct redis_reply {
    reply_kind kind;
    std::string_view error;  // the error text for reply_kind::error; valid until the next read
    long long integer;       // the value for reply_kind::integer (0 otherwise)
};

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

private:
    void *reader_;
    reply_kind last_kind_ = reply_kind::nil;
    std::size_t error_size_ = 0;
    long long integer_ = 0;
    char error_[128];
};

// An error reply that says Redis cannot take writes now but may soon
// (LOADING, OOM, READONLY, MASTERDOWN): worth keeping the command for later.
bool redis_cannot_write_now(std::string_view error) noexcept;

}  // namespace resend
