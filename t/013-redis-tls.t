# TLS to Redis: real redis-servers with --tls-port and certificates this
# test makes (openssl CLI): verified against a CA, the name checked, a client
# certificate where Redis asks for one, verification off, sessions resumed;
# a wrong CA, a wrong name, a missing client certificate each answer 503 with
# a log line naming Redis and the reason; a plain link to a TLS port hints at
# `tls`; parameters that cannot work are nginx -t errors with file:line.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use File::Temp ();

# Redis of this test's own: plain ports (for the checks) and TLS ports.
our $Plain = $ENV{TEST_NGINX_REDIS_PORT} + 10;          # TLS on $Tls
our $PlainMutual = $ENV{TEST_NGINX_REDIS_PORT} + 11;    # client certificates required on $TlsMutual
$ENV{TEST_NGINX_TLS_PORT} = our $Tls = $ENV{TEST_NGINX_REDIS_PORT} + 20;
$ENV{TEST_NGINX_TLS_MUTUAL_PORT} = our $TlsMutual = $ENV{TEST_NGINX_REDIS_PORT} + 21;
$ENV{TEST_NGINX_PLAIN_PORT} = $Plain;

# Certificates: a CA, Redis's certificate for 127.0.0.1 and localhost, a
# client certificate, and another CA that signed none of them.
our $Dir = File::Temp::tempdir(CLEANUP => 1);
$ENV{TEST_NGINX_TLS_DIR} = $Dir;
t::Resend::tls_certificates($Dir);

sub start_tls_redis {
    my ($plain, $tls, $auth_clients) = @_;
    t::Resend::start_redis($plain, '--tls-port', $tls,
        '--tls-cert-file', "$Dir/server.crt", '--tls-key-file', "$Dir/server.key",
        '--tls-ca-cert-file', "$Dir/ca.crt", '--tls-auth-clients', $auth_clients);
    t::Resend::redis({port => $plain}, 'FLUSHALL');
}

our $Location = <<'_EOC_';
    location = /r {
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
_EOC_

resend_defaults(more_headers => "Content-Type: application/json",
                init => 'main::start_tls_redis($main::Plain, $main::Tls, "no")',
                request => "POST /r\n" . '{"email":"tls@example.com"}');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: tls with tls_ca: recorded over TLS, the name checked against the address (IP 127.0.0.1)
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- stream_port eval: $main::Plain
--- stream_len: 1



=== TEST 2: tls_name: the name sent as SNI and verified; SELECT goes over TLS too
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT db=3 tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt tls_name=localhost;
--- error_code: 200
--- stream_port eval: $main::Plain
--- stream_db: 3
--- stream_len: 1



=== TEST 3: the wrong CA: 503, and one line naming Redis and OpenSSL's reason; nothing written
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/other-ca.crt;
--- error_code: 503
--- response_headers
X-Outcome: redis_error
--- stream_port eval: $main::Plain
--- stream_len: 0
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: TLS certificate verify error: \((19:self-signed certificate in certificate chain|20:unable to get local issuer certificate)\)/



=== TEST 4: a name the certificate does not have: 503 and the line
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt tls_name=redis.example.com;
--- error_code: 503
--- stream_port eval: $main::Plain
--- stream_len: 0
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: TLS certificate does not match "redis\.example\.com"/



=== TEST 5: tls_verify=off: any certificate is taken
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_verify=off tls_name=redis.example.com;
--- error_code: 200
--- stream_port eval: $main::Plain
--- stream_len: 1
--- error_log eval
qr/\[warn\] .*"tls_verify=off": Redis's certificates are not checked, so anyone on the path can pose as Redis in \S+nginx\.conf:\d+/



=== TEST 6: tls_verify=on without tls_ca: the system's CA store, which does not know the test's CA
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls;
--- error_code: 503
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: TLS certificate verify error: \((19:self-signed certificate in certificate chain|20:unable to get local issuer certificate)\)/



=== TEST 7: Redis requires a client certificate (tls-auth-clients yes): tls_cert and tls_key
--- init
main::start_tls_redis($main::PlainMutual, $main::TlsMutual, "yes");
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_MUTUAL_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt tls_cert=$TEST_NGINX_TLS_DIR/client.crt tls_key=$TEST_NGINX_TLS_DIR/client.key;
--- error_code: 200
--- stream_port eval: $main::PlainMutual
--- stream_len: 1



=== TEST 8: ... and without one: 503, and nginx's line naming Redis: OpenSSL's alert (sent after the handshake in TLS 1.3; [crit], as nginx logs alerts it does not know), or the reset when Redis closes first
--- init
main::start_tls_redis($main::PlainMutual, $main::TlsMutual, "yes");
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_MUTUAL_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- error_code: 503
--- stream_port eval: $main::PlainMutual
--- stream_len: 0
--- error_log eval
[qr/(tlsv13 alert certificate required|SSL_write\(\) failed \(104: Connection reset by peer\)).*, redis: 127\.0\.0\.1:\d+/,
 qr/\[warn\] .*resend_confirmation: redis 127\.0\.0\.1:\d+ closed the TLS connection before any reply: if it requires client certificates \(tls-auth-clients\), add "tls_cert=" and "tls_key=" to "resend_confirmation_redis"/]
--- no_error_log
[alert]
[emerg]



=== TEST 9: the session is resumed when the link reconnects: a first connection ...
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- error_code: 200
--- no_error_log
SSL reused session
[alert]
[crit]
[emerg]



=== TEST 10: ... Redis closes it (CLIENT KILL), the next request reconnects and resumes the session
--- init
t::Resend::redis({port => $main::Plain}, 'CLIENT', 'KILL', 'TYPE', 'normal');
select undef, undef, undef, 0.1;
--- error_code: 200
--- stream_port eval: $main::Plain
--- stream eval
[map { [email => 'tls@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
        received_at => qr/\A\d{13}\z/] } 1 .. 2]
--- error_log eval
$t::Resend::NginxDebug ? ["SSL reused session"] : []



=== TEST 11: a plain link to a TLS port: 503 and a hint that the server may need tls
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT connect_timeout=300ms timeout=300ms;
--- error_code: 503
--- error_log eval
qr/\[warn\] .*resend_confirmation: redis 127\.0\.0\.1:\d+ closed the connection before any reply: if it expects TLS, add "tls" to "resend_confirmation_redis"/



=== TEST 12: tls to a plain port: 503 once connect_timeout (which covers the TLS handshake) is over
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_PLAIN_PORT tls tls_verify=off connect_timeout=300ms timeout=2s;
--- timeout: 1.5
--- error_code: 503
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: TLS handshake timed out/



=== TEST 13: tls_cert without tls_key is an nginx -t error naming file:line
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_cert=$TEST_NGINX_TLS_DIR/client.crt;
--- must_die
--- error_log eval
qr/\[emerg\] .*"tls_cert=" needs "tls_key=" in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 14: tls_* parameters without tls are an error
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- must_die
--- error_log eval
qr/\[emerg\] .*"tls_\*=" parameters of "resend_confirmation_redis" need "tls" in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 15: a CA file that cannot be read is an error naming file:line
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/missing.crt;
--- must_die
--- error_log eval
qr/\[emerg\] .*cannot load "tls_ca=\S+missing\.crt" in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 16: tls_verify takes on or off
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_verify=maybe;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "tls_verify=maybe" in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 17: tls needs a host:port address
--- config eval: $::Location
--- http_config
    resend_confirmation_redis unix:/tmp/redis.sock tls tls_verify=off;
--- must_die
--- error_log eval
qr/\[emerg\] .*"tls" needs a host:port address, not unix: in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 18: tls_ca with tls_verify=off
--- config eval: $::Location
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_verify=off tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- must_die
--- error_log eval
qr/\[emerg\] .*"tls_ca=" is of no use with "tls_verify=off" in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 19: metrics: a TLS link counts as connected once the handshake and its checks are through
--- config eval: $::Location . "location = /metrics { resend_confirmation_metrics; }"
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- request eval
["POST /r\n" . '{"email":"tls@example.com"}', "GET /metrics"]
--- error_code eval
[200, 200]
--- response_body_like eval
["", qr/^resend_confirmation_redis_up\{redis="127\.0\.0\.1:\d+"\}[ ]1\n
        .*^resend_confirmation_redis_connects_total\{redis="127\.0\.0\.1:\d+"\}[ ]1\n
        .*^resend_confirmation_redis_connect_failures_total\{redis="127\.0\.0\.1:\d+"\}[ ]0\n/msx]



=== TEST 20: ... and a failed check as a connect failure, not as a connect
--- config eval: $::Location . "location = /metrics { resend_confirmation_metrics; }"
--- http_config
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_TLS_PORT tls tls_ca=$TEST_NGINX_TLS_DIR/other-ca.crt;
--- request eval
["POST /r\n" . '{"email":"tls@example.com"}', "GET /metrics"]
--- error_code eval
[503, 200]
--- response_body_like eval
["", qr/^resend_confirmation_redis_up\{redis="127\.0\.0\.1:\d+"\}[ ]0\n
        .*^resend_confirmation_redis_connects_total\{redis="127\.0\.0\.1:\d+"\}[ ]0\n
        .*^resend_confirmation_redis_connect_failures_total\{redis="127\.0\.0\.1:\d+"\}[ ]1\n/msx]
