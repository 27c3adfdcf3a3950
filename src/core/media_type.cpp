#include "media_type.hpp"

#include <cstddef>

namespace resend {

bool media_type_is_json(std::string_view content_type) noexcept {
    constexpr std::string_view json = "application/json";
    if (content_type.size() < json.size()) return false;
    for (std::size_t i = 0; i < json.size(); ++i) {
        char c = content_type[i];
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
        if (c != json[i]) return false;
    }
    std::string_view rest = content_type.substr(json.size());
    std::size_t first = rest.find_first_not_of(" \t");
    return first == std::string_view::npos || rest[first] == ';';
}

}  // namespace resend
