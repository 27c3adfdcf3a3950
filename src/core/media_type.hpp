// Content-Type check: the body must be declared as JSON.
#pragma once

#include <string_view>

namespace resend {

// True for "application/json" in any letter case, optionally followed by
// whitespace and ";"-separated parameters ("application/json; charset=utf-8").
// "application/json-seq", "application/jsonx" and "+json" suffixes are not
// JSON for this endpoint: the body is parsed as exactly one JSON text.
bool media_type_is_json(std::string_view content_type) noexcept;

}  // namespace resend
