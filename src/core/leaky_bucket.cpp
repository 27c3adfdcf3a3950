#include "leaky_bucket.hpp"

#include <charconv>

namespace resend {

std::optional<rate> parse_rate(std::string_view text) noexcept {
    std::uint64_t requests = 0;
    auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), requests);
    if (error != std::errc() || requests == 0 || requests > 1000000) return std::nullopt;
    std::string_view unit = text.substr(static_cast<std::size_t>(end - text.data()));
    if (unit == "r/s") return rate{requests, 1000};
    if (unit == "r/m") return rate{requests, 60 * 1000};
    if (unit == "r/h") return rate{requests, 60 * 60 * 1000};
    if (unit == "r/d") return rate{requests, 24 * 60 * 60 * 1000};
    return std::nullopt;
}

std::string_view format_rate(rate r, char (&out)[rate_text_size]) noexcept {
    auto [end, error] = std::to_chars(out, out + rate_text_size - 3, r.requests);
    if (error != std::errc()) return {};
    std::string_view unit = r.period_ms == 1000             ? "r/s"
                            : r.period_ms == 60 * 1000      ? "r/m"
                            : r.period_ms == 60 * 60 * 1000 ? "r/h"
                                                            : "r/d";
    for (char c : unit) *end++ = c;
    return {out, static_cast<std::size_t>(end - out)};
}

std::uint64_t bucket_drain(std::uint64_t excess, rate r, std::uint64_t elapsed_ms) noexcept {
    // drained = elapsed * requests * 1000 / period, in 128 bits: no overflow
    // for any elapsed time or rate.
    unsigned __int128 drained =
        static_cast<unsigned __int128>(elapsed_ms) * r.requests * 1000 / r.period_ms;
    return drained >= excess ? 0 : excess - static_cast<std::uint64_t>(drained);
}

bucket_verdict bucket_take(bucket current, rate r, std::uint64_t burst, std::int64_t now_ms) noexcept {
    std::int64_t elapsed = now_ms - current.last;
    if (elapsed < -60000) {
        elapsed = 1;
    } else if (elapsed < 0) {
        elapsed = 0;
    }
    // As limit_req: the drain may also take the new request's 1000 (a key
    // asking exactly once per 1/rate never builds up an excess).
    std::uint64_t excess = bucket_drain(current.excess + 1000, r, static_cast<std::uint64_t>(elapsed));
    std::uint64_t limit = burst * 1000;
    if (excess <= limit) return {true, {excess, now_ms}, 0, excess};

    // Refused: wait until the drain brings `excess` down to `limit`, i.e.
    // (excess - limit) milli-requests at requests*1000 per period.
    unsigned __int128 owed = static_cast<unsigned __int128>(excess - limit) * r.period_ms;
    std::uint64_t per = r.requests * 1000;
    auto wait = static_cast<std::uint64_t>((owed + per - 1) / per);
    return {false, current, wait, excess};
}

bool bucket_idle(bucket current, rate r, std::int64_t now_ms) noexcept {
    std::int64_t elapsed = now_ms - current.last;
    if (elapsed < 0) return false;
    return bucket_drain(current.excess + 1000, r, static_cast<std::uint64_t>(elapsed)) == 0;
}

std::optional<bucket> bucket_refund(bucket current) noexcept {
    if (current.excess < 1000) return std::nullopt;
    current.excess -= 1000;
    return current;
}

}  // namespace resend
