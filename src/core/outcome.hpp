// Every way a request can end, and what the client is answered for each.
// The bodies are fixed strings: nothing from the request is ever echoed.
#pragma once

#include <string_view>

namespace resend {

enum class outcome : unsigned char {
    none,  // not decided yet
    accepted,
    method_not_allowed,
    unsupported_media_type,
    payload_too_large,
    invalid_json,
    invalid_request,
    invalid_email,
    redis_error,  // Redis surely did not take the record (never written, or an error
                  // reply): 503 (policy "reject"), the email limits' count given back
    lost,         // the same, answered 200 anyway (policy "accept")
    client_limited,   // over a limit checked before the body: 429
    email_limited,    // over a (non-silent) limit checked after validation: 429
    silenced,         // over a silent limit: the same 200, nothing recorded
    dry_run_limited,  // a limit would have refused it (dry run): accepted and recorded
    redis_timeout,    // written to Redis, no reply in `timeout`: it may be recorded (the
                      // count is kept); 503 (policy "reject"). Under policy "accept" the
                      // request is answered as `lost` (200) and logged with this word.
    client_closed,    // the client left while its record was in flight: 499, nothing
                      // sent (the body is never used); the record still goes to Redis
    spooled,          // Redis could not take the record in time: it was appended to the
                      // local spool (policy "spool") and is replayed later; 200
    count_,
};

struct answer {
    unsigned status;         // HTTP status code
    std::string_view word;   // $resend_confirmation_outcome
    std::string_view body;   // application/json body, byte for byte
};

// The spec's 200 body, identical for every accepted (or silently limited)
// request so that the answer never depends on the address.
inline constexpr std::string_view accepted_body =
    R"({"data":{"message":"Please check your inbox. If a root account is associated with this email and remains unconfirmed, a reconfirmation message should have been sent."}})";

const answer &answer_for(outcome result) noexcept;

}  // namespace resend
