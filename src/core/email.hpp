// The email policy (the README's "Email policy": what the API's
// `format: email` means here): an RFC 5321 Mailbox, ASCII only, in its
// practical form.
#pragma once

#include <cstddef>
#include <string_view>

namespace resend {

inline constexpr std::size_t email_max_local_part = 64;  // RFC 5321 4.5.3.1.1
inline constexpr std::size_t email_max_label = 63;       // RFC 1035 2.3.4
inline constexpr std::size_t email_max_address = 254;    // RFC 5321 path minus <>

// True when `address` is a dot-atom local part, '@', and a hostname of at
// least two labels whose last label is not all digits. Nothing is trimmed:
// whitespace, control characters, quotes, brackets and non-ASCII all fail.
bool email_is_valid(std::string_view address) noexcept;

// Writes the normalized form (the address lowercased, ASCII only) into `out`,
// which must hold address.size() bytes. Rate-limit keys use this form; the
// record keeps the address as sent.
void email_normalize(std::string_view address, char *out) noexcept;

// Writes the canonical mailbox of a valid address into `out` (which must
// hold address.size() bytes) and returns its size: the normalized form,
// then a "+tag" taken off the local part (from its first '+'; a local part
// that starts with '+' is kept whole), then for gmail.com and
// googlemail.com every dot taken off the local part and the domain made
// gmail.com. Many addresses of one mailbox give one key
// ($resend_confirmation_mailbox); keys only, the record keeps the address.
std::size_t email_mailbox(std::string_view address, char *out) noexcept;

}  // namespace resend
