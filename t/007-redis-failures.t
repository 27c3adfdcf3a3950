# When Redis fails: every waiting request gets exactly one answer, in time,
# through the failure policy; the worker never blocks; the link recovers by
# itself; a client that leaves does not disturb anything.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

# Redis of these tests' own, which they kill, stop and restart.
our $Port = $ENV{TEST_NGINX_REDIS_PORT} + 1;
$ENV{TEST_NGINX_OWN_REDIS_PORT} = $Port;

our $OwnRedis = <<'_EOC_';
    location = /r {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT connect_timeout=300ms timeout=300ms;
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

=== TEST 1: Redis up: recorded
--- init
t::Resend::start_redis($main::Port);
t::Resend::redis({port => $main::Port}, "FLUSHALL");
--- config eval: $::OwnRedis
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: accepted



=== TEST 2: Redis killed: 503 unavailable with Retry-After, at once
--- init
t::Resend::signal_redis("KILL", $main::Port);
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- timeout: 1
--- error_code: 503
--- response_headers
Retry-After: 1
X-Outcome: redis_error
--- response_body eval
$::Unavailable
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: (connection closed by redis|connection refused or unreachable|cannot connect|read failed|write failed)/



=== TEST 3: Redis still down: 503 again
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- timeout: 1
--- error_code: 503
--- response_headers
X-Outcome: redis_error



=== TEST 4: Redis restarted: requests succeed again without reloading nginx
--- init
t::Resend::start_redis($main::Port);
select undef, undef, undef, 2.5;  # longer than the link's largest backoff
--- request eval
"POST /r\n" . '{"email":"back@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- no_error_log
[alert]
[crit]



=== TEST 5: Redis stalled (SIGSTOP): 503 after the timeout, while another location answers at once
--- config eval: $::OwnRedis
--- init
t::Resend::start_redis($main::Port);
t::Resend::signal_redis("STOP", $main::Port);
t::Resend::background_post("/r", '{"email":"stalled@example.com"}');
select undef, undef, undef, 0.05;
--- request
GET /other
--- timeout: 0.2
--- error_code: 204
--- background_status: 503
--- background_elapsed: 0.25 1.5
--- background_like: "code":"unavailable"
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: no reply in time/



=== TEST 6: Redis continued: recorded again
--- init
t::Resend::signal_redis("CONT", $main::Port);
select undef, undef, undef, 2.5;
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200



=== TEST 7: policy accept: Redis down answers 200, counted as lost in the variable and the log
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:1 connect_timeout=300ms timeout=300ms;
        resend_confirmation_redis_failure accept;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: lost
--- response_body eval
$::Accepted
--- error_log eval
qr/\[error\] .*resend_confirmation: request not recorded, answered 200 \(resend_confirmation_redis_failure accept\)/



=== TEST 8: a client that leaves while its record is in flight: no crash, and the record is kept
--- init
t::Resend::start_redis($main::Port);
t::Resend::redis({port => $main::Port}, "FLUSHALL");
t::Resend::signal_redis("STOP", $main::Port);
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=5s;
    }
--- request eval
"POST /r\n" . '{"email":"gone@example.com"}'
--- abort
--- timeout: 0.3
--- ignore_response
--- error_log eval
qr/client prematurely closed connection|client closed connection/



=== TEST 9: after the client left, Redis answers its detached command; the next request is served
--- init
t::Resend::signal_redis("CONT", $main::Port);
select undef, undef, undef, 0.2;
--- request eval
"POST /r\n" . '{"email":"next@example.com"}'
--- error_code: 200
--- no_error_log
[alert]
[crit]
--- stream_port eval: $::Port
--- stream eval
[map { [email => $_, ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
        received_at => qr/\A\d{13}\z/] } qw(gone@example.com next@example.com)]



=== TEST 10: concurrent requests on one worker: pipelined, and every 200 has exactly one entry
--- config
    location = /r {
        resend_confirmation;
    }
--- init
t::Resend::redis("FLUSHALL");
# Redis's own counters tell pipelining in any nginx build: fewer reads of
# the socket than commands means writes that carried several commands.
my $stats = sub { my %s = t::Resend::redis("INFO", "stats") =~ /^(\w+):(\d+)\r?$/mg; \%s };
my $before = $stats->();
my ($ok, $sent) = t::Resend::load_posts(20, 25, "/r");
my $after = $stats->();
die "only $ok of $sent load requests were answered 200\n" unless $ok == $sent;
my $reads = $after->{total_reads_processed} - $before->{total_reads_processed};
my $commands = $after->{total_commands_processed} - $before->{total_commands_processed};
die "not pipelined: $commands commands in $reads reads\n" unless $reads < $commands - 10;
$t::Resend::LoadOK = $ok;
--- request eval
"POST /r\n" . '{"email":"last@example.com"}'
--- error_code: 200
--- stream_len eval
sub { $t::Resend::LoadOK + 1 }
--- error_log eval
# a debug line: checked only where nginx has --with-debug
$t::Resend::NginxDebug
    ? qr/resend_confirmation: redis write \d+ bytes, (?:[2-9]|[1-9]\d+) commands in flight/
    : []
--- timeout: 30
