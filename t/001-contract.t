# Every row of the README's contract table that needs no Redis or limits:
# status, error code, fixed bodies, headers, and $resend_confirmation_outcome.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

our $DefaultConfig = <<'_EOC_';
    location = /accounts/resend-confirmation {
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
        add_header X-Email $resend_confirmation_email always;
    }
_EOC_

resend_defaults(config => $DefaultConfig);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: accepted: the spec's 200 body byte for byte, JSON and no-store
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Outcome: accepted
X-Email: user@example.com
--- response_body eval
$::Accepted



=== TEST 2: accepted: the normalized email is lowercased, the answer is identical
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"Mixed.Case+Tag@Example.COM"}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_headers
X-Outcome: accepted
X-Email: mixed.case+tag@example.com
--- response_body eval
$::Accepted



=== TEST 3: accepted: other members are ignored
--- request eval
"POST /accounts/resend-confirmation\n" . '{"locale":"en","email":"a@example.org","meta":{"n":[1,2.5,true,null]}}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- response_body eval
$::Accepted



=== TEST 4: GET is 405 with Allow: POST
--- request
GET /accounts/resend-confirmation
--- error_code: 405
--- response_headers
Allow: POST
Content-Type: application/json
Cache-Control: no-store
X-Outcome: method_not_allowed
--- response_body chomp
{"error":{"code":"method_not_allowed","message":"Only POST is allowed on this endpoint."}}



=== TEST 5: PUT with a valid body is still 405
--- request eval
"PUT /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 405
--- response_headers
Allow: POST
X-Outcome: method_not_allowed
--- response_body_like: "code":"method_not_allowed"



=== TEST 6: HEAD is 405 too
--- request
HEAD /accounts/resend-confirmation
--- error_code: 405
--- response_headers
Allow: POST
X-Outcome: method_not_allowed
--- response_body



=== TEST 7: missing Content-Type is 415
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- error_code: 415
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Outcome: unsupported_media_type
--- response_body chomp
{"error":{"code":"unsupported_media_type","message":"The request body must be sent as application/json."}}



=== TEST 8: wrong Content-Type is 415
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: text/plain
--- error_code: 415
--- response_headers
X-Outcome: unsupported_media_type
--- response_body_like: "code":"unsupported_media_type"



=== TEST 9: a JSON-like but different media type is 415
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: application/json-patch+json
--- error_code: 415
--- response_body_like: "code":"unsupported_media_type"



=== TEST 10: media type parameters and letter case are allowed
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: Application/JSON ; charset=UTF-8
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- response_body eval
$::Accepted



=== TEST 11: a declared body over the limit is 413 without reading it
--- config
    location = /accounts/resend-confirmation {
        resend_confirmation;
        resend_confirmation_max_body_size 64;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com","pad":"' . ('x' x 100) . '"}'
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Outcome: payload_too_large
--- response_body chomp
{"error":{"code":"payload_too_large","message":"The request body is too large."}}



=== TEST 12: a body of exactly the limit is read
--- config
    location = /accounts/resend-confirmation {
        resend_confirmation;
        resend_confirmation_max_body_size 34;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com","x":1}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_headers
X-Outcome: accepted



=== TEST 13: the default limit is 4k
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com","pad":"' . ('x' x 4096) . '"}'
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_body_like: "code":"payload_too_large"



=== TEST 14: not JSON is 400 invalid_json
--- request eval
"POST /accounts/resend-confirmation\n" . 'email=user@example.com'
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Outcome: invalid_json
--- response_body chomp
{"error":{"code":"invalid_json","message":"The request body is not valid JSON."}}



=== TEST 15: not an object is 400 invalid_request
--- request eval
"POST /accounts/resend-confirmation\n" . '["user@example.com"]'
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
X-Outcome: invalid_request
--- response_body chomp
{"error":{"code":"invalid_request","message":"The request body must be a JSON object with one string member named email."}}



=== TEST 16: email missing is 400 invalid_request
--- request eval
"POST /accounts/resend-confirmation\n" . '{"mail":"user@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: "code":"invalid_request"



=== TEST 17: email not a string is 400 invalid_request
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":["user@example.com"]}'
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body_like: "code":"invalid_request"



=== TEST 18: email given twice is 400 invalid_request
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"a@example.com","email":"b@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
X-Outcome: invalid_request
--- response_body_like: "code":"invalid_request"



=== TEST 19: an email failing the policy is 400 invalid_email, never echoed
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"no-at-sign.example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Outcome: invalid_email
--- response_body chomp
{"error":{"code":"invalid_email","message":"The email address is not valid."}}



=== TEST 20: other locations of the server are untouched
--- config
    location = /accounts/resend-confirmation {
        resend_confirmation;
    }
    location /elsewhere {
        return 204;
    }
--- request
GET /elsewhere
--- error_code: 204
--- response_body
