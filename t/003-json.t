# Strict JSON at the edge: malformed UTF-8, NUL bytes, duplicates, depth,
# numbers, empty bodies. Bad input is a 4xx JSON answer, never a 5xx, never
# an [alert] or [crit] in the error log, never the input echoed back.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

resend_defaults(config => $Endpoint, more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: empty body
--- request eval
"POST /r\n"
--- error_code: 400
--- response_headers
X-Outcome: invalid_json
--- response_body eval
$::InvalidJson



=== TEST 2: whitespace only
--- more_headers
Content-Type: application/json
Content-Length: 5
--- request eval
"POST /r\n \t\r\n "
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 3: no body at all (no Content-Length)
--- raw_request eval
"POST /r HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
\r
"
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 4: malformed UTF-8 inside a string (invalid continuation byte)
--- request eval
"POST /r\n" . "{\"email\":\"user\@example.com\",\"name\":\"\xc3\x28\"}"
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 5: overlong UTF-8 encoding of '/'
--- request eval
"POST /r\n" . "{\"email\":\"user\@example.com\",\"x\":\"\xc0\xaf\"}"
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 6: UTF-8 encoded surrogate (CESU)
--- request eval
"POST /r\n" . "{\"email\":\"user\@example.com\",\"x\":\"\xed\xa0\x80\"}"
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 7: valid UTF-8 in an ignored member is fine
--- request eval
"POST /r\n" . "{\"email\":\"user\@example.com\",\"name\":\"J\xc3\xbcrgen \xf0\x9f\x98\x80\"}"
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 8: a raw NUL byte inside a string
--- request eval
"POST /r\n" . "{\"email\":\"user\x00\@example.com\"}"
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 9: a raw NUL byte after the document
--- request eval
"POST /r\n" . "{\"email\":\"user\@example.com\"}\x00"
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 10: an escaped NUL inside the email is an invalid email
--- request eval
"POST /r\n" . '{"email":"user\u0000@example.com"}'
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 11: an escaped email is decoded before the policy
--- request eval
"POST /r\n" . '{"email":"user\u0040example.com"}'
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 12: trailing bytes after the object
--- request eval
"POST /r\n" . '{"email":"user@example.com"} x'
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 13: two objects
--- request eval
"POST /r\n" . '{"email":"user@example.com"}{"email":"user@example.com"}'
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 14: trailing comma
--- request eval
"POST /r\n" . '{"email":"user@example.com",}'
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 15: single quotes
--- request eval
"POST /r\n" . "{'email':'user\@example.com'}"
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 16: duplicate email keys
--- request eval
"POST /r\n" . '{"email":"user@example.com","email":"user@example.com"}'
--- error_code: 400
--- response_headers
X-Outcome: invalid_request
--- response_body eval
$::InvalidRequest



=== TEST 17: duplicate email keys, one spelled with an escape
--- request eval
"POST /r\n" . '{"email":"user@example.com","em\u0061il":"other@example.com"}'
--- error_code: 400
--- response_body eval
$::InvalidRequest



=== TEST 18: duplicate keys other than email are ignored
--- request eval
"POST /r\n" . '{"x":1,"x":2,"email":"user@example.com"}'
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 19: nesting deeper than the limit (32)
--- request eval
"POST /r\n" . '{"email":"user@example.com","deep":' . ('[' x 40) . (']' x 40) . '}'
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 20: nesting within the limit
--- request eval
"POST /r\n" . '{"email":"user@example.com","deep":' . ('[' x 20) . (']' x 20) . '}'
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 21: deep nesting that would exhaust a recursive parser
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_max_body_size 64k;
    }
--- request eval
"POST /r\n" . ('[' x 30000) . (']' x 30000)
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 22: a number too large for 64 bits is refused as invalid JSON
--- request eval
"POST /r\n" . '{"email":"user@example.com","n":123456789012345678901234567890}'
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 23: a number out of double range is refused as invalid JSON
--- request eval
"POST /r\n" . '{"email":"user@example.com","n":1e400}'
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 24: ordinary numbers are fine
--- request eval
"POST /r\n" . '{"email":"user@example.com","n":-12.5e-3,"m":18446744073709551615}'
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 25: root is a string
--- request eval
"POST /r\n" . '"user@example.com"'
--- error_code: 400
--- response_body eval
$::InvalidRequest



=== TEST 26: root is null
--- request eval
"POST /r\nnull"
--- error_code: 400
--- response_body eval
$::InvalidRequest



=== TEST 27: email is null
--- request eval
"POST /r\n" . '{"email":null}'
--- error_code: 400
--- response_body eval
$::InvalidRequest



=== TEST 28: email is an object
--- request eval
"POST /r\n" . '{"email":{"address":"user@example.com"}}'
--- error_code: 400
--- response_body eval
$::InvalidRequest



=== TEST 29: binary garbage
--- request eval
"POST /r\n" . CORE::join('', map { chr(($_ * 37 + 11) % 256) } 0 .. 511)
--- error_code: 400
--- response_body eval
$::InvalidJson



=== TEST 30: an unterminated string
--- request eval
"POST /r\n" . '{"email":"user@example.com'
--- error_code: 400
--- response_body eval
$::InvalidJson
