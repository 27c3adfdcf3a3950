// Prometheus text exposition format (version 0.0.4): families, samples with
// escaped label values, histograms. Writes into a caller's buffer; with no
// buffer it only counts, so that the caller can size one exact allocation
// (nginx pool) before writing for real.
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string_view>

namespace resend {

struct metric_label {
    std::string_view name;
    std::string_view value;  // escaped on output: backslash, double quote, newline
};

using metric_labels = std::initializer_list<metric_label>;

class prometheus_text {
public:
    // buffer == nullptr: count the bytes only.
    prometheus_text(char *buffer, std::size_t capacity) noexcept
        : buffer_(buffer), capacity_(capacity) {}

    // "# HELP name help" and "# TYPE name type" (type: counter, gauge,
    // histogram). help must not hold a newline or a backslash.
    void family(std::string_view name, std::string_view type, std::string_view help) noexcept;

    // name{labels} value
    void sample(std::string_view name, metric_labels labels, std::uint64_t value) noexcept;

    // name{labels} value, value given in milliseconds and written in seconds
    // ("1.234"), as Prometheus wants durations.
    void sample_ms_as_seconds(std::string_view name, metric_labels labels,
                              std::uint64_t milliseconds) noexcept;

    // A histogram of durations: name_bucket{labels,le="<bound s>"} cumulative
    // counts for each bound (bounds in ms, ascending), le="+Inf", name_sum
    // (seconds) and name_count. bucket_counts[i] counts observations in
    // (bounds[i-1], bounds[i]]; bucket_counts[bound_count] those above the
    // last bound.
    void histogram_ms(std::string_view name, metric_labels labels, const std::uint64_t *bounds_ms,
                      std::size_t bound_count, const std::uint64_t *bucket_counts,
                      std::uint64_t sum_ms) noexcept;

    // Bytes written (or, when counting, needed) so far.
    std::size_t size() const noexcept { return size_; }
    // False when a buffer was given and was too small: what was written is cut.
    bool complete() const noexcept { return buffer_ == nullptr || size_ <= capacity_; }

private:
    void put(std::string_view text) noexcept;
    void put_number(std::uint64_t value) noexcept;
    void put_seconds(std::uint64_t milliseconds) noexcept;
    void put_labels(metric_labels labels, const metric_label *extra) noexcept;
    // "name<suffix>{labels[,extra]} ": what comes before a sample's value.
    void series(std::string_view name, std::string_view suffix, metric_labels labels,
                const metric_label *extra) noexcept;
    void put_escaped(std::string_view value) noexcept;

    char *buffer_;
    std::size_t capacity_;
    std::size_t size_ = 0;
};

// The bucket of `milliseconds` among `bounds_ms` (ascending): the first bound
// at or above it, or bound_count for above every bound.
std::size_t histogram_bucket(const std::uint64_t *bounds_ms, std::size_t bound_count,
                             std::uint64_t milliseconds) noexcept;

}  // namespace resend
