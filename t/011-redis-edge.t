# Edge cases of the Redis link: an error reply for a request that went away
# is just that request's; Redis closing an idle connection is no failure.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

our $Port = $ENV{TEST_NGINX_REDIS_PORT} + 4;
$ENV{TEST_NGINX_OWN_REDIS_PORT} = $Port;

our $Config = <<'_EOC_';
    resend_confirmation_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=5s;
    location = /bad {
        resend_confirmation;
        resend_confirmation_stream wrongtype;
    }
    location = /good {
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
    location = /other {
        return 204;
    }
_EOC_

resend_defaults(more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a client leaves while its XADD (bound to fail: WRONGTYPE) waits on a stalled Redis
--- config eval: $::Config
--- init
t::Resend::start_redis($main::Port);
t::Resend::redis({port => $main::Port}, "FLUSHALL");
t::Resend::redis({port => $main::Port}, "SET", "wrongtype", "not a stream");
t::Resend::signal_redis("STOP", $main::Port);
--- request eval
"POST /bad\n" . '{"email":"gone@example.com"}'
--- abort
--- timeout: 0.3
--- ignore_response



=== TEST 2: ... the error for the detached command does not fail the others: the next one is recorded
--- init
t::Resend::background_post("/good", '{"email":"waiting@example.com"}');
select undef, undef, undef, 0.2;
t::Resend::signal_redis("CONT", $main::Port);
--- request
GET /other
--- error_code: 204
--- background_status: 200
--- background_like: X-Outcome: accepted
--- error_log eval
qr/resend_confirmation: redis 127\.0\.0\.1:\d+ refused XADD: WRONGTYPE/
--- no_error_log
handshake
[alert]
[crit]
--- stream_port eval: $::Port
--- stream_len: 1



=== TEST 3: Redis closes an idle connection: the next request reconnects and is recorded
--- init
t::Resend::redis({port => $main::Port}, "CLIENT", "KILL", "TYPE", "normal");
select undef, undef, undef, 0.1;
--- request eval
"POST /good\n" . '{"email":"after-idle@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- no_error_log
connection closed by redis
[alert]
--- stream_port eval: $::Port
--- stream_len: 2
