#include "log_text.hpp"

namespace resend {
namespace {

bool plain(unsigned char byte) noexcept {
    return byte >= 0x20 && byte <= 0x7e && byte != '\\';
}

}  // namespace

std::size_t escape_for_log(std::string_view text, char *out, std::size_t capacity) noexcept {
    constexpr char hex[] = "0123456789abcdef";
    constexpr std::string_view more = "...";
    std::size_t whole = 0;
    for (char c : text) whole += plain(static_cast<unsigned char>(c)) ? 1 : 4;
    bool cut = whole > capacity;
    std::size_t limit = !cut ? capacity : capacity > more.size() ? capacity - more.size() : 0;

    std::size_t n = 0;
    for (char c : text) {
        auto byte = static_cast<unsigned char>(c);
        if (n + (plain(byte) ? 1 : 4) > limit) break;
        if (plain(byte)) {
            out[n++] = c;
        } else {
            out[n++] = '\\';
            out[n++] = 'x';
            out[n++] = hex[byte >> 4];
            out[n++] = hex[byte & 0xf];
        }
    }
    if (cut) {
        for (std::size_t k = 0; k < more.size() && n < capacity; ++k) out[n++] = more[k];
    }
    return n;
}

}  // namespace resend
