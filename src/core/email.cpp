#include "email.hpp"

#include <array>
#include <cstdint>

namespace resend {
namespace {

// RFC 5322 atext: letters, digits and these specials. Dots are handled by
// the dot-atom rule, not here.
constexpr std::array<bool, 256> make_atext_table() noexcept {
    std::array<bool, 256> table{};
    for (int c = 'a'; c <= 'z'; ++c) table[c] = true;
    for (int c = 'A'; c <= 'Z'; ++c) table[c] = true;
    for (int c = '0'; c <= '9'; ++c) table[c] = true;
    for (unsigned char c : std::string_view("!#$%&'*+-/=?^_`{|}~")) table[c] = true;
    return table;
}

constexpr std::array<bool, 256> atext = make_atext_table();

constexpr bool is_digit(unsigned char c) noexcept { return c >= '0' && c <= '9'; }

constexpr bool is_let_dig(unsigned char c) noexcept {
    return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

// Dot-atom: one or more atext runs joined by single dots.
bool local_part_is_valid(std::string_view local) noexcept {
    if (local.empty() || local.size() > email_max_local_part) return false;
    bool after_dot = true;  // the start behaves like "just after a dot"
    for (unsigned char c : local) {
        if (c == '.') {
            if (after_dot) return false;  // leading or doubled dot
            after_dot = true;
        } else if (atext[c]) {
            after_dot = false;
        } else {
            return false;
        }
    }
    return !after_dot;  // trailing dot
}

// Hostname: labels of 1..63 letters, digits and hyphens, no hyphen at either
// end, at least two labels, the last one not all digits (it would read as an
// IPv4 address, and no TLD is numeric).
bool domain_is_valid(std::string_view domain) noexcept {
    std::size_t labels = 0;
    std::size_t label_start = 0;
    while (label_start <= domain.size()) {
        std::size_t dot = domain.find('.', label_start);
        if (dot == std::string_view::npos) dot = domain.size();
        std::string_view label = domain.substr(label_start, dot - label_start);
        if (label.empty() || label.size() > email_max_label) return false;
        if (label.front() == '-' || label.back() == '-') return false;
        bool all_digits = true;
        for (unsigned char c : label) {
            if (!is_let_dig(c) && c != '-') return false;
            all_digits = all_digits && is_digit(c);
        }
        ++labels;
        label_start = dot + 1;
        if (dot == domain.size()) return labels >= 2 && !all_digits;
    }
    return false;  // unreachable: the loop returns on the last label
}

}  // namespace

bool email_is_valid(std::string_view address) noexcept {
    if (address.size() > email_max_address) return false;
    std::size_t at = address.find('@');
    if (at == std::string_view::npos) return false;
    // A second '@' lands in the domain, whose characters exclude it.
    return local_part_is_valid(address.substr(0, at)) &&
           domain_is_valid(address.substr(at + 1));
}

void email_normalize(std::string_view address, char *out) noexcept {
    for (char c : address) {
        *out++ = (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
}

std::size_t email_mailbox(std::string_view address, char *out) noexcept {
    std::size_t at = address.rfind('@');
    if (at == std::string_view::npos) at = address.size();  // not an address: lowercased only
    std::string_view domain = address.substr(at);  // with its '@'
    char lowered_domain[email_max_address + 1];
    std::size_t domain_size = domain.size() < sizeof(lowered_domain) ? domain.size() : 0;
    email_normalize(domain.substr(0, domain_size), lowered_domain);
    std::string_view lowered{lowered_domain, domain_size};
    bool gmail = lowered == "@gmail.com" || lowered == "@googlemail.com";

    std::string_view local = address.substr(0, at);
    // A local part that starts with '+' is kept whole: it has no tag, or
    // nothing would be left of it.
    std::size_t plus = local.starts_with('+') ? std::string_view::npos : local.find('+');
    if (plus != std::string_view::npos) local = local.substr(0, plus);
    char *start = out;
    for (char c : local) {
        if (gmail && c == '.') continue;
        email_normalize({&c, 1}, out++);
    }
    if (gmail) lowered = "@gmail.com";
    for (char c : lowered) *out++ = c;
    return static_cast<std::size_t>(out - start);
}

}  // namespace resend
