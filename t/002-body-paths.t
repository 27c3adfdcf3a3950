# The body arrives every way nginx can deliver it: in a temp file, chunked,
# over HTTP/2, after "100 Continue", and pipelined on keep-alive connections.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

our $DefaultConfig = <<'_EOC_';
    location = /accounts/resend-confirmation {
        resend_confirmation;
        resend_confirmation_max_body_size 256;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
_EOC_

resend_defaults(config => $DefaultConfig);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: body kept in a temp file (client_body_in_file_only)
--- config
    location = /accounts/resend-confirmation {
        client_body_in_file_only clean;
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- response_body eval
$::Accepted
--- error_log
a client request body is buffered to a temporary file



=== TEST 2: body larger than client_body_buffer_size spills to a temp file
--- config
    location = /accounts/resend-confirmation {
        client_body_buffer_size 16;
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
"POST /accounts/resend-confirmation\n" . '{"pad":"' . ('p' x 300) . '","email":"user@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- response_body eval
$::Accepted



=== TEST 3: a temp-file body is still validated
--- config
    location = /accounts/resend-confirmation {
        client_body_in_file_only on;
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 4: chunked body in several chunks
--- raw_request eval
"POST /accounts/resend-confirmation HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
\r
5\r
{\"ema\r
15\r
il\":\"user\@example.com\r
2\r
\"}\r
0\r
\r
"
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- response_body eval
$::Accepted



=== TEST 5: chunked body over the limit is 413 JSON, not nginx's page
--- raw_request eval
"POST /accounts/resend-confirmation HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
\r
c8\r
" . ('x' x 200) . "\r
c8\r
" . ('x' x 200) . "\r
0\r
\r
"
--- error_code: 413
--- response_headers
Content-Type: application/json
Cache-Control: no-store
X-Outcome: payload_too_large
--- response_body eval
$::TooLarge



=== TEST 6: chunked body: the answer comes at the first byte past the limit, not at the end of the body
The body never ends (no last chunk): only a reader that stops at the limit
can answer before the timeout.
--- raw_request eval
["POST /accounts/resend-confirmation HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
\r
", "c8\r
" . ('x' x 200) . "\r
", "c8\r
" . ('x' x 200) . "\r
"]
--- raw_request_middle_delay: 0.05
--- timeout: 3
--- error_code: 413
--- response_headers
Content-Type: application/json
X-Outcome: payload_too_large
--- response_body eval
$::TooLarge



=== TEST 7: chunked body one byte past the limit
--- raw_request eval
"POST /accounts/resend-confirmation HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
\r
101\r
{\"email\":\"user\@example.com\"}" . (' ' x 229) . "\r
0\r
\r
"
--- error_code: 413
--- response_body eval
$::TooLarge



=== TEST 8: chunked body of exactly the limit
--- raw_request eval
"POST /accounts/resend-confirmation HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
Transfer-Encoding: chunked\r
\r
100\r
{\"email\":\"user\@example.com\"}" . (' ' x 228) . "\r
0\r
\r
"
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 9: Expect: 100-continue (Test::Nginx reports the interim 100 as the status; the final answer follows)
--- raw_request eval
"POST /accounts/resend-confirmation HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
Content-Length: 28\r
Expect: 100-continue\r
\r
{\"email\":\"user\@example.com\"}"
--- error_code: 100
--- response_body_like eval
qr{\AHTTP/1\.1 200 OK\r?\n.*X-Outcome: accepted\r?\n.*\Q$::Accepted\E\z}s



=== TEST 10: Expect: 100-continue over the limit gets 413 without 100 Continue
--- raw_request eval
"POST /accounts/resend-confirmation HTTP/1.1\r
Host: localhost\r
Connection: close\r
Content-Type: application/json\r
Content-Length: 1000\r
Expect: 100-continue\r
\r
"
--- raw_response_headers_unlike: 100 Continue
--- error_code: 413
--- response_body eval
$::TooLarge



=== TEST 11: pipelined requests on one keep-alive connection
--- pipelined_requests eval
["POST /accounts/resend-confirmation\n" . '{"email":"one@example.com"}',
 "POST /accounts/resend-confirmation\n" . '{"email":"not-an-email"}',
 "POST /accounts/resend-confirmation\n" . '{"email":"two@example.com"}']
--- more_headers
Content-Type: application/json
--- error_code eval
[200, 400, 200]
--- response_body eval
[$::Accepted, $::InvalidEmail, $::Accepted]



=== TEST 12: a refused request's body is discarded, the next pipelined request is intact
--- pipelined_requests eval
["PUT /accounts/resend-confirmation\n" . '{"email":"one@example.com"}',
 "POST /accounts/resend-confirmation\n" . '{"email":"two@example.com"}']
--- more_headers
Content-Type: application/json
--- error_code eval
[405, 200]
--- response_body eval
[$::NotAllowed, $::Accepted]



=== TEST 13: HTTP/2, accepted
--- http2
--- skip_eval
3: defined &Test::Nginx::Util::use_http3 && $Test::Nginx::Util::NginxVersion < 1.025001
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- response_body eval
$::Accepted



=== TEST 14: HTTP/2, invalid email
--- http2
--- skip_eval
3: defined &Test::Nginx::Util::use_http3 && $Test::Nginx::Util::NginxVersion < 1.025001
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@"}'
--- more_headers
Content-Type: application/json
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 15: HTTP/2, over the limit
--- http2
--- skip_eval
3: defined &Test::Nginx::Util::use_http3 && $Test::Nginx::Util::NginxVersion < 1.025001
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com","pad":"' . ('x' x 400) . '"}'
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_body eval
$::TooLarge



=== TEST 16: a Content-Length over nginx's client_max_body_size is still answered in JSON
--- config
    location = /accounts/resend-confirmation {
        client_max_body_size 1k;
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com","pad":"' . ('x' x 2000) . '"}'
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_headers
Content-Type: application/json
Cache-Control: no-store
--- response_body eval
$::TooLarge
--- no_error_log
[alert]
[crit]



=== TEST 17: HTTP/2, a refused method with a body: 405 in JSON
--- http2
--- skip_eval
3: defined &Test::Nginx::Util::use_http3 && $Test::Nginx::Util::NginxVersion < 1.025001
--- request eval
"PUT /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: application/json
--- error_code: 405
--- response_body eval
$::NotAllowed



=== TEST 18: HTTP/2, a wrong media type with a body: 415 in JSON
--- http2
--- skip_eval
3: defined &Test::Nginx::Util::use_http3 && $Test::Nginx::Util::NginxVersion < 1.025001
--- request eval
"POST /accounts/resend-confirmation\n" . '{"email":"user@example.com"}'
--- more_headers
Content-Type: text/plain
--- error_code: 415
--- response_body eval
$::UnsupportedMediaType
