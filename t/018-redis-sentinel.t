# Redis Sentinel: a master, two replicas and three Sentinels started here
# (two: the master a failover promotes has a replica at once, the other
# one, so that records, which need one (replicas=1), are taken again soon).
# The link asks the Sentinels for the master (in turn: a dead one is
# skipped), checks ROLE on it, and after SENTINEL FAILOVER under load finds
# the new master by itself: every 200 has its entry on the new master, no
# answer but 200 and 503, and the 503s last no longer than the failover
# (SENTINEL FAILOVER until the Sentinels name the new master) plus the
# link's 100 ms hold-down.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use File::Temp ();
use IO::Socket::INET;
use POSIX ();
use Time::HiRes ();

our $Master = $ENV{TEST_NGINX_REDIS_PORT} + 50;
our $Replica = $ENV{TEST_NGINX_REDIS_PORT} + 51;
our $Replica2 = $ENV{TEST_NGINX_REDIS_PORT} + 58;
our @Nodes = ($Master, $Replica, $Replica2);
our @Sentinels = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 52 .. 54;
our $Dead = $ENV{TEST_NGINX_REDIS_PORT} + 55;  # nothing listens there
$ENV{TEST_NGINX_SENTINELS} = join ' ', map { "127.0.0.1:$_" } @Sentinels;
$ENV{TEST_NGINX_FIRST_SENTINEL} = $Sentinels[0];
$ENV{TEST_NGINX_DEAD_PORT} = $Dead;
our $Dir = File::Temp::tempdir(CLEANUP => 1);
our %Pids;
$ENV{TEST_NGINX_SPOOL} = "$Dir/spool";  # TEST 8
mkdir "$Dir/spool";

sub at { t::Resend::redis({port => shift}, @_) }

sub spawn {
    my ($name, @command) = @_;
    $Pids{$name} = t::Resend::spawn(@command);
}

sub wait_for { t::Resend::wait_for(@_) }

sub start_all {
    for my $port (@Nodes) {
        spawn($port, 'redis-server', '--port', $port, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
              '--logfile', '/dev/null', '--dir', $Dir, '--dbfilename', "dump-$port.rdb",
              '--repl-diskless-sync-delay', '0',
              $port != $Master ? ('--replicaof', '127.0.0.1', $Master) : ());
    }
    for my $port ($Replica, $Replica2) {
        wait_for("the replica $port", 10, sub { at($port, 'INFO', 'replication') =~ /master_link_status:up/ });
    }
    for my $port (@Sentinels) {
        open my $out, '>', "$Dir/sentinel-$port.conf" or die;
        print $out "port $port\nbind 127.0.0.1\ndir $Dir\nlogfile \"\"\n",
                   "sentinel monitor mymaster 127.0.0.1 $Master 2\n",
                   "sentinel down-after-milliseconds mymaster 1000\n",
                   "sentinel failover-timeout mymaster 10000\n",
                   "sentinel parallel-syncs mymaster 1\n";
        close $out;
        spawn("s$port", 'sh', '-c', "exec redis-sentinel $Dir/sentinel-$port.conf >/dev/null 2>&1");
    }
    # Each Sentinel knows the replicas and the two others (hello messages
    # every 2 s): only then can SENTINEL FAILOVER pick a replica.
    for my $port (@Sentinels) {
        wait_for("Sentinel $port", 20, sub {
            @{ at($port, 'SENTINEL', 'replicas', 'mymaster') } == 2
                && @{ at($port, 'SENTINEL', 'sentinels', 'mymaster') } == 2
        });
    }
}

END { kill 'KILL', $_ for values %Pids }

start_all();

sub master_port { at($Sentinels[0], 'SENTINEL', 'get-master-addr-by-name', 'mymaster')->[1] }

# $clients processes post distinct emails for $seconds; meanwhile, after
# $after seconds, SENTINEL FAILOVER. Returns the answers ([email, status,
# sent, answered] each), when the failover was asked for and when the
# Sentinels first named the new master.
sub failover_under_load {
    my ($clients, $seconds, $after) = @_;
    my $start = Time::HiRes::time();
    my @pids;
    for my $client (1 .. $clients) {
        my $pid = fork // die "fork: $!";
        if ($pid) { push @pids, $pid; next }
        open my $out, '>', "$Dir/load-$client" or POSIX::_exit(1);
        my $n = 0;
        while (Time::HiRes::time() < $start + $seconds) {
            my $email = "f$client." . ++$n . '@example.com';
            my $body = qq({"email":"$email"});
            my $sent = Time::HiRes::time();
            my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                             PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984) or next;
            print $sock "POST /r HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                      . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
            my $response = do { local $/; <$sock> } // '';
            my ($status) = $response =~ m{\AHTTP/1\.1 (\d+)};
            printf $out "%s %s %.4f %.4f\n", $email, $status // 'none', $sent, Time::HiRes::time();
        }
        close $out;
        POSIX::_exit(0);
    }
    my $old = master_port();
    Time::HiRes::sleep($after);
    my $asked = Time::HiRes::time();
    my $reply = at($Sentinels[0], 'SENTINEL', 'FAILOVER', 'mymaster');
    die "SENTINEL FAILOVER: $reply\n" unless $reply eq 'OK';
    wait_for('the new master', 20, sub { master_port() != $old });
    my $switched = Time::HiRes::time();
    waitpid $_, 0 for @pids;
    my @answers;
    for my $client (1 .. $clients) {
        open my $in, '<', "$Dir/load-$client" or next;
        push @answers, map { [split ' '] } <$in>;
    }
    return (\@answers, $asked, $switched);
}

# failover_under_load(8, 6, 1.5) from the master the Sentinels name now,
# which must change; returns its results, the new master and the answers
# counted by status.
sub failover_checked {
    my $old = master_port();
    my ($answers, $asked, $switched) = failover_under_load(8, 6, 1.5);
    my $new = master_port();
    Test::More::isnt($new, $old, "the Sentinels name a new master");
    my %status;
    $status{$_->[1]}++ for @$answers;
    Test::More::diag("answers: " . join(', ', map { "$_: $status{$_}" } sort keys %status));
    return ($answers, $asked, $switched, $new, \%status);
}

# Every answer 200 of `answers` has its entry on the master at `port`.
sub check_every_200_on {
    my ($port, $answers) = @_;
    my %stored = map { my %f = @{ $_->[1] }; ($f{email} => 1) } @{ at($port, 'XRANGE', 'resend_confirmation', '-', '+') };
    my @lost = grep { $_->[1] eq '200' && !$stored{$_->[0]} } @$answers;
    Test::More::is(scalar @lost, 0, "every 200 has its entry on the new master")
        or Test::More::diag("not there: " . join(' ', map { $_->[0] } @lost[0 .. ($#lost < 9 ? $#lost : 9)]));
}

# After a failover: the master the Sentinels name, and its replicas once
# they have caught up and every Sentinel knows them as such.
sub settled {
    my $master = master_port();
    my @replicas = grep { $_ != $master } @Nodes;
    for my $replica (@replicas) {
        wait_for("the replica $replica", 20, sub {
            my $info = at($replica, 'INFO', 'replication');
            $info =~ /master_link_status:up/ && $info =~ /master_port:$master\b/
        });
    }
    for my $port (@Sentinels) {
        wait_for("Sentinel $port", 20, sub {
            my @known = grep { { @$_ }->{flags} eq 'slave' } @{ at($port, 'SENTINEL', 'replicas', 'mymaster') };
            join(' ', sort map { { @$_ }->{port} } @known) eq join(' ', sort @replicas)
        });
    }
    return ($master, @replicas);
}

# TEST 9: the master stalls while the link's handshake is in flight (the
# request waits unwritten), and its replicas stall (WAIT takes its whole
# 500 ms). Returns the request's (elapsed, status).
sub slow_handshake_and_wait {
    my ($master, @replicas) = settled();
    kill 'STOP', $Pids{$_} for @replicas;
    kill 'STOP', $Pids{$master};
    my $post = t::Resend::timed_post('/r', '{"email":"late-wait@example.com"}');
    Time::HiRes::sleep(0.7);  # under down-after-milliseconds: no failover
    kill 'CONT', $Pids{$master};
    my ($elapsed, $status) = t::Resend::timed_result($post);
    kill 'CONT', $Pids{$_} for @replicas;
    Time::HiRes::sleep(0.2);  # the replicas answer again
    return ($elapsed, $status);
}

# TEST 10: a Sentinel and a master of this file's own, in Perl: the
# Sentinel always names that master; the master says it is one (ROLE, with
# a replica), refuses XADD with READONLY on its first connection (as an old
# master just demoted would) and takes it on the next, answering WAIT 1.
# (A real Redis closes its clients when it is demoted: the READONLY of a
# command that crossed the demotion cannot be had from it on demand.)
our ($FakeSentinel, $FakeMaster) = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 56, 57;
$ENV{TEST_NGINX_FAKE_SENTINEL} = $FakeSentinel;

sub fake_master_change {
    return if $Pids{fake_master};
    my $bulk = \&t::Resend::bulk;
    $Pids{fake_sentinel} = t::Resend::fake_redis($FakeSentinel,
                                                 sub { "*2\r\n" . $bulk->('127.0.0.1') . $bulk->($FakeMaster) });
    $Pids{fake_master} = t::Resend::fake_redis($FakeMaster, sub {
        my ($connection, $command) = @_;
        $command = uc $command;
        return "*3\r\n" . $bulk->('master') . ":100\r\n*1\r\n*3\r\n" . join '', map { $bulk->($_) } '127.0.0.1', 9, 100
            if $command eq 'ROLE';
        return $connection == 1 ? "-READONLY You can't write against a read only replica.\r\n" : $bulk->("1-$connection")
            if $command eq 'XADD';
        return ":1\r\n" if $command eq 'WAIT';
        return "+OK\r\n";
    });
}

resend_defaults(more_headers => "Content-Type: application/json",
                init => 'main::at(main::master_port(), "DEL", "resend_confirmation")');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the record goes to the master the Sentinels name
--- http_config
    resend_confirmation_redis sentinel=mymaster $TEST_NGINX_SENTINELS;
--- config eval: $::Endpoint
--- request eval
"POST /r\n" . '{"email":"s1@example.com"}'
--- error_code: 200
--- stream_port eval: $main::Master
--- stream_len: 1
--- error_log eval
qr/\[notice\] .*resend_confirmation: redis sentinel=mymaster: Sentinel 127\.0\.0\.1:$main::Sentinels[0] names the master 127\.0\.0\.1:$main::Master/



=== TEST 2: a Sentinel that is down is skipped
--- http_config
    resend_confirmation_redis sentinel=mymaster 127.0.0.1:$TEST_NGINX_DEAD_PORT 127.0.0.1:$TEST_NGINX_FIRST_SENTINEL connect_timeout=300ms;
--- config eval: $::Endpoint
--- request eval
"POST /r\n" . '{"email":"s2@example.com"}'
--- error_code: 200
--- stream_port eval: $main::Master
--- stream_len: 1



=== TEST 3: a master no Sentinel knows: 503, and the log says so
--- http_config
    resend_confirmation_redis sentinel=nosuchmaster $TEST_NGINX_SENTINELS timeout=500ms;
--- config eval: $::Endpoint
--- request eval
"POST /r\n" . '{"email":"s3@example.com"}'
--- error_code: 503
--- error_log eval
[qr/Sentinel 127\.0\.0\.1:\d+ does not know master "nosuchmaster"/,
 qr/\[error\] .*resend_confirmation: redis sentinel=nosuchmaster: no Sentinel named the master/]



=== TEST 4: SENTINEL FAILOVER under load: every 200 is on the new master, only 503s besides, and not for long
--- http_config
    resend_confirmation_redis sentinel=mymaster $TEST_NGINX_SENTINELS connect_timeout=300ms timeout=1s;
--- config eval: $::Endpoint
--- init
my ($answers, $asked, $switched, $new, $status) = main::failover_checked();
my %status = %$status;
Test::More::ok(!grep({ $_ ne '200' && $_ ne '503' } keys %status), "only 200 and 503");
Test::More::cmp_ok($status{200} // 0, '>', 100, "many 200s");
main::check_every_200_on($new, $answers);
my @failed = grep { $_->[1] eq '503' } @$answers;
my $failover = $switched - $asked;
my $window = @failed ? (sort { $a <=> $b } map { $_->[3] } @failed)[-1] - (sort { $a <=> $b } map { $_->[2] } @failed)[0] : 0;
Test::More::diag(sprintf "failover (SENTINEL FAILOVER until the Sentinels name the new master): %.3f s; "
                 . "503s: %d, from the first sent to the last answered: %.3f s", $failover, scalar @failed, $window);
# Slack for the clients' own clocks: they stamp sent and answered as a loaded
# machine schedules them.
Test::More::cmp_ok($window, '<=', $failover + 0.1 + 0.5, "503s last no longer than the failover plus one hold-down (and 500 ms of slack)");
my @after = grep { $_->[2] > $switched + 1 } @$answers;
Test::More::ok(@after && !grep({ $_->[1] ne '200' } @after), "all 200 once the new master is named")
    or Test::More::diag(scalar(@after) . " answers after the switch");
$main::NewMaster = $new;
--- request eval
"POST /r\n" . '{"email":"after@example.com"}'
--- error_code: 200



=== TEST 5: nginx -t errors name the problem and file:line: sentinel= without a Sentinel
--- http_config
    resend_confirmation_redis sentinel=mymaster password=x;
--- config eval: $::Endpoint
--- init
--- must_die
--- error_log eval
qr/\[emerg\] .*"sentinel=mymaster" needs at least one Sentinel address \(HOST:PORT\) in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 6: sentinel= without a name
--- http_config
    resend_confirmation_redis sentinel= 127.0.0.1:26379;
--- config eval: $::Endpoint
--- init
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "sentinel=" in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 7: sentinel_password= belongs to sentinel=
--- http_config
    resend_confirmation_redis 127.0.0.1:6379 sentinel_password=x;
--- config eval: $::Endpoint
--- init
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "sentinel_password=x" in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 8: SENTINEL FAILOVER under load with resend_confirmation_redis_failure spool: every answer 200; once the spool is replayed, every 200 is on the new master
--- http_config
    resend_confirmation_redis sentinel=mymaster $TEST_NGINX_SENTINELS connect_timeout=300ms timeout=1s;
    resend_confirmation_spool $TEST_NGINX_SPOOL;
--- config eval: $::Endpoint =~ s/resend_confirmation;/resend_confirmation;\n        resend_confirmation_redis_failure spool;/r
--- init
# TEST 4's failover made the first master a replica: it must have caught up,
# and every Sentinel know it, before the next failover can pick it.
my ($old) = main::settled();
main::at($old, 'DEL', 'resend_confirmation');
my ($answers, $asked, $switched, $new, $status) = main::failover_checked();
Test::More::is(join(' ', sort keys %$status), '200', "every answer 200");
# (glob in list context: in scalar context it iterates, and is false every
# second call whatever is there)
main::wait_for('the spool to be replayed', 20, sub { !(() = glob("$main::Dir/spool/*.seg")) });
main::check_every_200_on($new, $answers);
open my $log, '<', main::server_root() . '/logs/error.log' or die;
my $spooled = grep { /resend_confirmation: record spooled|answer 200 spooled/ } <$log>;
Test::More::diag("spooled during the failover (debug lines): $spooled") if $t::Resend::NginxDebug;
--- request eval
"POST /r\n" . '{"email":"after-spool@example.com"}'
--- error_code: 200
--- no_error_log
[alert]
[crit]



=== TEST 9: a request stored on the master is answered at its deadline while its WAIT is still out (the connection came up late: WAIT's own deadline is later)
--- http_config
    resend_confirmation_redis sentinel=mymaster $TEST_NGINX_SENTINELS timeout=1s;
--- config eval: $t::Resend::TimedEndpoint
--- init
my ($elapsed, $status) = main::slow_handshake_and_wait();
Test::More::is($status, 503, 'stored, no replica confirmed it in time: 503');
Test::More::cmp_ok($elapsed, '>=', 0.95, 'it had its whole second');
Test::More::cmp_ok($elapsed, '<=', 1.15, 'answered at its deadline (1 s), not when WAIT gave up (1.2 s)');
--- request eval
"POST /r\n" . '{"email":"after-wait@example.com"}'
--- error_code: 200
--- no_error_log
[alert]
[crit]



=== TEST 10: a request sent again after a master change (READONLY: the old master was demoted) is confirmed by WAIT on the new one as any other: answered within its timeout, not left waiting
--- http_config
    resend_confirmation_redis sentinel=mymaster 127.0.0.1:$TEST_NGINX_FAKE_SENTINEL timeout=1s;
--- config eval: $::Endpoint
--- init
main::fake_master_change();
--- request eval
"POST /r\n" . '{"email":"kept@example.com"}'
--- timeout: 4
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- error_log eval
qr/\[warn\] .*resend_confirmation: redis \S+ is no longer the master: READONLY/
--- no_error_log
[alert]
[crit]
