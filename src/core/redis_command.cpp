#include "redis_command.hpp"

#include <charconv>
#include <cstring>

namespace resend {
namespace {

constexpr std::size_t decimal_digits(std::size_t n) noexcept {
    std::size_t digits = 1;
    while (n >= 10) {
        n /= 10;
        ++digits;
    }
    return digits;
}

char *write_header(char *out, char type, std::size_t n) noexcept {
    *out++ = type;
    out = std::to_chars(out, out + 20, n).ptr;
    *out++ = '\r';
    *out++ = '\n';
    return out;
}

}  // namespace

std::size_t resp_size(std::span<const std::string_view> args) noexcept {
    std::size_t size = 1 + decimal_digits(args.size()) + 2;
    for (std::string_view arg : args) {
        size += 1 + decimal_digits(arg.size()) + 2 + arg.size() + 2;
    }
    return size;
}

char *resp_write(char *out, std::span<const std::string_view> args) noexcept {
    out = write_header(out, '*', args.size());
    for (std::string_view arg : args) {
        out = write_header(out, '$', arg.size());
        if (!arg.empty()) std::memcpy(out, arg.data(), arg.size());
        out += arg.size();
        *out++ = '\r';
        *out++ = '\n';
    }
    return out;
}

}  // namespace resend
