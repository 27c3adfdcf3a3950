// Rate limiting arithmetic: a leaky bucket per key, as nginx's limit_req,
// reject-only. The bucket holds `excess` in milli-requests (1000 = one
// request) and drains at the configured rate; a request adds 1000 and is
// refused when the result would exceed burst * 1000.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace resend {

// N requests per period: "10r/s", "10r/m", "3r/h", "1r/d".
struct rate {
    std::uint64_t requests;   // N >= 1
    std::uint64_t period_ms;  // 1000, 60000, 3600000 or 86400000
};

std::optional<rate> parse_rate(std::string_view text) noexcept;

// A rate's one spelling, as parse_rate() reads it: N without leading zeros,
// then its unit ("3r/h" for "03r/h" too). What names a fleet's buckets, so
// that nodes spelling one rate differently share them.
inline constexpr std::size_t rate_text_size = 24;
std::string_view format_rate(rate r, char (&out)[rate_text_size]) noexcept;

struct bucket {
    std::uint64_t excess;  // milli-requests waiting to drain
    std::int64_t last;     // when excess was computed, in ms (a monotonic clock)
};

struct bucket_verdict {
    bool allowed;
    bucket next;                  // the bucket to store when allowed (unchanged when refused)
    std::uint64_t retry_after_ms; // when refused: wait until one request would pass
    std::uint64_t excess;         // what this request made the excess (over the limit when refused)
};

// What is left of `excess` after `elapsed_ms` at `r`; exact (no float, no
// overflow) for any elapsed time, so a key idle for years drains to 0.
std::uint64_t bucket_drain(std::uint64_t excess, rate r, std::uint64_t elapsed_ms) noexcept;

// The first request of a key: it passes and leaves no excess, so that a key
// gets burst + 1 requests at once, as with limit_req.
inline bucket bucket_first(std::int64_t now_ms) noexcept { return {0, now_ms}; }

// One more request at `now_ms`. A clock that went back less than a minute counts
// as no time passed; further back (a clock reset), as one millisecond, as
// limit_req does.
bucket_verdict bucket_take(bucket current, rate r, std::uint64_t burst, std::int64_t now_ms) noexcept;

// True when the key can be forgotten: it has drained a whole request more
// than its excess, so a first request now (burst + 1 allowed) is no more
// lenient than remembering it. Before that, forgetting would let a silenced
// address through early.
bool bucket_idle(bucket current, rate r, std::int64_t now_ms) noexcept;

// Gives one request back (a request refused after it was counted). A
// bucket holds its first request as excess 0 (bucket_first), so giving back
// less than one request's worth means the key has nothing left: nullopt,
// forget it.
std::optional<bucket> bucket_refund(bucket current) noexcept;

}  // namespace resend
