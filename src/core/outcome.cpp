#include "outcome.hpp"

#include <array>

namespace resend {
namespace {

#define RESEND_ERROR_BODY(code, message) \
    R"({"error":{"code":")" code R"(","message":")" message R"("}})"

constexpr std::array<answer, static_cast<std::size_t>(outcome::count_)> answers{{
    {500, "", RESEND_ERROR_BODY("internal", "The request could not be handled.")},
    {200, "accepted", accepted_body},
    {405, "method_not_allowed",
     RESEND_ERROR_BODY("method_not_allowed", "Only POST is allowed on this endpoint.")},
    {415, "unsupported_media_type",
     RESEND_ERROR_BODY("unsupported_media_type", "The request body must be sent as application/json.")},
    {413, "payload_too_large",
     RESEND_ERROR_BODY("payload_too_large", "The request body is too large.")},
    {400, "invalid_json",
     RESEND_ERROR_BODY("invalid_json", "The request body is not valid JSON.")},
    {400, "invalid_request",
     RESEND_ERROR_BODY("invalid_request", "The request body must be a JSON object with one string member named email.")},
    {400, "invalid_email",
     RESEND_ERROR_BODY("invalid_email", "The email address is not valid.")},
    {503, "redis_error",
     RESEND_ERROR_BODY("unavailable", "The service is temporarily unavailable; retry later.")},
    {200, "lost", accepted_body},
    {429, "client_limited",
     RESEND_ERROR_BODY("rate_limited", "Too many requests; retry later.")},
    {429, "email_limited",
     RESEND_ERROR_BODY("rate_limited", "Too many requests; retry later.")},
    {200, "silenced", accepted_body},
    {200, "dry_run_limited", accepted_body},
    {503, "redis_timeout",
     RESEND_ERROR_BODY("unavailable", "The service is temporarily unavailable; retry later.")},
    {499, "client_closed",
     RESEND_ERROR_BODY("client_closed", "The client closed the connection before the answer.")},
    {200, "spooled", accepted_body},
}};

#undef RESEND_ERROR_BODY

}  // namespace

const answer &answer_for(outcome result) noexcept {
    auto index = static_cast<std::size_t>(result);
    return answers[index < answers.size() ? index : 0];
}

}  // namespace resend
