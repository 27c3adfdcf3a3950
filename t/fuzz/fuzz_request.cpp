// libFuzzer target: any body through the strict JSON request parser, the
// email policy and the media-type check. Properties, not just "no crash":
// an accepted request's email passes the policy on its own and fits 254
// octets; the parser agrees with itself on a second run (no state leaks).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>

#include "core/email.hpp"
#include "core/media_type.hpp"
#include "core/request.hpp"

static resend::body_parser &parser() {
    static resend::body_parser instance;
    static bool ready = instance.reserve(64 * 1024);
    if (!ready) std::abort();
    return instance;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    if (size > 64 * 1024) return 0;
    std::string body(reinterpret_cast<const char *>(data), size);
    body.append(resend::body_padding, '\0');

    resend::parsed_request first = parser().parse(body.data(), size);
    std::string email(first.email);
    if (first.result == resend::outcome::accepted) {
        if (!resend::email_is_valid(email) || email.size() > resend::email_max_address) std::abort();
        std::string lowered(email.size(), '\0');
        resend::email_normalize(email, lowered.data());
        if (!resend::email_is_valid(lowered)) std::abort();  // lowercasing keeps validity
    }
    resend::parsed_request again = parser().parse(body.data(), size);
    if (again.result != first.result || std::string(again.email) != email) std::abort();

    std::string_view raw(reinterpret_cast<const char *>(data), size);
    (void) resend::email_is_valid(raw);
    (void) resend::media_type_is_json(raw);
    return 0;
}
