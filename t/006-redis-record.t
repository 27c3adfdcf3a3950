# Every accepted request is one stream entry in Redis, written before the
# 200: its fields, the custom fields, the stream key and cap, the handshake
# (AUTH with an ACL user, SELECT), and nothing for refused requests.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

our $RecordedFields = [
    email => 'Someone.Else@Example.com',
    ip => '127.0.0.1',
    request_id => qr/\A[0-9a-f]{32}\z/,
    received_at => qr/\A1[0-9]{12}\z/,
];

resend_defaults(config => $Endpoint, more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: an accepted request is one entry: email as sent, ip, request_id, received_at
--- request eval
"POST /r\n" . '{"email":"Someone.Else@Example.com","ignored":"not recorded"}'
--- error_code: 200
--- response_body eval
$::Accepted
--- stream eval
[$::RecordedFields]



=== TEST 2: received_at is the time of the request in milliseconds
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- stream eval
[[email => 'user@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
  received_at => sub { $_[0] =~ /\A\d{13}\z/ && abs($_[0] - Time::HiRes::time() * 1000) < 10_000 }]]



=== TEST 3: refused requests leave no entry
--- pipelined_requests eval
["POST /r\n" . '{"email":"not an email"}',
 "POST /r\n" . '{"email":1}',
 "POST /r\n" . 'not json',
 "PUT /r\n" . '{"email":"user@example.com"}',
 "POST /r\n" . '{"email":"user@example.com","pad":"' . ('x' x 5000) . '"}']
--- error_code eval
[400, 400, 400, 405, 413]
--- stream_len: 0



=== TEST 4: one entry per accepted request, in order, on a keep-alive connection
--- pipelined_requests eval
["POST /r\n" . '{"email":"one@example.com"}',
 "POST /r\n" . '{"email":"bad"}',
 "POST /r\n" . '{"email":"two@example.com"}',
 "POST /r\n" . '{"email":"one@example.com"}']
--- error_code eval
[200, 400, 200, 200]
--- stream eval
[map { [email => $_, ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
        received_at => qr/\A\d{13}\z/] } qw(one@example.com two@example.com one@example.com)]



=== TEST 5: custom fields from variables, after the fixed ones
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_field user_agent $http_user_agent;
        resend_confirmation_field route "$request_method $uri";
        resend_confirmation_field empty $http_x_missing;
    }
--- more_headers
Content-Type: application/json
User-Agent: tests/1.0
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- stream eval
[[email => 'user@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
  received_at => qr/\A\d{13}\z/, user_agent => 'tests/1.0', route => 'POST /r', empty => '']]



=== TEST 6: custom fields and the stream are inherited from the server level
--- config
    resend_confirmation_stream inherited:stream;
    resend_confirmation_field source edge;
    location = /r {
        resend_confirmation;
    }
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- stream_key: inherited:stream
--- stream eval
[[email => 'user@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
  received_at => qr/\A\d{13}\z/, source => 'edge']]



=== TEST 7: maxlen caps the stream (MAXLEN ~: Redis trims whole nodes)
--- init
t::Resend::redis("FLUSHALL");
t::Resend::redis("CONFIG", "SET", "stream-node-max-entries", "2");
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_stream capped maxlen=4;
    }
--- pipelined_requests eval
[map { "POST /r\n" . qq({"email":"user$_\@example.com"}) } 1 .. 20]
--- error_code eval
[(200) x 20]
--- response_body_like eval
[("Please check your inbox") x 20]
--- stream_key: capped
--- stream_len_between: 4 6



=== TEST 8: AUTH with an ACL user and password
--- init
t::Resend::redis("FLUSHALL");
t::Resend::redis("CONFIG", "SET", "stream-node-max-entries", "100");
t::Resend::redis(qw(ACL SETUSER mailer reset on >s3cret ~* +@all));
--- http_config eval
"resend_confirmation_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} user=mailer password=s3cret;"
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- stream_len: 1



=== TEST 9: a wrong password: 503 unavailable with Retry-After, and a clear error log line
--- http_config eval
"resend_confirmation_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} user=mailer password=wrong;"
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 503
--- response_headers
Retry-After: 1
Content-Type: application/json
Cache-Control: no-store
--- response_body eval
$::Unavailable
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+ refused the connection handshake: WRONGPASS/
--- stream_len: 0



=== TEST 10: db= selects the database
--- http_config eval
"resend_confirmation_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT} db=3;"
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- stream_db: 3
--- stream eval
[[email => 'user@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
  received_at => qr/\A\d{13}\z/]]



=== TEST 11: over a unix socket
--- skip_eval
3: !$ENV{TEST_NGINX_REDIS_SOCKET}
--- http_config eval
"resend_confirmation_redis unix:$ENV{TEST_NGINX_REDIS_SOCKET};"
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- stream_len: 1



=== TEST 12: the redis address, the stream and the fields are per location
--- http_config eval
"resend_confirmation_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};"
--- config
    location = /a {
        resend_confirmation;
        resend_confirmation_stream stream:a;
    }
    location = /r {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:$TEST_NGINX_REDIS_PORT db=2;
        resend_confirmation_field location r;
    }
--- pipelined_requests eval
["POST /a\n" . '{"email":"a@example.com"}', "POST /r\n" . '{"email":"r@example.com"}']
--- error_code eval
[200, 200]
--- stream_db: 2
--- stream eval
[[email => 'r@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
  received_at => qr/\A\d{13}\z/, location => 'r']]



=== TEST 13: request_id is the request's $request_id (as the access log shows it), new for every request
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_field rid $request_id;
    }
--- request eval
["POST /r\n" . '{"email":"one@example.com"}', "POST /r\n" . '{"email":"two@example.com"}']
--- error_code eval
[200, 200]
--- stream eval
[map { [email => $_, ip => '127.0.0.1',
        request_id => sub { $_[0] =~ /\A[0-9a-f]{32}\z/ && $_[0] eq $_[1]{rid} && !$main::Seen{$_[0]}++ },
        received_at => qr/\A\d{13}\z/, rid => qr/\A[0-9a-f]{32}\z/] } qw(one@example.com two@example.com)]
