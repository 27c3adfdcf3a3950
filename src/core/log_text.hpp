// Text from outside (Redis's error replies) made safe for a log line.
#pragma once

#include <cstddef>
#include <string_view>

namespace resend {

// Writes `text` into out[0 .. capacity) with every byte below 0x20, above
// 0x7e, and the backslash written as \xNN (lowercase hex), so that the result
// is printable ASCII with no line break: it cannot end a log line or forge
// the next. Stops before the first byte whose form does not fit whole and
// then ends with "..." (when capacity allows). Returns the bytes written.
std::size_t escape_for_log(std::string_view text, char *out, std::size_t capacity) noexcept;

}  // namespace resend
