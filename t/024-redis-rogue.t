# A rogue (or broken) Redis cannot make a worker buffer its reply (issue 21):
# a reply header over the module's limits fails the connection at once,
# through the failure policy (503), with one [error] line saying why, and
# the worker's memory stays where it was.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use IO::Socket::INET;
use POSIX ();

# The rogue server: answers each command by the stream it names (XADD's
# first argument):
#   bulk    "$2000000000" and then bytes, as many as nginx takes;
#   array   "*2000000000" and then ":1" elements, as many as nginx takes;
#   within  a bulk string as long as the limit (65536 bytes), then the next command.
# On a port the system picks, one process per connection.
sub rogue_server {
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 16,
                                       ReuseAddr => 1)
        or die "cannot listen: $!\n";
    my $port = $listen->sockport;
    my $pid = fork // die "fork: $!";
    if ($pid) { close $listen; return ($pid, $port) }
    $SIG{PIPE} = 'IGNORE';
    while (my $client = $listen->accept) {
        next if fork // POSIX::_exit(1);
        close $listen;
        binmode $client;
        $client->autoflush(1);
        while (my @args = t::Resend::read_command($client)) {
            my $mode = $args[1] // '';
            if ($mode eq 'within') {
                print $client '$65536' . "\r\n" . ('x' x 65536) . "\r\n";
                next;
            }
            my ($header, $chunk) = $mode eq 'array' ? ('*2000000000', ":1\r\n" x 16384)
                                                    : ('$2000000000', 'x' x 65536);
            # Until nginx closes the connection (at most 2 GB).
            syswrite($client, "$header\r\n") or last;
            for (1 .. 32768) { defined syswrite($client, $chunk) or last }
            last;
        }
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}

our ($RoguePid, $RoguePort) = rogue_server();
$ENV{TEST_NGINX_ROGUE_PORT} = $RoguePort;
END { kill 'KILL', $RoguePid if $RoguePid }

# A location per stream (so per behaviour of the rogue server), each
# twice: /MODE for the block's request, /MODE-measured for the one measured
# in the block's init (a link of its own, so the block's request does not
# come in the 100 ms hold-down after it); and one that names the worker.
our $Config = join '', map { my ($uri, $stream) = @$_; <<"_EOC_" }
    location = $uri {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:\$TEST_NGINX_ROGUE_PORT timeout=5s;
        resend_confirmation_stream $stream;
        add_header X-Outcome \$resend_confirmation_outcome always;
        $t::Resend::RequestTime
    }
_EOC_
    map { (["/$_", $_], ["/$_-measured", $_]) } qw(bulk array within);
$Config .= <<'_EOC_';
    location = /pid {
        add_header X-Pid $pid always;
        return 204;
    }
_EOC_

sub get {
    my ($request) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984)
        or die "cannot connect to nginx: $!\n";
    print $sock $request;
    return do { local $/; <$sock> } // '';
}

# The worker's memory in kB (VmRSS, VmHWM: its peak since clear_peak).
sub worker_memory {
    my ($pid, $field) = @_;
    open my $in, '<', "/proc/$pid/status" or die "no /proc/$pid/status: $!\n";
    my ($kb) = do { local $/; <$in> } =~ /^$field:\s+(\d+) kB/m;
    return $kb // die "no $field in /proc/$pid/status\n";
}

# Resets the worker's peak RSS to its RSS now (clear_refs "5", Linux 4.0):
# false where that is not allowed, and then the peak since start is read.
sub clear_peak {
    my ($pid) = @_;
    open my $out, '>', "/proc/$pid/clear_refs" or return 0;
    return syswrite($out, "5");
}

sub post {
    my ($uri, $email) = @_;
    my $body = qq({"email":"$email"});
    return get("POST $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
               . "Content-Type: application/json\r\nContent-Length: " . length($body)
               . "\r\n\r\n$body");
}

# measured_post($uri): one request to a rogue location, answered 503 at
# once (not at the 5 s timeout), and the worker's peak RSS meanwhile within
# 4 MB of its RSS before (a reply buffered whole would take a GB).
sub measured_post {
    my ($uri) = @_;
    # One request first through the module's whole path, so that its first
    # use (pages of code, pools) is not counted.
    post('/within-measured', 'warm@example.com') =~ m{\AHTTP/1\.1 200 } or die "warm-up not 200\n";
    my ($pid) = get("GET /pid HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        =~ /^X-Pid: (\d+)/mi or die "no worker pid\n";
    my $cleared = clear_peak($pid);
    my $before = worker_memory($pid, $cleared ? 'VmRSS' : 'VmHWM');
    my $response = post($uri, 'rogue@example.com');
    my $peak = worker_memory($pid, 'VmHWM');
    my ($status) = $response =~ m{\AHTTP/1\.1 (\d+)};
    my ($took) = $response =~ m{^X-Request-Time: ([\d.]+)}mi;
    Test::More::is($status, 503, "$uri: 503");
    Test::More::cmp_ok($took // 99, '<', 2, "$uri: answered at once, not at the 5 s timeout");
    Test::More::cmp_ok($peak - $before, '<', 4096, "$uri: the worker's peak RSS within 4 MB of before")
        or Test::More::diag("RSS $before kB before, peak $peak kB");
    Test::More::note("$uri: RSS $before kB before, peak $peak kB"
                     . ($cleared ? '' : ' (the peak since start)'));
}

resend_defaults(more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a bulk string header of 2,000,000,000 bytes, then a stream of bytes: 503 at once, the reason logged, the worker's memory as it was
--- config eval: $::Config
--- init
main::measured_post('/bulk-measured');
--- request eval
"POST /bulk\n" . '{"email":"rogue@example.com"}'
--- error_code: 503
--- response_headers_like
X-Outcome: redis_timeout
X-Request-Time: [01]\.\d+
--- response_body eval
$::Unavailable
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: a reply over the module's limits: a bulk string longer than 65536/



=== TEST 2: an array header of 2,000,000,000 elements, then elements: 503 at once, the reason logged
--- config eval: $::Config
--- init
main::measured_post('/array-measured');
--- request eval
"POST /array\n" . '{"email":"rogue@example.com"}'
--- error_code: 503
--- response_headers_like
X-Outcome: redis_timeout
X-Request-Time: [01]\.\d+
--- response_body eval
$::Unavailable
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: a reply over the module's limits: an aggregate with more elements than 65536/



=== TEST 3: a reply as long as the limit is read whole (here taken as XADD's id: 200)
--- config eval: $::Config
--- request eval
"POST /within\n" . '{"email":"rogue@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- response_body eval
$::Accepted
--- no_error_log
[error]
[alert]
[crit]
