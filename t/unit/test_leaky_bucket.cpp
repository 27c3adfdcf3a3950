// Rate limiting arithmetic: parse_rate ("10r/s" .. "1r/d") and the leaky
// bucket in milli-requests (as nginx's limit_req, reject-only): a key's first
// request passes with no excess, each further one adds 1000 after the drain at
// requests * 1000 per period and is refused above burst * 1000; retry_after_ms
// is the wait until one more request would pass.
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <vector>
#include <utility>

#include "core/leaky_bucket.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;

namespace {

constexpr std::uint64_t u64_max = std::numeric_limits<std::uint64_t>::max();
constexpr std::int64_t i64_max = std::numeric_limits<std::int64_t>::max();
constexpr std::int64_t i64_min = std::numeric_limits<std::int64_t>::min();

constexpr std::uint64_t second = 1000;
constexpr std::uint64_t minute = 60 * second;
constexpr std::uint64_t hour = 60 * minute;
constexpr std::uint64_t day = 24 * hour;

// --- helpers ---------------------------------------------------------------------

resend::rate parsed_rate(std::string_view text, const char *file, int line) {
    std::optional<resend::rate> r = resend::parse_rate(text);
    if (!r) {
        print_error("parse_rate(\"%s\") should parse\n", unit::printable(text).c_str());
        unit::record_failure(file, line);
        return {1, 1000};
    }
    return *r;
}
#define rate_of(text) parsed_rate((text), __FILE__, __LINE__)

void expect_rate(std::string_view text, std::uint64_t requests, std::uint64_t period_ms,
                 const char *file, int line) {
    std::optional<resend::rate> r = resend::parse_rate(text);
    if (!r) {
        print_error("parse_rate(\"%s\") should be %llur per %llu ms, got nullopt\n",
                    unit::printable(text).c_str(), static_cast<unsigned long long>(requests),
                    static_cast<unsigned long long>(period_ms));
        unit::record_failure(file, line);
    } else if (r->requests != requests || r->period_ms != period_ms) {
        print_error("parse_rate(\"%s\") should be %llur per %llu ms, got %llur per %llu ms\n",
                    unit::printable(text).c_str(), static_cast<unsigned long long>(requests),
                    static_cast<unsigned long long>(period_ms),
                    static_cast<unsigned long long>(r->requests),
                    static_cast<unsigned long long>(r->period_ms));
        unit::record_failure(file, line);
    }
}
#define check_rate(text, requests, period) expect_rate((text), (requests), (period), __FILE__, __LINE__)

void expect_no_rate(std::string_view text, const char *file, int line) {
    std::optional<resend::rate> r = resend::parse_rate(text);
    if (r) {
        print_error("parse_rate(\"%s\") should be nullopt, got %llur per %llu ms\n",
                    unit::printable(text).c_str(), static_cast<unsigned long long>(r->requests),
                    static_cast<unsigned long long>(r->period_ms));
        unit::record_failure(file, line);
    }
}
#define check_no_rate(text) expect_no_rate((text), __FILE__, __LINE__)

void expect_bucket(resend::bucket actual, std::uint64_t excess, std::int64_t last, const char *what,
                   const char *file, int line) {
    if (actual.excess != excess || actual.last != last) {
        print_error("check failed: %s: got {excess %llu, last %lld}, expected {excess %llu, last %lld}\n",
                    what, static_cast<unsigned long long>(actual.excess),
                    static_cast<long long>(actual.last), static_cast<unsigned long long>(excess),
                    static_cast<long long>(last));
        unit::record_failure(file, line);
    }
}
#define check_bucket(actual, excess, last) \
    expect_bucket((actual), (excess), (last), #actual, __FILE__, __LINE__)

// Unsigned 64-bit equality that prints values above LLONG_MAX correctly.
void expect_u64(std::uint64_t actual, std::uint64_t expected, const char *actual_text,
                const char *expected_text, const char *file, int line) {
    if (actual != expected) {
        print_error("check failed: %s == %s: %llu != %llu\n", actual_text, expected_text,
                    static_cast<unsigned long long>(actual), static_cast<unsigned long long>(expected));
        unit::record_failure(file, line);
    }
}
#define check_u64(actual, expected) \
    expect_u64((actual), (expected), #actual, #expected, __FILE__, __LINE__)

// A key that has just had its first request and then `burst` more, all at
// `now`: full to the limit, as after burst + 1 simultaneous requests.
resend::bucket full_bucket(resend::rate r, std::uint64_t burst, std::int64_t now) {
    resend::bucket b = resend::bucket_first(now);
    for (std::uint64_t i = 0; i < burst; ++i) {
        resend::bucket_verdict v = resend::bucket_take(b, r, burst, now);
        if (!v.allowed) {
            print_error("full_bucket: request %llu of burst %llu refused\n",
                        static_cast<unsigned long long>(i + 2), static_cast<unsigned long long>(burst));
            unit::record_failure(__FILE__, __LINE__);
        }
        b = v.next;
    }
    return b;
}

bool passes(resend::bucket b, resend::rate r, std::uint64_t burst, std::int64_t now) {
    return resend::bucket_take(b, r, burst, now).allowed;
}

// The first ms at or after `from` at which one more request passes (passing
// is monotonic in time for a stored bucket: the drain only grows).
std::int64_t first_passing_ms(resend::bucket b, resend::rate r, std::uint64_t burst, std::int64_t from) {
    std::int64_t lo = from, hi = from;
    std::int64_t step = 1;
    while (!passes(b, r, burst, hi)) {
        lo = hi + 1;
        hi += step;
        step *= 2;
    }
    while (lo < hi) {
        std::int64_t mid = lo + (hi - lo) / 2;
        if (passes(b, r, burst, mid)) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    return hi;
}

// --- parse_rate --------------------------------------------------------------------

void test_parse_rate_units(void **) {
    check_rate("10r/s", 10, second);
    check_rate("10r/m", 10, minute);
    check_rate("3r/h", 3, hour);
    check_rate("1r/d", 1, day);
    check_rate("1r/s", 1, 1000);
    check_rate("1r/m", 1, 60000);
    check_rate("1r/h", 1, 3600000);
    check_rate("1r/d", 1, 86400000);
    check_rate("25r/h", 25, hour);
    check_rate("999r/d", 999, day);
}

void test_parse_rate_bounds(void **) {
    for (std::string_view unit : {"r/s"sv, "r/m"sv, "r/h"sv, "r/d"sv}) {
        std::uint64_t period = unit == "r/s" ? second : unit == "r/m" ? minute : unit == "r/h" ? hour : day;
        check_rate("1" + std::string(unit), 1, period);
        check_rate("1000000" + std::string(unit), 1000000, period);
        check_rate("999999" + std::string(unit), 999999, period);
        check_no_rate("0" + std::string(unit));
        check_no_rate("00" + std::string(unit));
        check_no_rate("1000001" + std::string(unit));
        check_no_rate("10000000" + std::string(unit));
        check_no_rate("4294967296" + std::string(unit));
        check_no_rate("18446744073709551615" + std::string(unit));
        check_no_rate("18446744073709551616" + std::string(unit));  // out of range of uint64
        check_no_rate("99999999999999999999999999" + std::string(unit));
    }
}

// Spellings of one rate have one text (the fleet's bucket names); a
// spelling already in that form is its own (an upgraded fleet keeps its
// buckets).
void test_format_rate(void **) {
    const std::pair<std::string_view, std::string_view> rows[] = {
        {"3r/h", "3r/h"},       {"03r/h", "3r/h"},       {"0003r/h", "3r/h"},
        {"10r/s", "10r/s"},     {"010r/s", "10r/s"},     {"10r/m", "10r/m"},
        {"1r/d", "1r/d"},       {"01r/d", "1r/d"},       {"1000000r/d", "1000000r/d"},
        {"0001000000r/s", "1000000r/s"},
    };
    for (const auto &[text, expected] : rows) {
        std::optional<resend::rate> r = resend::parse_rate(text);
        if (!check(r.has_value())) continue;
        char out[resend::rate_text_size];
        std::string_view got = resend::format_rate(*r, out);
        if (got != expected) {
            print_error("format_rate(parse_rate(\"%s\")) is \"%s\", expected \"%s\"\n",
                        unit::printable(text).c_str(), unit::printable(got).c_str(),
                        unit::printable(expected).c_str());
            unit::record_failure(__FILE__, __LINE__);
        }
        // And it reads back as the same rate.
        std::optional<resend::rate> again = resend::parse_rate(got);
        if (check(again.has_value())) {
            check_eq(again->requests, r->requests);
            check_eq(again->period_ms, r->period_ms);
        }
    }
}

void test_parse_rate_rejects_malformed(void **) {
    check_no_rate("");
    check_no_rate("r/s");
    check_no_rate("/s");
    check_no_rate("10");
    check_no_rate("10r");
    check_no_rate("10r/");
    check_no_rate("10/s");
    check_no_rate("10rs");
    check_no_rate("10r\\s");
    check_no_rate("10 r/s");
    check_no_rate("10r /s");
    check_no_rate("10r/ s");
    check_no_rate(" 10r/s");
    check_no_rate("\t10r/s");
    check_no_rate("10r/s ");
    check_no_rate("10r/s\n");
    check_no_rate("10r/s\0"sv);
    check_no_rate("10\0r/s"sv);
    check_no_rate("10r/S");
    check_no_rate("10R/s");
    check_no_rate("10R/S");
    check_no_rate("10r/M");
    check_no_rate("10r/H");
    check_no_rate("10r/D");
    check_no_rate("10r/w");
    check_no_rate("10r/y");
    check_no_rate("10r/ms");
    check_no_rate("10r/ss");
    check_no_rate("10r/sec");
    check_no_rate("10r/min");
    check_no_rate("10r/s/s");
    check_no_rate("10r/s10");
    check_no_rate("10r/sr/s");
    check_no_rate("r/s10");
    check_no_rate("-1r/s");
    check_no_rate("-10r/m");
    check_no_rate("+1r/s");
    check_no_rate("1.5r/s");
    check_no_rate("1e3r/s");
    check_no_rate("0x10r/s");
    check_no_rate("1,000r/s");
    check_no_rate("1_000r/s");
    check_no_rate("١٠r/s");  // Arabic-Indic digits
    check_no_rate("10r/s\x80");
}

// Only the bytes of the view count, not what follows it in memory.
void test_parse_rate_reads_only_the_view(void **) {
    constexpr std::string_view text = "10r/sec";
    check_rate(text.substr(0, 5), 10, second);
    check_no_rate(text.substr(0, 4));  // "10r/"
    check_no_rate(text.substr(0, 6));  // "10r/se"
    check_no_rate(text.substr(1, 4));  // "0r/s"
    constexpr std::string_view longer = "210r/s";
    check_rate(longer.substr(1), 10, second);
    check_no_rate(longer.substr(2));  // "0r/s"
    check_rate("11r/s"sv.substr(1), 1, second);
    std::string exact = "3r/h";
    check_rate(std::string_view(exact.data(), exact.size()), 3, hour);
    check_no_rate(std::string_view(exact.data(), exact.size() - 1));
    check_no_rate(std::string_view(exact.data(), 0));
}

// --- the first request ---------------------------------------------------------------

void test_first_request_leaves_no_excess(void **) {
    check_bucket(resend::bucket_first(0), 0, 0);
    check_bucket(resend::bucket_first(123456789), 0, 123456789);
    check_bucket(resend::bucket_first(-5000), 0, -5000);
    check_bucket(resend::bucket_first(i64_max), 0, i64_max);
    check_bucket(resend::bucket_first(i64_min), 0, i64_min);
}

// --- burst arithmetic ------------------------------------------------------------------

void test_exactly_burst_plus_one_pass_at_once(void **) {
    const std::int64_t now = 1000000;
    for (std::string_view text : {"10r/m"sv, "1r/s"sv, "3r/h"sv, "1r/d"sv, "1000000r/s"sv}) {
        resend::rate r = rate_of(text);
        for (std::uint64_t burst : {0, 1, 2, 5, 100, 1000}) {
            resend::bucket b = resend::bucket_first(now);
            std::uint64_t passed = 1;
            for (;;) {
                resend::bucket_verdict v = resend::bucket_take(b, r, burst, now);
                if (!v.allowed) {
                    // refused: nothing changes, and it stays refused at this instant
                    check_bucket(v.next, b.excess, b.last);
                    check(v.retry_after_ms > 0);
                    resend::bucket_verdict again = resend::bucket_take(b, r, burst, now);
                    check(!again.allowed);
                    check_u64(again.retry_after_ms, v.retry_after_ms);
                    check_bucket(again.next, b.excess, b.last);
                    break;
                }
                check_eq(v.retry_after_ms, 0);
                check_bucket(v.next, passed * 1000, now);
                b = v.next;
                if (++passed > burst + 10) break;
            }
            if (passed != burst + 1) {
                print_error("%s burst %llu: %llu passed at once, expected %llu\n",
                            std::string(text).c_str(), static_cast<unsigned long long>(burst),
                            static_cast<unsigned long long>(passed),
                            static_cast<unsigned long long>(burst + 1));
                unit::record_failure(__FILE__, __LINE__);
            }
            check_bucket(b, burst * 1000, now);
        }
    }
}

struct retry_case {
    std::string_view rate;
    std::uint64_t burst;
    std::uint64_t retry_after_ms;  // after burst + 1 passes at the same instant
};

void test_retry_after_at_the_same_instant(void **) {
    const retry_case cases[] = {
        {"10r/m", 2, 6000},
        {"3r/h", 2, 1200000},
        {"1r/d", 2, 86400000},
        {"10r/m", 0, 6000},
        {"3r/h", 0, 1200000},
        {"1r/d", 0, 86400000},
        {"1r/d", 100, 86400000},
        {"10r/s", 1, 100},
        {"1r/s", 5, 1000},
        {"7r/s", 1, 143},        // 142.857... rounded up
        {"3r/m", 1, 20000},
        {"7r/m", 1, 8572},       // 8571.43...
        {"7r/h", 1, 514286},     // 514285.71...
        {"7r/d", 1, 12342858},   // 12342857.14...
        {"1000r/s", 1, 1},
        {"1000000r/s", 1, 1},    // 0.001 ms rounded up
        {"1000000r/m", 1, 1},    // 0.06 ms
        {"1000000r/h", 1, 4},    // 3.6 ms
        {"1000000r/d", 1, 87},   // 86.4 ms
        {"999999r/d", 3, 87},    // 86.400086...
    };
    const std::int64_t now = 5000000;
    for (const retry_case &c : cases) {
        resend::rate r = rate_of(c.rate);
        resend::bucket b = full_bucket(r, c.burst, now);
        resend::bucket_verdict v = resend::bucket_take(b, r, c.burst, now);
        if (v.allowed || v.retry_after_ms != c.retry_after_ms) {
            print_error("%s burst %llu: %s with retry_after_ms %llu, expected refused with %llu\n",
                        std::string(c.rate).c_str(), static_cast<unsigned long long>(c.burst),
                        v.allowed ? "allowed" : "refused",
                        static_cast<unsigned long long>(v.retry_after_ms),
                        static_cast<unsigned long long>(c.retry_after_ms));
            unit::record_failure(__FILE__, __LINE__);
            continue;
        }
        if (c.burst == 0) continue;  // see test_burst_zero_passes_one_request_per_period
        // the wait is exact: 1 ms earlier is still refused, at the wait one passes
        auto wait = static_cast<std::int64_t>(v.retry_after_ms);
        resend::bucket_verdict early = resend::bucket_take(b, r, c.burst, now + wait - 1);
        resend::bucket_verdict on_time = resend::bucket_take(b, r, c.burst, now + wait);
        if (early.allowed || !on_time.allowed) {
            print_error("%s burst %llu: at +%lld ms %s (expected refused), at +%lld ms %s (expected allowed)\n",
                        std::string(c.rate).c_str(), static_cast<unsigned long long>(c.burst),
                        static_cast<long long>(wait - 1), early.allowed ? "allowed" : "refused",
                        static_cast<long long>(wait), on_time.allowed ? "allowed" : "refused");
            unit::record_failure(__FILE__, __LINE__);
            continue;
        }
        check_bucket(early.next, b.excess, b.last);
        check_eq(on_time.next.last, now + wait);
        check(on_time.next.excess <= c.burst * 1000);
        std::uint64_t left = resend::bucket_drain(b.excess, r, v.retry_after_ms);
        if (left > 0 && b.excess - left < 2000) {
            // less than two requests drained: full again after this one
            check_u64(on_time.next.excess, left + 1000);
            check(!passes(on_time.next, r, c.burst, now + wait));
        }
    }
}

// From every instant of a refusal, waiting retry_after_ms is enough (never
// too early), and never later than the first passing instant by more than the
// time one milli-request takes to drain (the drain from `last` is truncated
// to whole milli-requests, and the wait is computed from what is left now).
void test_retry_after_is_never_too_early(void **) {
    const std::int64_t start = 777777;
    for (std::string_view text : {"10r/s"sv, "7r/s"sv, "1r/s"sv, "10r/m"sv, "7r/m"sv, "1r/m"sv, "3r/h"sv,
                                  "7r/h"sv, "1r/h"sv, "1r/d"sv, "7r/d"sv, "999999r/s"sv, "1000000r/s"sv,
                                  "1000000r/d"sv}) {
        resend::rate r = rate_of(text);
        std::uint64_t ms_per_milli = (r.period_ms + r.requests * 1000 - 1) / (r.requests * 1000);
        for (std::uint64_t burst : {1, 2, 5}) {
            resend::bucket b = full_bucket(r, burst, start);
            std::int64_t first = first_passing_ms(b, r, burst, start);
            std::int64_t span = first - start;
            // every ms when the span is short, else a spread of samples
            std::vector<std::int64_t> offsets;
            if (span <= 200000) {
                for (std::int64_t d = 0; d < span; ++d) offsets.push_back(d);
            } else {
                for (std::int64_t d = 0; d < span; d += span / 997 + 1) offsets.push_back(d);
                for (std::int64_t d = span - 3000; d < span; ++d) offsets.push_back(d);
            }
            unsigned reported = 0;
            for (std::int64_t d : offsets) {
                resend::bucket_verdict v = resend::bucket_take(b, r, burst, start + d);
                auto need = static_cast<std::uint64_t>(span - d);
                bool ok = !v.allowed && v.retry_after_ms >= need &&
                          v.retry_after_ms <= need + ms_per_milli &&
                          passes(b, r, burst, start + d + static_cast<std::int64_t>(v.retry_after_ms));
                if (d == 0) ok = ok && v.retry_after_ms == need;
                if (!ok && reported++ < 5) {
                    print_error("%s burst %llu at +%lld ms: %s, retry_after_ms %llu, first pass in %llu ms\n",
                                std::string(text).c_str(), static_cast<unsigned long long>(burst),
                                static_cast<long long>(d), v.allowed ? "allowed" : "refused",
                                static_cast<unsigned long long>(v.retry_after_ms),
                                static_cast<unsigned long long>(need));
                    unit::record_failure(__FILE__, __LINE__);
                }
            }
            check(passes(b, r, burst, first));
        }
    }
}

// A refusal does not touch the bucket: the drain keeps counting from the last
// request that passed.
void test_refusals_leave_the_bucket_unchanged(void **) {
    resend::rate r = rate_of("10r/m");
    resend::bucket b = full_bucket(r, 1, 0);
    check_bucket(b, 1000, 0);
    for (std::int64_t t = 0; t < 6000; t += 600) {  // whole milli-requests drained at 10r/m
        resend::bucket_verdict v = resend::bucket_take(b, r, 1, t);
        check(!v.allowed);
        check_bucket(v.next, 1000, 0);
        check_u64(v.retry_after_ms, static_cast<std::uint64_t>(6000 - t));
    }
    resend::bucket_verdict v = resend::bucket_take(b, r, 1, 6000);
    check(v.allowed);
    check_eq(v.next.last, 6000);
}

// --- drain ----------------------------------------------------------------------------

struct drain_case {
    std::string_view rate;
    std::uint64_t excess;
    std::uint64_t elapsed_ms;
    std::uint64_t expected;
};

void test_drain_is_exact(void **) {
    const drain_case cases[] = {
        {"10r/s", 1000, 100, 0},
        {"10r/s", 1000, 99, 10},
        {"10r/s", 5000, 250, 2500},
        {"1r/s", 1000, 1, 999},
        {"1r/s", 1000, 999, 1},
        {"1r/s", 1000, 1000, 0},
        {"10r/m", 2000, 6000, 1000},
        {"10r/m", 2000, 5999, 1001},   // 999.83 drained, truncated
        {"10r/m", 5000, 12000, 3000},
        {"1r/m", 1000, 59, 1000},      // 0.98 drained
        {"1r/m", 1000, 60, 999},
        {"1r/m", 1000, 60000, 0},
        {"3r/h", 1000, 1200000, 0},
        {"3r/h", 1000, 1199999, 1},
        {"3r/h", 1000, 1199, 1000},
        {"3r/h", 1000, 1200, 999},
        {"3r/h", 3000, 3600000, 0},
        {"3r/h", 3000, 2400000, 1000},
        {"1r/h", 1000, 3600000, 0},
        {"1r/h", 1000, 3599999, 1},
        {"1r/d", 1000, 86400000, 0},
        {"1r/d", 1000, 86399999, 1},
        {"1r/d", 1000, 86399, 1000},
        {"1r/d", 1000, 86400, 999},
        {"1r/d", 2000, 86400000, 1000},
        {"24r/d", 1000, 3600000, 0},
        {"1000000r/s", 1000000000, 1, 999000000},
        {"1000000r/s", 1000000000, 1000, 0},
        {"1000000r/s", 5000, 1, 0},
        {"1000000r/d", 1000, 86, 5},    // 995.37 drained
        {"1000000r/d", 1000, 87, 0},
        // no time, or nothing to drain
        {"10r/s", 1000, 0, 1000},
        {"1r/d", 0, 0, 0},
        {"1000000r/s", 0, 1000, 0},
        {"1r/d", 12345, 0, 12345},
    };
    for (const drain_case &c : cases) {
        std::uint64_t got = resend::bucket_drain(c.excess, rate_of(c.rate), c.elapsed_ms);
        if (got != c.expected) {
            print_error("bucket_drain(%llu, %s, %llu ms) == %llu, expected %llu\n",
                        static_cast<unsigned long long>(c.excess), std::string(c.rate).c_str(),
                        static_cast<unsigned long long>(c.elapsed_ms),
                        static_cast<unsigned long long>(got), static_cast<unsigned long long>(c.expected));
            unit::record_failure(__FILE__, __LINE__);
        }
    }
}

void test_drain_never_overflows(void **) {
    resend::rate per_day = rate_of("1r/d");
    resend::rate per_second = rate_of("1r/s");
    resend::rate fastest = rate_of("1000000r/s");
    resend::rate fastest_day = rate_of("1000000r/d");
    // idle for as long as can be: everything drains
    for (resend::rate r : {per_day, per_second, fastest, fastest_day}) {
        check_u64(resend::bucket_drain(1000, r, u64_max), 0);
        check_u64(resend::bucket_drain(1000000000, r, u64_max), 0);
        check_u64(resend::bucket_drain(1000, r, u64_max / 2), 0);
        check_u64(resend::bucket_drain(1000, r, static_cast<std::uint64_t>(i64_max)), 0);
        check_u64(resend::bucket_drain(0, r, u64_max), 0);
        check_u64(resend::bucket_drain(u64_max, r, 0), u64_max);
    }
    // 10 years at 1r/d drains 3652.5 requests
    check_u64(resend::bucket_drain(5000000, per_day, 3652ull * day + day / 2), 5000000 - 3652500);
    // excess near UINT64_MAX
    check_u64(resend::bucket_drain(u64_max, fastest, u64_max), 0);
    check_u64(resend::bucket_drain(u64_max, fastest, u64_max / 1000000), 551615);  // 2^64-1 = 18446744073709 * 10^6 + 551615
    check_u64(resend::bucket_drain(u64_max, per_second, u64_max), 0);
    check_u64(resend::bucket_drain(u64_max, per_second, u64_max - 1), 1);
    check_u64(resend::bucket_drain(u64_max, per_second, 1), u64_max - 1);
    // UINT64_MAX * 1000 / 86400000 = 213503982334601.29...
    check_u64(resend::bucket_drain(u64_max, per_day, u64_max), 18446530569727217014ull);
    check_u64(resend::bucket_drain(u64_max - 1, per_day, 86400000), u64_max - 1001);
    // elapsed * requests * 1000 well above 2^64
    check_u64(resend::bucket_drain(u64_max, fastest_day, u64_max), 0);
    check_u64(resend::bucket_drain(1000, fastest, 1ull << 55), 0);
}

// A key idle since the far past: bucket_take's elapsed is the whole int64 range.
void test_long_idle_gap_passes(void **) {
    for (std::string_view text : {"1r/d"sv, "10r/m"sv, "1000000r/s"sv}) {
        resend::rate r = rate_of(text);
        for (std::uint64_t burst : {1, 5, 1000000}) {
            resend::bucket full{burst * 1000, 0};
            resend::bucket_verdict v = resend::bucket_take(full, r, burst, i64_max);
            check(v.allowed);
            check_eq(v.next.last, i64_max);
            check(v.next.excess <= 1000);
            resend::bucket from_min{burst * 1000, i64_min / 2};
            v = resend::bucket_take(from_min, r, burst, i64_max / 2);  // i64_max ms apart
            check(v.allowed);
            check_eq(v.next.last, i64_max / 2);
            check(v.next.excess <= 1000);
        }
    }
}

// --- a clock that goes back ------------------------------------------------------------

void test_clock_back_less_than_a_minute_is_no_time(void **) {
    resend::rate r = rate_of("1000r/s");  // 1 ms drains a whole request: any drain shows
    const std::int64_t now = 10000000;
    for (std::int64_t back : {1, 2, 1000, 30000, 59999, 60000}) {
        resend::bucket b{3000, now};
        resend::bucket_verdict v = resend::bucket_take(b, r, 5, now - back);
        check(v.allowed);
        check_bucket(v.next, 4000, now - back);  // not drained, counted; `last` is the new time
    }
    // and the drain then counts from the new, earlier time
    resend::rate per_minute = rate_of("1r/m");
    resend::bucket_verdict back = resend::bucket_take({2000, now}, per_minute, 5, now - 30000);
    check_bucket(back.next, 3000, now - 30000);
    resend::bucket_verdict after = resend::bucket_take(back.next, per_minute, 5, now);
    check_bucket(after.next, 3500, now);  // 30 s at 1r/m drained 500
}

void test_clock_back_more_than_a_minute_is_one_ms(void **) {
    resend::rate r = rate_of("1000r/s");  // 1 ms drains exactly 1000
    const std::int64_t now = 10000000;
    for (std::int64_t back : {std::int64_t{60001}, std::int64_t{60002}, std::int64_t{3600000}, now, now + 1}) {
        resend::bucket b{3000, now};
        resend::bucket_verdict v = resend::bucket_take(b, r, 5, now - back);
        check(v.allowed);
        check_bucket(v.next, 3000, now - back);  // drained 1000, counted 1000
    }
    // a clock reset from far ahead: still one ms
    resend::bucket_verdict v = resend::bucket_take({3000, i64_max}, r, 5, 0);
    check(v.allowed);
    check_bucket(v.next, 3000, 0);
    v = resend::bucket_take({3000, i64_max / 2}, r, 5, i64_min / 2);
    check(v.allowed);
    check_bucket(v.next, 3000, i64_min / 2);
}

void test_clock_back_refusal_leaves_the_bucket_unchanged(void **) {
    resend::rate r = rate_of("10r/m");
    const std::int64_t now = 10000000;
    resend::bucket b = full_bucket(r, 2, now);
    for (std::int64_t back : {1, 59999, 60000}) {
        resend::bucket_verdict v = resend::bucket_take(b, r, 2, now - back);
        check(!v.allowed);
        check_bucket(v.next, 2000, now);
        check_u64(v.retry_after_ms, 6000);  // as if no time passed
    }
    for (std::int64_t back : {60001, 1000000}) {
        resend::bucket_verdict v = resend::bucket_take(b, r, 2, now - back);
        check(!v.allowed);
        check_bucket(v.next, 2000, now);
        check_u64(v.retry_after_ms, 6000);  // 1 ms at 10r/m drains nothing
    }
}

// --- refund ----------------------------------------------------------------------------

void expect_refund(resend::bucket b, std::optional<resend::bucket> expected, const char *file, int line) {
    std::optional<resend::bucket> got = resend::bucket_refund(b);
    bool same = got.has_value() == expected.has_value() &&
                (!got || (got->excess == expected->excess && got->last == expected->last));
    if (!same) {
        std::string got_text = got ? "{excess " + std::to_string(got->excess) + ", last " +
                                         std::to_string(got->last) + "}"
                                   : "nullopt";
        std::string expected_text = expected ? "{excess " + std::to_string(expected->excess) +
                                                   ", last " + std::to_string(expected->last) + "}"
                                             : "nullopt";
        print_error("bucket_refund({excess %llu, last %lld}) == %s, expected %s\n",
                    static_cast<unsigned long long>(b.excess), static_cast<long long>(b.last),
                    got_text.c_str(), expected_text.c_str());
        unit::record_failure(file, line);
    }
}
#define check_refund(b, expected) expect_refund((b), (expected), __FILE__, __LINE__)

void test_refund_gives_one_request_back(void **) {
    check_refund((resend::bucket{2500, 7}), (resend::bucket{1500, 7}));
    check_refund((resend::bucket{2000, -7}), (resend::bucket{1000, -7}));
    check_refund((resend::bucket{1001, 0}), (resend::bucket{1, 0}));
    check_refund((resend::bucket{1000, 0}), (resend::bucket{0, 0}));
    check_refund((resend::bucket{u64_max, i64_max}), (resend::bucket{u64_max - 1000, i64_max}));
    check_refund((resend::bucket{1000, i64_min}), (resend::bucket{0, i64_min}));

    // a refunded request makes room for one more at once
    resend::rate r = rate_of("10r/m");
    resend::bucket full = full_bucket(r, 2, 0);
    check(!passes(full, r, 2, 0));
    std::optional<resend::bucket> back = resend::bucket_refund(full);
    if (check(back.has_value())) {
        check_bucket(*back, 1000, 0);
        resend::bucket_verdict v = resend::bucket_take(*back, r, 2, 0);
        check(v.allowed);
        check_bucket(v.next, 2000, 0);
        check(!passes(v.next, r, 2, 0));
    }
}

// The first request is held as excess 0: giving back less than a whole
// request leaves nothing, and the key is to be forgotten.
void test_refund_of_less_than_a_request_forgets_the_key(void **) {
    check_refund(resend::bucket_first(0), std::nullopt);
    check_refund(resend::bucket_first(-5), std::nullopt);
    check_refund((resend::bucket{0, 42}), std::nullopt);
    check_refund((resend::bucket{1, 0}), std::nullopt);
    check_refund((resend::bucket{500, 0}), std::nullopt);
    check_refund((resend::bucket{999, 0}), std::nullopt);

    // first request, second request, both given back: forgotten
    resend::rate r = rate_of("3r/h");
    resend::bucket b = resend::bucket_first(100);
    resend::bucket_verdict v = resend::bucket_take(b, r, 2, 100);
    check(v.allowed);
    std::optional<resend::bucket> back = resend::bucket_refund(v.next);
    if (check(back.has_value())) {
        check_bucket(*back, 0, 100);
        check(!resend::bucket_refund(*back).has_value());
    }
}

// --- idle: when a key can be forgotten -------------------------------------------------

struct idle_case {
    std::string_view rate;
    std::uint64_t excess;
    std::uint64_t idle_after_ms;  // the first elapsed time at which it is idle
};

void test_idle_after_draining_one_request_more_than_the_excess(void **) {
    const idle_case cases[] = {
        {"10r/m", 0, 6000},
        {"10r/m", 1000, 12000},
        {"10r/m", 2000, 18000},
        {"10r/m", 1, 6006},          // 1001 milli at 1 per 6 ms
        {"10r/s", 0, 100},
        {"1r/s", 5000, 6000},
        {"3r/h", 0, 1200000},
        {"3r/h", 2000, 3600000},
        {"1r/d", 0, 86400000},
        {"1r/d", 1000, 172800000},
        {"7r/s", 0, 143},            // 1000 / 7 per ms = 142.857...
        {"1000000r/s", 0, 1},
        {"1000000r/s", 999000, 1},
        {"1000000r/s", 999001, 2},
        {"1000000r/d", 0, 87},       // 86.4 ms
    };
    const std::int64_t now = 3000000;
    for (const idle_case &c : cases) {
        resend::rate r = rate_of(c.rate);
        resend::bucket b{c.excess, now};
        auto at = now + static_cast<std::int64_t>(c.idle_after_ms);
        bool before = resend::bucket_idle(b, r, at - 1);
        bool after = resend::bucket_idle(b, r, at);
        bool later = resend::bucket_idle(b, r, at + 1000000);
        if (before || !after || !later) {
            print_error("bucket_idle({%llu, t}, %s): at t+%llu-1 %s, at t+%llu %s, later %s; expected idle from t+%llu\n",
                        static_cast<unsigned long long>(c.excess), std::string(c.rate).c_str(),
                        static_cast<unsigned long long>(c.idle_after_ms), before ? "idle" : "kept",
                        static_cast<unsigned long long>(c.idle_after_ms), after ? "idle" : "kept",
                        later ? "idle" : "kept", static_cast<unsigned long long>(c.idle_after_ms));
            unit::record_failure(__FILE__, __LINE__);
        }
        check(!resend::bucket_idle(b, r, now));
    }
}

void test_idle_edges(void **) {
    resend::rate r = rate_of("1r/d");
    // a clock that went back: never idle (the key is kept)
    check(!resend::bucket_idle({0, 1000000}, r, 999999));
    check(!resend::bucket_idle({0, 1000000}, r, 1000000 - 60001));
    check(!resend::bucket_idle({0, i64_max / 2}, r, i64_min / 2));
    // the longest gap: idle, whatever the excess a burst can hold
    check(resend::bucket_idle({0, 0}, r, i64_max));
    check(resend::bucket_idle({1000000000, 0}, r, i64_max));
    check(resend::bucket_idle({1000000000, i64_min / 2}, r, i64_max / 2));
    check(resend::bucket_idle({1000000000, 0}, rate_of("1000000r/s"), 1001));
    check(!resend::bucket_idle({1000000000, 0}, rate_of("1000000r/s"), 1000));
}

// --- limit_req over time (a key whose bucket drained) ------------------------------------

// With burst 0 a key gets its rate: one request per period/requests, as
// limit_req. The bucket of the first request holds 0; a request a whole
// period later must pass.
void test_burst_zero_passes_one_request_per_period(void **) {
    resend::rate r = rate_of("10r/m");  // one request each 6000 ms
    resend::bucket b = resend::bucket_first(0);
    resend::bucket_verdict v = resend::bucket_take(b, r, 0, 0);
    check(!v.allowed);
    check_u64(v.retry_after_ms, 6000);
    v = resend::bucket_take(b, r, 0, 3000);
    check(!v.allowed);
    check_u64(v.retry_after_ms, 3000);
    v = resend::bucket_take(b, r, 0, 6000);
    if (!check(v.allowed)) {
        print_error("10r/m burst 0: first request at 0 ms, the next at 6000 ms is refused "
                    "with retry_after_ms %llu\n",
                    static_cast<unsigned long long>(v.retry_after_ms));
    }
    // steady: one each 6000 ms passes, for an hour
    unsigned refused = 0;
    for (std::int64_t t = 6000; t <= 3600000; t += 6000) {
        v = resend::bucket_take(b, r, 0, t);
        if (!v.allowed) {
            ++refused;
            continue;
        }
        b = v.next;
        if (passes(b, r, 0, t + 5999)) ++refused;  // too early: should be refused
    }
    check_eq(refused, 0);
}

// After a key's bucket has drained, it gets burst + 1 requests at once again,
// as a new key does (bucket_first) and as with limit_req.
void test_a_drained_bucket_passes_burst_plus_one_again(void **) {
    resend::rate r = rate_of("10r/m");
    for (std::uint64_t burst : {0, 1, 2, 5}) {
        resend::bucket b = full_bucket(r, burst, 0);
        check(!passes(b, r, burst, 0));
        const std::int64_t later = static_cast<std::int64_t>(day);  // long drained
        std::uint64_t passed = 0;
        for (; passed < burst + 10; ++passed) {
            resend::bucket_verdict v = resend::bucket_take(b, r, burst, later);
            if (!v.allowed) {
                check_u64(v.retry_after_ms, 6000);
                break;
            }
            b = v.next;
        }
        if (passed != burst + 1) {
            print_error("10r/m burst %llu, drained for a day: %llu passed at once, expected %llu\n",
                        static_cast<unsigned long long>(burst), static_cast<unsigned long long>(passed),
                        static_cast<unsigned long long>(burst + 1));
            unit::record_failure(__FILE__, __LINE__);
        }
    }
}

// bucket_idle's promise: forgetting an idle key (its next request is a first
// one, burst + 1 at once) is no more lenient than remembering it; a key that
// is not idle gets fewer at once than a new key.
void test_idle_is_when_remembering_equals_forgetting(void **) {
    unsigned reported = 0;
    for (std::string_view text : {"10r/m"sv, "7r/s"sv, "3r/h"sv}) {
        resend::rate r = rate_of(text);
        for (std::uint64_t burst : {0, 1, 3}) {
            for (std::uint64_t excess = 0; excess <= burst * 1000; excess += 250) {
                const resend::bucket stored{excess, 0};
                std::int64_t idle_at = 1;  // the first idle ms: exponential, then binary search
                while (!resend::bucket_idle(stored, r, idle_at)) idle_at *= 2;
                for (std::int64_t lo = idle_at / 2; lo + 1 < idle_at;) {
                    std::int64_t mid = lo + (idle_at - lo) / 2;
                    (resend::bucket_idle(stored, r, mid) ? idle_at : lo) = mid;
                }
                check(!resend::bucket_idle(stored, r, idle_at - 1));
                for (std::int64_t now : {idle_at / 2, idle_at - 1, idle_at, idle_at + 1, 2 * idle_at}) {
                    if (now < 0) continue;
                    resend::bucket b = stored;
                    std::uint64_t passed = 0;
                    for (; passed <= burst + 1; ++passed) {
                        resend::bucket_verdict v = resend::bucket_take(b, r, burst, now);
                        if (!v.allowed) break;
                        b = v.next;
                    }
                    bool idle = resend::bucket_idle(stored, r, now);
                    if ((idle ? passed != burst + 1 : passed > burst) && reported++ < 8) {
                        print_error("%s burst %llu, {excess %llu, last 0} at %lld ms: %s, %llu pass at once; "
                                    "a new key gets %llu\n",
                                    std::string(text).c_str(), static_cast<unsigned long long>(burst),
                                    static_cast<unsigned long long>(excess), static_cast<long long>(now),
                                    idle ? "idle" : "not idle", static_cast<unsigned long long>(passed),
                                    static_cast<unsigned long long>(burst + 1));
                        unit::record_failure(__FILE__, __LINE__);
                    }
                }
            }
        }
    }
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_parse_rate_units),
        guarded_test(test_parse_rate_bounds),
        guarded_test(test_parse_rate_rejects_malformed),
        guarded_test(test_format_rate),
        guarded_test(test_parse_rate_reads_only_the_view),
        guarded_test(test_first_request_leaves_no_excess),
        guarded_test(test_exactly_burst_plus_one_pass_at_once),
        guarded_test(test_retry_after_at_the_same_instant),
        guarded_test(test_retry_after_is_never_too_early),
        guarded_test(test_refusals_leave_the_bucket_unchanged),
        guarded_test(test_drain_is_exact),
        guarded_test(test_drain_never_overflows),
        guarded_test(test_long_idle_gap_passes),
        guarded_test(test_clock_back_less_than_a_minute_is_no_time),
        guarded_test(test_clock_back_more_than_a_minute_is_one_ms),
        guarded_test(test_clock_back_refusal_leaves_the_bucket_unchanged),
        guarded_test(test_refund_gives_one_request_back),
        guarded_test(test_refund_of_less_than_a_request_forgets_the_key),
        guarded_test(test_idle_after_draining_one_request_more_than_the_excess),
        guarded_test(test_idle_edges),
        guarded_test(test_burst_zero_passes_one_request_per_period),
        guarded_test(test_a_drained_bucket_passes_burst_plus_one_again),
        guarded_test(test_idle_is_when_remembering_equals_forgetting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
