#include "spool_format.hpp"

#include <array>
#include <cstring>

namespace resend::spool {
namespace {

constexpr std::array<std::uint32_t, 256> make_table() noexcept {
    std::array<std::uint32_t, 256> table{};
    for (std::uint32_t i = 0; i < 256; ++i) {
        std::uint32_t c = i;
        for (int k = 0; k < 8; ++k) c = (c & 1) ? (c >> 1) ^ 0x82F63B78u : c >> 1;
        table[i] = c;
    }
    return table;
}

constexpr std::array<std::uint32_t, 256> table = make_table();

void put32(char *out, std::uint32_t v) noexcept {
    for (int i = 0; i < 4; ++i) out[i] = static_cast<char>(v >> (8 * i));
}

std::uint32_t get32(const char *in) noexcept {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(in[i]);
    return v;
}

}  // namespace

std::uint32_t crc32c(const void *data, std::size_t size, std::uint32_t crc) noexcept {
    const auto *p = static_cast<const unsigned char *>(data);
    crc = ~crc;
    for (std::size_t i = 0; i < size; ++i) crc = table[(crc ^ p[i]) & 0xff] ^ (crc >> 8);
    return ~crc;
}

void write_header(char *out, std::uint64_t acked) noexcept {
    std::memcpy(out, magic.data(), magic.size());
    put32(out + 8, static_cast<std::uint32_t>(acked));
    put32(out + 12, static_cast<std::uint32_t>(acked >> 32));
}

bool read_header(const char *in, std::size_t n, std::uint64_t *acked, unsigned *version) noexcept {
    if (n < header_size) return false;
    if (std::memcmp(in, magic.data(), magic.size()) == 0) {
        *version = 2;
    } else if (std::memcmp(in, magic_v1.data(), magic_v1.size()) == 0) {
        *version = 1;
    } else {
        return false;
    }
    *acked = get32(in + 8) | static_cast<std::uint64_t>(get32(in + 12)) << 32;
    return true;
}

bool read_items(std::span<const std::string_view> items, unsigned version, kept_record *out) noexcept {
    if (items.size() < 3) return false;
    out->address = items[0];
    out->stream = items[1];
    out->maxlen = items[2];
    if (version == 1) {
        out->dry_run = "0";
        out->limits = {};
        out->fields = items.subspan(3);
        return true;
    }
    if (items.size() < items_before_limits) return false;
    std::size_t n = 0;
    std::string_view count = items[3];
    if (count.empty() || count.size() > 3) return false;
    for (char c : count) {
        if (c < '0' || c > '9') return false;
        n = n * 10 + static_cast<std::size_t>(c - '0');
    }
    if (items.size() - items_before_limits < 4 * n) return false;
    out->dry_run = items[4];
    out->limits = items.subspan(items_before_limits, 4 * n);
    out->fields = items.subspan(items_before_limits + 4 * n);
    return true;
}

std::size_t record_size(std::span<const std::string_view> items) noexcept {
    if (items.size() > max_items) return 0;
    std::size_t payload = 2;
    for (std::string_view item : items) {
        if (item.size() > max_payload) return 0;
        payload += 4 + item.size();
    }
    return payload > max_payload ? 0 : record_overhead + payload;
}

char *write_record(char *out, std::span<const std::string_view> items) noexcept {
    char *payload = out + record_overhead;
    char *p = payload;
    *p++ = static_cast<char>(items.size());
    *p++ = static_cast<char>(items.size() >> 8);
    for (std::string_view item : items) {
        put32(p, static_cast<std::uint32_t>(item.size()));
        p += 4;
        if (!item.empty()) std::memcpy(p, item.data(), item.size());
        p += item.size();
    }
    auto length = static_cast<std::uint32_t>(p - payload);
    put32(out, length);
    put32(out + 4, crc32c(payload, length));
    return p;
}

namespace {

// read_record() without keeping the items when `items` is null. The item
// sizes are walked before the CRC is computed: cheap for the many offsets
// next_record_start() tries, most of which fail there.
scan parse_record(const char *in, std::size_t n, std::size_t *size, std::string_view *items,
                  std::size_t *count) noexcept {
    if (n < record_overhead) return scan::incomplete;
    std::uint32_t length = get32(in);
    if (length < 2 || length > max_payload) return scan::corrupt;
    if (n - record_overhead < length) return scan::incomplete;
    const char *payload = in + record_overhead;

    std::size_t items_count = static_cast<unsigned char>(payload[0]) |
                              static_cast<std::size_t>(static_cast<unsigned char>(payload[1])) << 8;
    if (items_count > max_items) return scan::corrupt;
    std::size_t at = 2;
    for (std::size_t i = 0; i < items_count; ++i) {
        if (length - at < 4) return scan::corrupt;
        std::uint32_t item = get32(payload + at);
        at += 4;
        if (length - at < item) return scan::corrupt;
        if (items != nullptr) items[i] = {payload + at, item};
        at += item;
    }
    if (at != length) return scan::corrupt;
    if (crc32c(payload, length) != get32(in + 4)) return scan::corrupt;
    *size = record_overhead + length;
    *count = items_count;
    return scan::record;
}

}  // namespace

scan read_record(const char *in, std::size_t n, std::size_t *size, std::string_view *items,
                 std::size_t *count) noexcept {
    return parse_record(in, n, size, items, count);
}

std::size_t next_record_start(const char *in, std::size_t n, bool at_end) noexcept {
    std::size_t size = 0, count = 0;
    for (std::size_t at = 1; at < n; ++at) {
        scan result = parse_record(in + at, n - at, &size, nullptr, &count);
        if (result == scan::record || (result == scan::incomplete && !at_end)) return at;
    }
    return n;
}

}  // namespace resend::spool
