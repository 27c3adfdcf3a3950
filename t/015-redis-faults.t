# Honest outcomes under Redis faults (issue 11): what a 503 means for the
# record and the email limits, one deadline per request, clients that leave,
# error replies that do not flood the log, and a quick reconnect.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use IO::Select;
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

# Redis of these tests' own: one they stop and fill, one that wants AUTH.
our $Port = $ENV{TEST_NGINX_REDIS_PORT} + 5;
our $PassPort = $ENV{TEST_NGINX_REDIS_PORT} + 6;
$ENV{TEST_NGINX_OWN_REDIS_PORT} = $Port;
$ENV{TEST_NGINX_PASS_REDIS_PORT} = $PassPort;

our $HttpConfig = <<'_EOC_';
    resend_confirmation_limit_zone $resend_confirmation_email zone=mail:1m rate=1r/m;
    log_format outcome '$status $resend_confirmation_outcome';
_EOC_

# endpoint($uri, $redis, @directives): a location of the module recording
# into `$redis` (address and parameters), its outcome in X-Outcome.
sub endpoint {
    my ($uri, $redis, @more) = @_;
    return join "\n        ", "    location = $uri {", 'resend_confirmation;',
        "resend_confirmation_redis $redis;", @more, $t::Resend::RequestTime,
        'add_header X-Outcome $resend_confirmation_outcome always;' . "\n    }\n";
}

our $Stalling = '127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT connect_timeout=300ms timeout=300ms';
# Redis may take its time: clients leave first.
our $Waiting = endpoint('/r', '127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=5s',
                        'access_log logs/outcomes.log outcome;');

sub connect_nginx {
    IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                          PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984)
        or die "cannot connect to nginx: $!\n";
}

sub request_text {
    my ($uri, $email, $connection) = @_;
    my $body = qq({"email":"$email"});
    return "POST $uri HTTP/1.1\r\nHost: localhost\r\nConnection: " . ($connection // 'close')
         . "\r\nContent-Type: application/json\r\nContent-Length: " . length($body)
         . "\r\n\r\n$body";
}

# post_all($uri, @emails): one connection each, all sent at once; returns,
# in order, [status, X-Outcome, seconds until the answer (as nginx counts
# them, X-Request-Time)] for each.
sub post_all {
    my ($uri, @emails) = @_;
    my $started = time;
    my (%index, %text, @result);
    my $select = IO::Select->new;
    for my $i (0 .. $#emails) {
        my $sock = connect_nginx();
        syswrite $sock, request_text($uri, $emails[$i]);
        $index{$sock} = $i;
        $text{$sock} = '';
        $select->add($sock);
    }
    while ($select->count and time - $started < 10) {
        for my $sock ($select->can_read(0.01)) {
            my $n = sysread $sock, my $chunk, 65536;
            if ($n) { $text{$sock} .= $chunk; next }
            my ($status) = $text{$sock} =~ m{\AHTTP/1\.1 (\d+)};
            my ($outcome) = $text{$sock} =~ m{^X-Outcome: (\S+)}mi;
            my ($took) = $text{$sock} =~ m{^X-Request-Time: ([\d.]+)}mi;
            $result[$index{$sock}] = [$status // 0, $outcome // '', $took // time - $started];
            $select->remove($sock);
            close $sock;
        }
    }
    return @result;
}

# The access log of the blocks that write one, as lines.
sub outcome_lines {
    open my $in, '<', server_root() . '/logs/outcomes.log' or return ();
    chomp(my @lines = <$in>);
    return @lines;
}

sub error_log_lines {
    open my $in, '<', server_root() . '/logs/error.log' or return ();
    return <$in>;
}

resend_defaults(more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: written, then Redis stalls past timeout: 503 redis_timeout; the record lands later and the email limit kept its count
--- http_config eval: $::HttpConfig
--- config eval
main::endpoint('/r', $::Stalling, 'resend_confirmation_limit zone=mail silent;')
. main::endpoint('/accept', $::Stalling, 'resend_confirmation_limit zone=mail silent;',
                 'resend_confirmation_redis_failure accept;')
--- init
t::Resend::start_redis($main::Port);
t::Resend::redis({port => $main::Port}, "FLUSHALL");
t::Resend::signal_redis("STOP", $main::Port);
my @answers = main::post_all("/r", 'stalled1@example.com', 'stalled2@example.com');
for my $a (@answers) {
    Test::More::is("$a->[0] $a->[1]", "503 redis_timeout", "stalled: 503 redis_timeout");
    Test::More::cmp_ok($a->[2], '<=', 0.8, "stalled: answered after the timeout");
}
sleep 0.15;  # past the link's 100 ms hold-down
my ($accepted) = main::post_all("/accept", 'stalled3@example.com');
Test::More::is("$accepted->[0] $accepted->[1]", "200 redis_timeout",
               "stalled, policy accept: 200, logged as redis_timeout");
t::Resend::signal_redis("CONT", $main::Port);
t::Resend::wait_for('the 3 records', 5, sub { t::Resend::redis({port => $main::Port}, 'XLEN', 'resend_confirmation') >= 3 });
--- request eval
"POST /r\n" . '{"email":"stalled1@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: silenced
--- stream_port eval: $::Port
--- stream eval
[map { [email => $_, ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
        received_at => qr/\A\d{13}\z/] } qw(stalled1@example.com stalled2@example.com stalled3@example.com)]
--- error_log eval
[qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: no reply in time/,
 qr/\[error\] .*resend_confirmation: request perhaps not recorded \(no reply in time\), answered 200/]



=== TEST 2: one deadline: queued behind AUTH on a stalled Redis, no request waits past timeout; none of them is recorded
--- http_config eval: $::HttpConfig
--- config eval
main::endpoint('/p', '127.0.0.1:$TEST_NGINX_PASS_REDIS_PORT password=secret connect_timeout=5s timeout=300ms',
               'resend_confirmation_limit zone=mail silent;')
--- init
t::Resend::start_redis($main::PassPort, '--requirepass', 'secret');
t::Resend::signal_redis("STOP", $main::PassPort);
my @first = main::post_all("/p", map { "wait$_\@example.com" } 1 .. 5);
sleep 0.1;  # the connection attempt goes on (AUTH unanswered)
my @second = main::post_all("/p", map { "later$_\@example.com" } 1 .. 5);
for my $a (@first, @second) {
    Test::More::is("$a->[0] $a->[1]", "503 redis_error", "queued behind AUTH: 503 redis_error");
    Test::More::cmp_ok($a->[2], '<=', 0.6, "queued behind AUTH: answered within timeout + 300 ms")
        or Test::More::diag("took $a->[2] s");
}
t::Resend::signal_redis("CONT", $main::PassPort);
sleep 0.2;
--- request eval
"POST /p\n" . '{"email":"wait1@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- stream_port eval: $::PassPort
--- stream eval
[[email => 'wait1@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
  received_at => qr/\A\d{13}\z/]]
--- no_error_log
no reply in time
[alert]
[crit]



=== TEST 3: clients that leave (FIN with the request) while Redis is stalled: 499 client_closed at once; their records land after
--- http_config eval: $::HttpConfig
--- config eval: $::Waiting
--- init
t::Resend::redis({port => $main::Port}, "FLUSHALL");
t::Resend::signal_redis("STOP", $main::Port);
my @kept;
for my $i (1 .. 50) {
    my $sock = main::connect_nginx();
    syswrite $sock, main::request_text("/r", "gone$i\@example.com");
    if ($i % 2) { shutdown $sock, 1; push @kept, $sock } else { close $sock }
}
my @lines;
for (1 .. 30) {  # at once, but nginx may be scheduled late (Redis stays stalled for 5 s)
    @lines = main::outcome_lines();
    last if @lines >= 50;
    sleep 0.1;
}
Test::More::is(scalar(grep { $_ eq '499 client_closed' } @lines), 50,
               "50 clients gone: 499 client_closed while Redis is still stalled")
    or Test::More::diag(join "\n", @lines);
close $_ for @kept;
t::Resend::signal_redis("CONT", $main::Port);
sleep 0.3;
--- request eval
"POST /r\n" . '{"email":"after@example.com"}'
--- error_code: 200
--- stream_port eval: $::Port
--- stream_len: 51
--- error_log
client prematurely closed connection while its record was sent to redis



=== TEST 4: a keep-alive client that pipelines its next request is not gone: both answered
--- http_config eval: $::HttpConfig
--- config eval: $::Waiting
--- init
t::Resend::start_redis($main::Port);
t::Resend::redis({port => $main::Port}, "FLUSHALL");
t::Resend::signal_redis("STOP", $main::Port);
my $sock = main::connect_nginx();
syswrite $sock, main::request_text("/r", 'first@example.com', 'keep-alive');
sleep 0.1;
syswrite $sock, main::request_text("/r", 'second@example.com');
sleep 0.2;
t::Resend::signal_redis("CONT", $main::Port);
my $text = do { local $/; <$sock> } // '';
my @statuses = $text =~ m{HTTP/1\.1 (\d{3}) }g;  # the first body has no newline
Test::More::is("@statuses", "200 200", "pipelined: both answered 200");
--- request eval
"POST /r\n" . '{"email":"third@example.com"}'
--- error_code: 200
--- stream_port eval: $::Port
--- stream_len: 3
--- no_error_log
client prematurely closed connection
[alert]
[crit]



=== TEST 5: error replies (OOM) flood: logged once, then one summary line a second; every refusal accounted for
--- http_config eval: $::HttpConfig
--- config eval
main::endpoint('/r', '127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT timeout=5s')
--- init
t::Resend::redis({port => $main::Port}, "FLUSHALL");
t::Resend::redis({port => $main::Port}, "SET", "ballast", "x" x (4 << 20));
t::Resend::redis({port => $main::Port}, "CONFIG", "SET", "maxmemory", "2mb");
my $load_started = time;
my ($ok, $sent) = t::Resend::load_posts(10, 20, "/r");
my $load_seconds = time - $load_started;
Test::More::is($ok, 0, "OOM: no request answered 200");
my (@full, @summaries, $more);
for (1 .. 30) {  # the last summary comes within a second of the last refusal
    my @lines = main::error_log_lines();
    @full = grep { /resend_confirmation: redis 127\.0\.0\.1:\d+ refused XADD: OOM / } @lines;
    @summaries = grep { /resend_confirmation: redis 127\.0\.0\.1:\d+ refused \d+ more commands in the last second, the last: OOM / } @lines;
    $more = 0;
    $more += $_ for map { /refused (\d+) more/ } @summaries;
    last if @full + $more >= $sent;
    sleep 0.1;
}
Test::More::is(scalar @full, 1, "OOM: the first error reply logged in full");
# One a second while refusals come (the load's seconds), and the last one.
my $most = int($load_seconds) + 2;
Test::More::ok(@summaries >= 1 && @summaries <= $most, "OOM: 1-$most summary lines, not $sent lines")
    or Test::More::diag(scalar(@summaries) . " summary lines");
Test::More::is(@full + $more, $sent, "OOM: every refusal logged or counted");
t::Resend::redis({port => $main::Port}, "CONFIG", "SET", "maxmemory", "0");
t::Resend::redis({port => $main::Port}, "DEL", "ballast");
--- request eval
"POST /r\n" . '{"email":"after-oom@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- stream_port eval: $::Port
--- stream_len: 1



=== TEST 6: Redis back after a long outage: the link reconnects within ~100 ms of it, not after a 2 s backoff
--- init
t::Resend::signal_redis("KILL", $main::Port);
my $until = time + 2.5;  # long enough for the old backoff to reach its ceiling
main::post_all("/r", 'down@example.com'), sleep 0.02 while time < $until;
t::Resend::start_redis($main::Port);
my $back = time;
my $first;
for (1 .. 200) {
    my ($a) = main::post_all("/r", 'back@example.com');
    if ($a->[0] == 200) { $first = time - $back; last }
    sleep 0.02;
}
Test::More::ok(defined $first && $first <= 1, "first 200 within 1 s of Redis being back (~100 ms; not the 2 s backoff)")
    or Test::More::diag("first 200 after " . ($first // 'never'));
Test::More::note(sprintf "first 200 %.3f s after Redis was back", $first // -1);
print STDERR sprintf("# reconnect: first 200 %.3f s after Redis was back\n", $first // -1);
--- request eval
"POST /r\n" . '{"email":"steady@example.com"}'
--- error_code: 200
