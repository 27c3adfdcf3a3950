// Prometheus text format: exact bytes of families, samples, escaped labels
// and histograms; counting mode; a buffer too small.
#include <cstdint>
#include <string>
#include <string_view>

#include "core/prometheus.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

namespace {

using resend::prometheus_text;

// Writes with `write` twice: counting, then into an exact buffer; both sizes
// must agree. Returns the text.
template <typename Write>
std::string render(Write write) {
    prometheus_text counting(nullptr, 0);
    write(counting);
    std::string text(counting.size(), '\0');
    prometheus_text writing(text.data(), text.size());
    write(writing);
    check_eq(writing.size(), counting.size());
    check(writing.complete());
    return text;
}

void test_family_and_samples(void **) {
    std::string text = render([](prometheus_text &out) {
        out.family("resend_requests_total", "counter", "Requests by outcome.");
        out.sample("resend_requests_total", {{"location", "/r"}, {"outcome", "accepted"}}, 42);
        out.sample("resend_up", {}, 1);
        out.sample("resend_big", {{"a", ""}}, UINT64_MAX);
    });
    check_bytes_eq(text,
                   "# HELP resend_requests_total Requests by outcome.\n"
                   "# TYPE resend_requests_total counter\n"
                   "resend_requests_total{location=\"/r\",outcome=\"accepted\"} 42\n"
                   "resend_up 1\n"
                   "resend_big{a=\"\"} 18446744073709551615\n");
}

void test_label_values_are_escaped(void **) {
    std::string text = render([](prometheus_text &out) {
        out.sample("m", {{"v", "a\\b\"c\nd"}}, 0);
        out.sample("m", {{"v", "\\\"\n"}}, 1);
    });
    check_bytes_eq(text, "m{v=\"a\\\\b\\\"c\\nd\"} 0\nm{v=\"\\\\\\\"\\n\"} 1\n");
}

void test_milliseconds_as_seconds(void **) {
    std::string text = render([](prometheus_text &out) {
        out.sample_ms_as_seconds("t", {}, 0);
        out.sample_ms_as_seconds("t", {}, 5);
        out.sample_ms_as_seconds("t", {}, 1234);
        out.sample_ms_as_seconds("t", {}, 60000);
    });
    check_bytes_eq(text, "t 0.000\nt 0.005\nt 1.234\nt 60.000\n");
}

void test_histogram(void **) {
    const std::uint64_t bounds[] = {1, 5, 250, 1000, 2500};
    const std::uint64_t counts[] = {3, 0, 2, 1, 0, 4};  // the last: above 2.5 s
    std::string text = render([&](prometheus_text &out) {
        out.histogram_ms("rt", {{"redis", "127.0.0.1:6379"}}, bounds, 5, counts, 12345);
    });
    check_bytes_eq(text,
                   "rt_bucket{redis=\"127.0.0.1:6379\",le=\"0.001\"} 3\n"
                   "rt_bucket{redis=\"127.0.0.1:6379\",le=\"0.005\"} 3\n"
                   "rt_bucket{redis=\"127.0.0.1:6379\",le=\"0.25\"} 5\n"
                   "rt_bucket{redis=\"127.0.0.1:6379\",le=\"1\"} 6\n"
                   "rt_bucket{redis=\"127.0.0.1:6379\",le=\"2.5\"} 6\n"
                   "rt_bucket{redis=\"127.0.0.1:6379\",le=\"+Inf\"} 10\n"
                   "rt_sum{redis=\"127.0.0.1:6379\"} 12.345\n"
                   "rt_count{redis=\"127.0.0.1:6379\"} 10\n");
}

void test_histogram_without_labels(void **) {
    const std::uint64_t bounds[] = {10};
    const std::uint64_t counts[] = {1, 1};
    std::string text = render([&](prometheus_text &out) {
        out.histogram_ms("h", {}, bounds, 1, counts, 20);
    });
    check_bytes_eq(text,
                   "h_bucket{le=\"0.01\"} 1\nh_bucket{le=\"+Inf\"} 2\nh_sum 0.020\nh_count 2\n");
}

void test_bucket_of_an_observation(void **) {
    const std::uint64_t bounds[] = {1, 5, 250};
    check_eq(resend::histogram_bucket(bounds, 3, 0), 0);
    check_eq(resend::histogram_bucket(bounds, 3, 1), 0);  // upper bounds are inclusive
    check_eq(resend::histogram_bucket(bounds, 3, 2), 1);
    check_eq(resend::histogram_bucket(bounds, 3, 5), 1);
    check_eq(resend::histogram_bucket(bounds, 3, 250), 2);
    check_eq(resend::histogram_bucket(bounds, 3, 251), 3);
    check_eq(resend::histogram_bucket(bounds, 0, 7), 0);
}

void test_small_buffer_is_cut_not_overrun(void **) {
    char buffer[16];
    buffer[10] = '#';
    buffer[11] = '#';
    prometheus_text out(buffer, 10);
    out.sample("a_long_metric_name", {{"label", "value"}}, 1);
    check(!out.complete());
    check_eq(out.size(), std::string_view("a_long_metric_name{label=\"value\"} 1\n").size());
    check_bytes_eq(std::string_view(buffer, 10), "a_long_met");
    check(buffer[10] == '#' && buffer[11] == '#');
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_family_and_samples),
        guarded_test(test_label_values_are_escaped),
        guarded_test(test_milliseconds_as_seconds),
        guarded_test(test_histogram),
        guarded_test(test_histogram_without_labels),
        guarded_test(test_bucket_of_an_observation),
        guarded_test(test_small_buffer_is_cut_not_overrun),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
