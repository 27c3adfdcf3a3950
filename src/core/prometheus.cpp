#include "prometheus.hpp"

#include <charconv>
#include <cstring>

namespace resend {

void prometheus_text::put(std::string_view text) noexcept {
    if (buffer_ != nullptr && size_ < capacity_) {
        std::size_t room = capacity_ - size_;
        std::memcpy(buffer_ + size_, text.data(), text.size() < room ? text.size() : room);
    }
    size_ += text.size();
}

void prometheus_text::put_number(std::uint64_t value) noexcept {
    char digits[24];
    auto result = std::to_chars(digits, digits + sizeof(digits), value);
    put({digits, static_cast<std::size_t>(result.ptr - digits)});
}

void prometheus_text::put_seconds(std::uint64_t milliseconds) noexcept {
    put_number(milliseconds / 1000);
    char fraction[4] = {'.', static_cast<char>('0' + milliseconds % 1000 / 100),
                        static_cast<char>('0' + milliseconds % 100 / 10),
                        static_cast<char>('0' + milliseconds % 10)};
    put({fraction, sizeof(fraction)});
}

void prometheus_text::put_escaped(std::string_view value) noexcept {
    std::size_t plain = 0;
    for (std::size_t i = 0; i < value.size(); ++i) {
        const char *escape = value[i] == '\\' ? "\\\\" : value[i] == '"' ? "\\\"" : value[i] == '\n' ? "\\n" : nullptr;
        if (escape == nullptr) continue;
        put(value.substr(plain, i - plain));
        put(escape);
        plain = i + 1;
    }
    put(value.substr(plain));
}

void prometheus_text::put_labels(metric_labels labels, const metric_label *extra) noexcept {
    if (labels.size() == 0 && extra == nullptr) return;
    char separator = '{';
    auto one = [&](const metric_label &label) {
        put({&separator, 1});
        put(label.name);
        put("=\"");
        put_escaped(label.value);
        put("\"");
        separator = ',';
    };
    for (const metric_label &label : labels) one(label);
    if (extra != nullptr) one(*extra);
    put("}");
}

void prometheus_text::family(std::string_view name, std::string_view type,
                             std::string_view help) noexcept {
    put("# HELP ");
    put(name);
    put(" ");
    put(help);
    put("\n# TYPE ");
    put(name);
    put(" ");
    put(type);
    put("\n");
}

void prometheus_text::series(std::string_view name, std::string_view suffix, metric_labels labels,
                             const metric_label *extra) noexcept {
    put(name);
    put(suffix);
    put_labels(labels, extra);
    put(" ");
}

void prometheus_text::sample(std::string_view name, metric_labels labels,
                             std::uint64_t value) noexcept {
    series(name, "", labels, nullptr);
    put_number(value);
    put("\n");
}

void prometheus_text::sample_ms_as_seconds(std::string_view name, metric_labels labels,
                                           std::uint64_t milliseconds) noexcept {
    series(name, "", labels, nullptr);
    put_seconds(milliseconds);
    put("\n");
}

void prometheus_text::histogram_ms(std::string_view name, metric_labels labels,
                                   const std::uint64_t *bounds_ms, std::size_t bound_count,
                                   const std::uint64_t *bucket_counts,
                                   std::uint64_t sum_ms) noexcept {
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i <= bound_count; ++i) {
        cumulative += bucket_counts[i];
        char bound[32];
        std::size_t bound_size = 0;
        if (i < bound_count) {
            // The bound in seconds, written without trailing zeros: 0.005, 0.25, 1, 2.5.
            prometheus_text scratch(bound, sizeof(bound));
            scratch.put_seconds(bounds_ms[i]);
            bound_size = scratch.size();
            while (bound[bound_size - 1] == '0') --bound_size;
            if (bound[bound_size - 1] == '.') --bound_size;
        }
        metric_label le{"le", i < bound_count ? std::string_view(bound, bound_size) : "+Inf"};
        series(name, "_bucket", labels, &le);
        put_number(cumulative);
        put("\n");
    }
    series(name, "_sum", labels, nullptr);
    put_seconds(sum_ms);
    put("\n");
    series(name, "_count", labels, nullptr);
    put_number(cumulative);
    put("\n");
}

std::size_t histogram_bucket(const std::uint64_t *bounds_ms, std::size_t bound_count,
                             std::uint64_t milliseconds) noexcept {
    std::size_t bucket = 0;
    while (bucket < bound_count && milliseconds > bounds_ms[bucket]) ++bucket;
    return bucket;
}

}  // namespace resend
