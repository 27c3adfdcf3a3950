# Self-test of the test harness (t/lib/Test/Nginx/*.pm): stock nginx
# directives only, no module under test.  Must pass under our harness and
# under upstream Test::Nginx::Socket alike.

use Test::Nginx::Socket 'no_plan';

$ENV{TEST_NGINX_GREETING} = 'hello from env';
# Debug log lines exist only in nginx built --with-debug.
our $NginxDebug = `$Test::Nginx::Util::NginxBinary -V 2>&1` =~ /--with-debug/
                  && ($ENV{TEST_NGINX_LOG_LEVEL} || 'debug') eq 'debug';
$ENV{TEST_NGINX_HTML_DIR} ||= html_dir();

# The nginx core's version as our harness reads it from `nginx -V` of
# nginx, OpenResty, freenginx and Angie builds (upstream parses it its own
# way and has no parse_nginx_version: nothing to check there).
if (defined &Test::Nginx::Util::parse_nginx_version) {
    my @cases = (
        ["nginx version: nginx/1.22.1\nbuilt with OpenSSL 3.0.11 19 Sep 2023\n"
         . "configure arguments: --with-cc-opt='-ffile-prefix-map=/build/nginx-1.22.1=.'\n", '1.022001'],
        ["nginx version: nginx/1.24.0 (Ubuntu)\nbuilt by gcc 13.2.0\n", '1.024000'],
        ["nginx version: openresty/1.25.3.1\nbuilt by gcc 12.2.0\n", '1.025003'],
        ["nginx version: freenginx/1.27.4\n", '1.027004'],
        ["Angie version: Angie/1.13.0\nnginx version: nginx/1.31.2\nbuilt by gcc 14.2.0\n", '1.031002'],
        ["Angie version: Angie/1.13.0\n", undef],
    );
    for my $case (@cases) {
        my ($text, $want) = @$case;
        my ($first) = $text =~ /\A([^\n]*)/;
        Test::More::is(Test::Nginx::Util::parse_nginx_version($text), $want,
                       "nginx -V starting \"$first\": core version " . ($want // 'none'));
    }
}

no_shuffle();
run_tests();

__DATA__

=== TEST 1: plain GET, default status 200, headers present and absent
--- config
    location = /t {
        add_header X-Foo bar;
        return 200 "hello\n";
    }
--- request
GET /t
--- response_body
hello
--- response_headers
X-Foo: bar
Content-Type: text/plain
!X-Absent
--- no_error_log
[error]



=== TEST 2: error_code, error_log and grep_error_log for a missing file
--- config
    location /missing/ {
        root $TEST_NGINX_HTML_DIR;
    }
--- request
GET /missing/nope.html
--- error_code: 404
--- response_body_like: 404 Not Found
--- error_log
No such file or directory
[error]
--- grep_error_log eval
qr/open\(\) "[^"]*" failed/
--- grep_error_log_out eval
qr{^open\(\) ".*/html/missing/nope\.html" failed\n$}



=== TEST 3: automatic Host / Connection headers and more_headers
--- config
    location = /h {
        return 200 "host=$host conn=$http_connection foo=$http_x_foo\n";
    }
--- request
GET /h
--- more_headers
X-Foo: some value
--- response_body
host=localhost conn=close foo=some value



=== TEST 4: request body gets a Content-Length and is trimmed
--- config
    location = /len {
        return 200 "len=$http_content_length te=$http_transfer_encoding\n";
    }
--- request
POST /len
hello world
--- response_body
len=11 te=



=== TEST 5: explicit Content-Length: the body is sent as is (with its newline)
--- config
    location = /len {
        return 200 "len=$http_content_length\n";
    }
--- more_headers
Content-Length: 12
--- request
POST /len
hello world
--- response_body
len=12



=== TEST 6: chunked request body read through a proxy: decoded length
--- config
    location = /body {
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/len;
    }
    location = /len {
        return 200 "len=$http_content_length\n";
    }
--- more_headers
Transfer-Encoding: chunked
--- request eval
"POST /body\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
--- response_body
len=11



=== TEST 7: chunked request body over client_max_body_size: 413
--- config
    location = /small {
        client_max_body_size 4;
        proxy_pass http://127.0.0.1:$TEST_NGINX_SERVER_PORT/len;
    }
    location = /len {
        return 200 "len=$http_content_length\n";
    }
--- more_headers
Transfer-Encoding: chunked
--- request eval
"POST /small\n5\r\nhello\r\n0\r\n\r\n"
--- error_code: 413
--- error_log
client intended to send too large chunked body



=== TEST 8: chunked response is decoded
--- config
    location = /chunked {
        ssi on;
        ssi_types text/plain;
        return 200 "chunked body\n";
    }
--- request
GET /chunked
--- response_headers
Transfer-Encoding: chunked
!Content-Length
--- response_body
chunked body



=== TEST 9: pipelined requests on one keep-alive connection
--- config
    location = /a {
        return 200 "a conn=$http_connection\n";
    }
    location = /b {
        return 201 "b conn=$http_connection\n";
    }
--- pipelined_requests eval
["GET /a", "GET /b"]
--- error_code eval
[200, 201]
--- response_body eval
["a conn=keep-alive\n", "b conn=close\n"]



=== TEST 10: several requests, one connection each
--- config
    location = /a {
        return 200 "a\n";
    }
    location = /b {
        return 404;
    }
--- request eval
["GET /a", "GET /b"]
--- error_code eval
[200, 404]
--- response_body_like eval
["^a\$", "404 Not Found"]



=== TEST 11: request split into packets keeps headers and length right
--- config
    location = /len {
        return 200 "len=$http_content_length\n";
    }
--- request eval
[["POST /len\nhel", {value => "lo", delay_before => 0.05}]]
--- response_body
len=5



=== TEST 12: raw_request in pieces with a middle delay
--- config
    location = /raw {
        return 200 "raw ok\n";
    }
--- raw_request eval
["GET /raw HTTP/1.1\r\nHost: local", "host\r\nConnection: close\r\n\r\n"]
--- raw_request_middle_delay: 0.05
--- response_body
raw ok



=== TEST 13: HTTP/2 via curl
upstream Test::Nginx (HEAD) writes "http2 on;" for any nginx >= 1.19.9, but
nginx only has that directive from 1.25.1 on: skip there under upstream
--- skip_eval
3: defined &Test::Nginx::Util::use_http3 && $Test::Nginx::Util::NginxVersion < 1.025001
--- http2
--- config
    location = /h2 {
        add_header X-Proto $server_protocol;
        return 200 "proto=$server_protocol\n";
    }
--- request
GET /h2
--- response_headers
X-Proto: HTTP/2.0
--- response_body
proto=HTTP/2.0



=== TEST 14: $TEST_NGINX_ variables in config and response_body
--- config
    location = /env {
        return 200 "$TEST_NGINX_GREETING port=$server_port\n";
    }
--- request
GET /env
--- response_body
$TEST_NGINX_GREETING port=$TEST_NGINX_SERVER_PORT



=== TEST 15: http_config and main_config placement, regex header checks
--- main_config
worker_rlimit_nofile 1024;
--- http_config
    map $uri $flavour {
        default plain;
        /m      mapped;
    }
--- config
    location = /m {
        add_header X-Flavour $flavour;
        return 200 "ok\n";
    }
--- request
GET /m
--- response_headers_like
X-Flavour: ^map\w+
--- raw_response_headers_like: X-Flavour: mapped\r\n



=== TEST 16: HEAD request
--- config
    location = /head {
        return 200 "not sent\n";
    }
--- request
HEAD /head
--- response_body



=== TEST 17: keep-alive without close: client timeout with --- abort
--- config
    location = /ka {
        return 200 "still open\n";
    }
--- more_headers
Connection: keep-alive
--- request
GET /ka
--- timeout: 300ms
--- abort
--- response_body
still open



=== TEST 18: error_log and no_error_log with eval'd regexes
--- config
    location = /e {
        rewrite_log on;
        if ($request_uri ~ ^/(e)$) {
            return 200 "e\n";
        }
    }
--- request
GET /e
--- response_body
e
--- error_log eval
# rewrite_log's [notice] line in every build; debug lines only --with-debug
[qr/\[notice\] .*"\^\/\(e\)\$" matches "\/e"/, 'matches "/e"',
 ($::NginxDebug ? (qr/http request line: "GET \/e HTTP\/1\.1"/, "http finalize request") : ())]
--- no_error_log eval
[qr/\[(?:error|alert|crit|emerg)\]/, "this text never appears"]



=== TEST 19: user_files are served from the html dir
--- user_files
>>> hello.txt
file content
--- config
--- request
GET /hello.txt
--- response_body
file content



=== TEST 20: skipped for every nginx version
--- skip_nginx: 2: > 0.0.1
--- config
    location = /never { return 500; }
--- request
GET /never
--- response_body
never checked



=== TEST 21: must_die on a bad config
--- config
    location = /bad {
        return 200 a b c;
    }
--- must_die
--- suppress_stderr
--- error_log
invalid number of arguments in "return" directive
