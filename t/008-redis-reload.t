# Reload and shutdown with a record in flight: the old worker answers it
# (through the failure policy once the timeout passes) and exits cleanly,
# without an [alert] about sockets left open.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

our $Port = $ENV{TEST_NGINX_REDIS_PORT} + 2;
$ENV{TEST_NGINX_OWN_REDIS_PORT} = $Port;

master_on();
workers(1);
resend_defaults(more_headers => "Content-Type: application/json");


no_shuffle();
run_tests();

__DATA__

=== TEST 1: reload while Redis stalls: the old worker still answers its waiting request
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=500ms;
    }
    location = /other {
        return 204;
    }
--- init
t::Resend::start_redis($main::Port);
t::Resend::signal_redis("STOP", $main::Port);
t::Resend::background_post("/r", '{"email":"reload@example.com"}');
select undef, undef, undef, 0.1;
kill 'HUP', main::master_pid();
select undef, undef, undef, 0.2;
--- request
GET /other
--- error_code: 204
--- background_status: 503
--- background_elapsed: 0.4 2
--- wait: 1
--- error_log eval
[qr/resend_confirmation: redis 127\.0\.0\.1:\d+: no reply in time/, qr/gracefully shutting down/,
 qr/\[notice\] \d+#\d+: exit$/, qr/worker process \d+ exited with code 0$/]
--- no_error_log
[alert]
[crit]



=== TEST 2: after the reload, with Redis back, the new worker records
--- init
t::Resend::signal_redis("CONT", $main::Port);
t::Resend::redis({port => $main::Port}, "FLUSHALL");
--- request eval
"POST /r\n" . '{"email":"after@example.com"}'
--- error_code: 200
--- stream_port eval: $::Port
--- stream_len: 1
--- no_error_log
[alert]
[crit]
