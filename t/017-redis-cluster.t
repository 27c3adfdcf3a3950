# Redis Cluster: three masters started here (redis-cli --cluster create).
# Each record goes to the master that serves its stream's slot, whichever
# node the directive names; while the slot migrates, ASK is followed
# (ASKING, the command to the importing node, the map kept) and once it
# has moved, MOVED (the command to the new owner, the map asked again),
# with no request failing.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use t::Cluster ();
use File::Temp ();
use POSIX ();
use Time::HiRes ();

our @Ports = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 40 .. 42;
our $Dir = File::Temp::tempdir(CLEANUP => 1);
our $Key = 'resend_confirmation';
our $Sent;  # TEST 10: how many records the load sent

sub node { t::Cluster::node(@_) }

t::Cluster::start(\@Ports, $Dir);

# The stream's slot, the node that serves it, and another.
our $Slot = node($Ports[0], 'CLUSTER', 'KEYSLOT', $Key);
sub owner { t::Cluster::owner($Ports[0], $Slot) }
our $Owner = owner();
our ($Other) = grep { $_ != $Owner } @Ports;
our ($Third) = grep { $_ != $Owner && $_ != $Other } @Ports;
$ENV{TEST_NGINX_OWNER} = $Owner;
$ENV{TEST_NGINX_OTHER} = $Other;
$ENV{TEST_NGINX_THIRD} = $Third;

# The spool's directory (TEST 12).
$ENV{TEST_NGINX_SPOOL} = "$Dir/spool";
mkdir "$Dir/spool";

# The shared limits' secret (TEST 11).
$ENV{TEST_NGINX_SECRET} = "$Dir/secret";
open my $secret, '>', "$Dir/secret" or die;
print $secret "0123456789abcdef0123456789abcdef\n";
close $secret;

sub id_of { node(shift, 'CLUSTER', 'MYID') }

# The slot moves from the owner to $Other: first both sides marked, the key
# migrated (so that the owner answers ASK), then the slot given (MOVED).
sub start_migration {
    node($Other, 'CLUSTER', 'SETSLOT', $Slot, 'IMPORTING', id_of($Owner));
    node($Owner, 'CLUSTER', 'SETSLOT', $Slot, 'MIGRATING', id_of($Other));
    my $r = node($Owner, 'MIGRATE', '127.0.0.1', $Other, '', 0, 5000, 'KEYS', $Key);
    die "MIGRATE: $r\n" unless $r eq 'OK';
}
sub end_migration {
    node($_, 'CLUSTER', 'SETSLOT', $Slot, 'NODE', id_of($Other)) for $Other, $Owner, $Third;
}

# How many ASK and MOVED replies for the stream's slot nginx has followed
# (its [info] lines) in this block's error log.
sub redirects_seen {
    open my $log, '<', main::server_root() . '/logs/error.log' or die "no error log\n";
    my %seen = (ASK => 0, MOVED => 0);
    /: (ASK|MOVED) $Slot / and $seen{$1}++ while <$log>;
    return \%seen;
}

# The slot moves from $from to $to (both sides marked, the key migrated,
# the slot given) while 4 clients post records. Each step waits for what
# it must cause, not for a fixed time: the load is under way before the
# slot is marked, the slot is given once nginx has followed an ASK, and
# the load stops once it has followed a MOVED (or after 60 s in all, and
# then the block's check of both fails). Returns how many were answered
# 200 and how many were sent.
sub migrate_under_load {
    my ($from, $to) = @_;
    my $result = "$Dir/load-result";
    my $stop = "$Dir/load-stop";
    unlink $result, $stop;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my ($ok, $sent) = t::Resend::load_posts(4, sub { !-e $stop }, '/r');
        open my $out, '>', $result;
        print $out "$ok $sent";
        close $out;
        POSIX::_exit(0);
    }
    my $until = Time::HiRes::time() + 60;
    my $until_seen = sub {
        my ($what, $check) = @_;
        eval { t::Resend::wait_for($what, $until - Time::HiRes::time(), $check) };
    };
    $until_seen->('the load', sub { node($from, 'XLEN', $Key) > 1 });
    node($to, 'CLUSTER', 'SETSLOT', $Slot, 'IMPORTING', id_of($from));
    node($from, 'CLUSTER', 'SETSLOT', $Slot, 'MIGRATING', id_of($to));
    my $r = node($from, 'MIGRATE', '127.0.0.1', $to, '', 0, 5000, 'KEYS', $Key);
    die "MIGRATE: $r\n" unless $r eq 'OK' || $r eq 'NOKEY';
    $until_seen->('an ASK followed', sub { redirects_seen()->{ASK} });
    node($_, 'CLUSTER', 'SETSLOT', $Slot, 'NODE', id_of($to)) for $to, $from, grep { $_ != $to && $_ != $from } @Ports;
    $until_seen->('a MOVED followed', sub { redirects_seen()->{MOVED} });
    open my $flag, '>', $stop or die "$stop: $!\n";
    close $flag;
    waitpid $pid, 0;
    open my $in, '<', $result or die "no load result\n";
    return split ' ', <$in>;
}

# TEST 13: two streams, on two different masters ($Ports[0] and $Ports[1]).
sub stream_on {
    my ($port, $prefix) = @_;
    for my $n (1 .. 1000) {
        my $slot = node($port, 'CLUSTER', 'KEYSLOT', "$prefix$n");
        return ("$prefix$n", $slot) if t::Cluster::owner($port, $slot) == $port;
    }
    die "no key of $prefix on $port\n";
}
our ($StreamX, $SlotX) = stream_on($Ports[0], 'late-x-');
our ($StreamY) = stream_on($Ports[1], 'late-y-');
our ($StreamZ) = stream_on($Ports[2], 'late-z-');  # TEST 14
$ENV{TEST_NGINX_NODE_Z} = $Ports[2];
$ENV{TEST_NGINX_NODE_X} = $Ports[0];

# X's slot moves from node A to node B behind nginx's back; A stalls, so
# that X reaches B by MOVED with 0.8 s of its 4 s left, behind Y, written
# to B (stalled too) 1.6 s later than X started (seconds as nginx counts
# them). Returns the (elapsed, status) of X and of Y.
sub late_redirect {
    my ($a, $b) = @Ports[0, 1];
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    for my $uri ('/x', '/y') {  # the links up, the map known
        t::Resend::post_once($port, $uri, '{"email":"warm@example.com"}') or die "warm-up of $uri failed\n";
    }
    node($a, 'DEL', $StreamX);
    node($_, 'CLUSTER', 'SETSLOT', $SlotX, 'NODE', id_of($b)) for $b, $a, $Ports[2];
    kill 'STOP', $t::Cluster::Pids{$a};
    my $x = t::Resend::timed_post('/x', '{"email":"x@example.com"}');
    select undef, undef, undef, 1.6;
    kill 'STOP', $t::Cluster::Pids{$b};
    my $y = t::Resend::timed_post('/y', '{"email":"y@example.com"}');
    select undef, undef, undef, 1.6;
    kill 'CONT', $t::Cluster::Pids{$a};
    my @x = t::Resend::timed_result($x);
    my @y = t::Resend::timed_result($y);
    kill 'CONT', $t::Cluster::Pids{$b};
    select undef, undef, undef, 0.3;  # B's link past its hold-down
    return (@x[0, 1], @y[0, 1]);
}

# TEST 15, 16 come after TEST 13 moved X's slot behind nginx's back: the
# warm-up waits until every node names the same owner (gossip may still be
# settling the move), else its request is sent round between them.
sub warm_up_x {
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    t::Resend::wait_for("the nodes to agree on slot $SlotX", 10, sub {
        my %owners = map { (t::Cluster::owner($_, $SlotX) => 1) } @Ports;
        keys %owners == 1;
    });
    t::Resend::post_once($port, '/x', '{"email":"warm@example.com"}') or die "warm-up of /x failed\n";
}

# TEST 15: X's slot moves from node A to node B behind nginx's back and B
# stalls: X's command, redirected by A's MOVED, waits on B while its
# client leaves (FIN); then B wakes and runs it.
sub leave_during_redirect {
    my ($a, $b) = @Ports[0, 1];
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    warm_up_x();
    node($_, 'DEL', $StreamX) for $a, $b;
    node($_, 'CLUSTER', 'SETSLOT', $SlotX, 'NODE', id_of($b)) for $b, $a, $Ports[2];
    kill 'STOP', $t::Cluster::Pids{$b};
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or die "connect: $!\n";
    my $body = '{"email":"left@example.com"}';
    print $sock "POST /x HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
              . "Content-Length: " . length($body) . "\r\n\r\n$body";
    my $log = main::server_root() . '/logs/error.log';
    t::Resend::wait_for('MOVED from A', 2, sub {  # then sent again to B: waits there
        open my $in, '<', $log or return 0;
        return grep { /: MOVED $SlotX / } <$in>;
    });
    close $sock;
    my $closed = 'resend_confirmation_requests_total{location="/x",outcome="client_closed"}';
    my $outcome;
    for (1 .. 20) {
        $outcome = t::Resend::metrics()->{$closed};
        last if $outcome;
        select undef, undef, undef, 0.1;
    }
    kill 'CONT', $t::Cluster::Pids{$b};
    my $deadline = Time::HiRes::time() + 3;
    select undef, undef, undef, 0.05 while Time::HiRes::time() < $deadline && node($b, 'EXISTS', $StreamX) == 0;
    return ($outcome // 0, node($b, 'XLEN', $StreamX));
}

# TEST 16: X's slot moves to node C behind nginx's back (which still
# sends X to the owner the warm-up's map names), and C announces an address
# that cannot be reached (t/run's network namespace has no route to
# 192.0.2.1: connecting fails at once): the owner's MOVED names it.
sub unreachable_owner {
    my $c = $Ports[2];
    warm_up_x();
    node($_, 'DEL', $StreamX) for @Ports;
    # C's new address first: whenever nginx learns that C owns X's slot (a
    # MOVED, or the slot map it asks for every second), it learns that address.
    node($c, 'CONFIG', 'SET', 'cluster-announce-ip', '192.0.2.1');
    my $id = id_of($c);
    for my $other (grep { $_ != $c } @Ports) {
        t::Resend::wait_for("$other to learn C's address", 10,
                            sub { node($other, 'CLUSTER', 'NODES') =~ /^$id 192\.0\.2\.1:/m });
    }
    node($_, 'CLUSTER', 'SETSLOT', $SlotX, 'NODE', $id) for @Ports;
}

sub scrape { t::Resend::metrics() }

# TEST 14: a gauge of the cluster, named after its first node, in a scrape.
sub gauge {
    my ($samples, $name) = @_;
    return $samples->{qq($name\{redis="127.0.0.1:$Ports[2]"\})} // 'missing';
}

# TEST 13, 14: a location per (uri, stream).
sub stream_locations {
    my %streams = @_;
    return join '', map { <<"_EOC_" } sort keys %streams;
    location = /$_ {
        resend_confirmation;
        resend_confirmation_stream $streams{$_};
        $t::Resend::RequestTime
    }
_EOC_
}

sub posts { [map { "POST /r\n" . qq({"email":"c$_\@example.com"}) } 1 .. shift] }

resend_defaults(more_headers => "Content-Type: application/json",
                init => 'main::node($_, "FLUSHALL") for @main::Ports');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a record lands on the slot's owner when the directive names another node (MOVED followed)
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_OTHER;
--- config eval: $::Endpoint
--- request eval: main::posts(1)->[0]
--- error_code: 200
--- stream_port eval: $main::Owner
--- stream_len: 1
--- error_log eval
qr/\[info\] .*resend_confirmation: redis 127\.0\.0\.1:$main::Other: MOVED $main::Slot 127\.0\.0\.1:$main::Owner/



=== TEST 2: many records, several seeds, the owner among them: 200s, on the owner
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_THIRD 127.0.0.1:$TEST_NGINX_OTHER 127.0.0.1:$TEST_NGINX_OWNER timeout=500ms;
--- config eval: $::Endpoint
--- pipelined_requests eval: main::posts(5)
--- error_code eval: [(200) x 5]
--- stream_port eval: $main::Owner
--- stream_len: 5



=== TEST 3: the slot is migrating and its key has moved: ASK is followed to the importing node
--- init
main::node($_, "FLUSHALL") for @main::Ports;
t::Resend::redis({port => $main::Owner}, 'XADD', $main::Key, '*', 'seed', '1');
main::start_migration();
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_OWNER;
--- config eval: $::Endpoint
--- request eval: main::posts(1)->[0]
--- error_code: 200
--- error_log eval
qr/\[info\] .*resend_confirmation: redis 127\.0\.0\.1:$main::Owner: ASK $main::Slot 127\.0\.0\.1:$main::Other/



=== TEST 4: still migrating: more records, all 200 (the stream is read once the slot has moved)
--- init
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_OWNER 127.0.0.1:$TEST_NGINX_THIRD;
--- config eval: $::Endpoint
--- pipelined_requests eval: main::posts(5)
--- error_code eval: [(200) x 5]



=== TEST 5: the slot has moved: MOVED is followed to the new owner; every record is there
--- init
main::end_migration();
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_OWNER;
--- config eval: $::Endpoint
--- request eval: main::posts(1)->[0]
--- error_code: 200
--- stream_port eval: $main::Other
--- stream_len: 8
--- error_log eval
qr/\[info\] .*resend_confirmation: redis 127\.0\.0\.1:$main::Owner: MOVED $main::Slot 127\.0\.0\.1:$main::Other/



=== TEST 6: a stream named with a hash tag goes to the tag's slot (its owner now: the node the slot moved to)
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_THIRD;
--- config
    resend_confirmation_stream "{resend_confirmation}:records";
    location = /r {
        resend_confirmation;
    }
--- request eval: main::posts(1)->[0]
--- error_code: 200
--- stream_key: {resend_confirmation}:records
--- stream_port eval: $main::Other
--- stream_len: 1



=== TEST 7: nginx -t errors name the problem and file:line: cluster without a node
--- http_config
    resend_confirmation_redis cluster timeout=1s;
--- config eval: $::Endpoint
--- must_die
--- error_log eval
qr/\[emerg\] .*"cluster" needs at least one node address \(HOST:PORT\) in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 8: db= with cluster
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_OWNER db=2;
--- config eval: $::Endpoint
--- must_die
--- error_log eval
qr/\[emerg\] .*"db=" is not possible with "cluster": a cluster has database 0 only in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 9: a node address that is not one
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_OWNER unix:/tmp/x.sock;
--- config eval: $::Endpoint
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid cluster node address "unix:\/tmp\/x\.sock": not HOST:PORT in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]



=== TEST 10: the slot moves back under load (MIGRATING/IMPORTING, MIGRATE, SETSLOT NODE): no request fails, every record on the new owner
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_THIRD timeout=2s;
--- config eval: $::Endpoint
--- init
main::node($_, "FLUSHALL") for @main::Ports;
t::Resend::redis({port => $main::Other}, 'XADD', $main::Key, '*', 'seed', '1');
(my $ok, $main::Sent) = main::migrate_under_load($main::Other, $main::Owner);
Test::More::is($ok, $main::Sent, "every request under migration answered 200 ($main::Sent sent)");
Test::More::is(t::Resend::redis({port => $main::Owner}, 'XLEN', $main::Key), $main::Sent + 1,
               "every record on the slot's new owner");
my $seen = main::redirects_seen();
Test::More::ok($seen->{ASK} && $seen->{MOVED}, "ASK and MOVED were followed under load")
    or Test::More::diag("ASK: $seen->{ASK}, MOVED: $seen->{MOVED}");
--- request eval: main::posts(1)->[0]
--- error_code: 200
--- stream_port eval: $main::Owner
--- stream_len eval: sub { $main::Sent + 2 }



=== TEST 11: shared limits (EVALSHA, every key in the stream's slot) over the cluster: routed to the stream's owner, the limit holds
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_THIRD;
    resend_confirmation_limit_secret $TEST_NGINX_SECRET;
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_shared_limit $resend_confirmation_email rate=3r/h burst=2;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- pipelined_requests eval: [("POST /r\n" . '{"email":"victim@example.com"}') x 5]
--- error_code eval: [(200) x 5]
--- stream_port eval: $main::Owner
--- stream_len: 3
--- no_error_log
CROSSSLOT
[alert]
[crit]



=== TEST 12: the spool over a cluster: records spooled while the nodes refuse writes (OOM), the slot moved meanwhile; the replay follows MOVED to the new owner, through the shared-limit script; nothing lost
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_THIRD timeout=300ms;
    resend_confirmation_limit_secret $TEST_NGINX_SECRET;
    resend_confirmation_spool $TEST_NGINX_SPOOL;
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_redis_failure spool;
        resend_confirmation_shared_limit $resend_confirmation_email rate=1r/h burst=100;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- init
my ($from, $to) = (main::owner(), $main::Owner == main::owner() ? $main::Other : $main::Owner);
for my $port (@main::Ports) {
    main::node($port, 'FLUSHALL');
    main::node($port, 'CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
    main::node($port, 'CONFIG', 'SET', 'maxmemory', '1');
}
my ($ok, $sent) = t::Resend::load_posts(2, 10, '/r');
Test::More::is($ok, $sent, "every request answered 200 while the cluster refuses writes ($sent)");
Test::More::ok(scalar(glob "$main::Dir/spool/*.seg"), 'the records are in the spool');
# The slot moves while the records wait (nginx's map still names the old owner).
main::node($to, 'CLUSTER', 'SETSLOT', $main::Slot, 'IMPORTING', main::id_of($from));
main::node($from, 'CLUSTER', 'SETSLOT', $main::Slot, 'MIGRATING', main::id_of($to));
main::node($_, 'CLUSTER', 'SETSLOT', $main::Slot, 'NODE', main::id_of($to)) for @main::Ports;
main::node($_, 'CONFIG', 'SET', 'maxmemory', '0') for @main::Ports;
for (1 .. 200) {
    last if !glob("$main::Dir/spool/*.seg") && main::node($to, 'XLEN', $main::Key) >= $sent;
    select undef, undef, undef, 0.05;
}
select undef, undef, undef, 0.3;
my ($requests, $duplicates) = t::Resend::stream_requests($to, $main::Key);
Test::More::diag("replayed: $duplicates duplicates (same request_id)") if $duplicates;
Test::More::is(scalar @$requests, $sent, "every record on the slot's new owner");
my $keys = main::node($to, 'KEYS', 'resend_confirmation:limit:*');
Test::More::is(scalar @$keys, $sent, 'each counted in its fleet-wide bucket, on the same node');
open my $log, '<', main::server_root() . '/logs/error.log' or die;
my $moved = grep { /: MOVED $main::Slot / } <$log>;
Test::More::ok($moved, "the replay met MOVED ($moved) and went on");
--- request eval: main::posts(1)->[0]
--- error_code: 200
--- no_error_log
CROSSSLOT
[alert]
[crit]



=== TEST 13: a command redirected with little time left is answered at its own deadline, alone: neither later (when the commands queued before it on the new node time out) nor by failing that node's link
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_NODE_X timeout=4s;
--- config eval: main::stream_locations(x => $::StreamX, y => $::StreamY)
--- init
my ($x_elapsed, $x_status, $y_elapsed, $y_status) = main::late_redirect();
Test::More::is($x_status, 503, 'X: no reply in its time: 503');
Test::More::cmp_ok($x_elapsed, '<=', 4.8, 'X answered at its own deadline (4 s), not at Y\'s (5.6 s)');
Test::More::is($y_status, 503, 'Y: no reply in its time: 503');
Test::More::cmp_ok($y_elapsed, '>=', 3.9, 'Y kept its full 4 s: B\'s link did not fail at X\'s deadline');
--- request eval
"POST /y\n" . '{"email":"after@example.com"}'
--- error_code: 200
--- error_log eval
[qr/\[info\] .*MOVED $main::SlotX 127\.0\.0\.1:$main::Ports[1]/,
 qr/\[error\] .*redis 127\.0\.0\.1:$main::Ports[1]: no reply in time to a command sent here by a redirect/,
 qr/\[error\] .*redis 127\.0\.0\.1:$main::Ports[1]: no reply in time\b(?! to)/]
--- no_error_log
[alert]
[crit]



=== TEST 14: metrics: a cluster's series add up its master links (links up, commands in flight on two stalled masters)
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_NODE_Z timeout=3s;
--- config eval
main::stream_locations(y => $::StreamY, z => $::StreamZ) . "    location = /metrics { resend_confirmation_metrics; }\n"
--- init
my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
my ($b, $c) = @main::Ports[1, 2];
t::Resend::post_once($port, $_, '{"email":"m@example.com"}') or die "$_ failed\n" for '/y', '/z';
my $text = main::scrape();
Test::More::is(main::gauge($text, 'resend_confirmation_redis_up'), 2, 'two master links up');
Test::More::is(main::gauge($text, 'resend_confirmation_redis_commands_in_flight'), 0, 'nothing in flight');
kill 'STOP', $t::Cluster::Pids{$_} for $b, $c;
my @posts = map { t::Resend::timed_post($_, '{"email":"stalled@example.com"}') } '/y', '/z';
for (1 .. 25) {  # both written (well within their 3 s)
    $text = main::scrape();
    last if main::gauge($text, 'resend_confirmation_redis_commands_in_flight') eq '2';
    select undef, undef, undef, 0.1;
}
kill 'CONT', $t::Cluster::Pids{$_} for $b, $c;
Test::More::is(main::gauge($text, 'resend_confirmation_redis_commands_in_flight'), 2,
               'one command in flight on each stalled master: 2');
Test::More::is((t::Resend::timed_result($_))[1], 200, 'answered 200 once the master woke') for @posts;
Test::More::is(main::gauge(main::scrape(), 'resend_confirmation_redis_commands_in_flight'), 0, 'nothing in flight after');
--- request eval
"POST /z\n" . '{"email":"after@example.com"}'
--- error_code: 200
--- no_error_log
[alert]
[crit]



=== TEST 15: a client that leaves while its command, sent again by a redirect, waits on the new node: 499 at once; the command still runs there, its reply dropped (the request is gone)
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_NODE_X timeout=3s;
--- config eval
main::stream_locations(x => $::StreamX) . "    location = /metrics { resend_confirmation_metrics; }\n"
--- init
my ($client_closed, $len) = main::leave_during_redirect();
Test::More::is($client_closed, 1, 'the client that left: 499 client_closed while its command waited on B');
Test::More::is($len, 1, 'its record ran on B once B woke');
--- request eval
"POST /x\n" . '{"email":"after@example.com"}'
--- error_code: 200
--- error_log eval
[qr/\[info\] .*MOVED $main::SlotX 127\.0\.0\.1:$main::Ports[1]/,
 qr/client prematurely closed connection while its record was sent to redis/]
--- no_error_log
[alert]
[crit]



=== TEST 16: a slot owner that cannot be reached (named by a redirect or by the slot map): the command never ran; under `spool` the record is kept (200 spooled), not refused (the last test: a node stays unreachable)
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_NODE_X timeout=1s;
    resend_confirmation_spool $TEST_NGINX_SPOOL;
--- config eval
main::stream_locations(x => $::StreamX) =~ s/(resend_confirmation;)/$1\n        resend_confirmation_redis_failure spool;\n        add_header X-Outcome \$resend_confirmation_outcome always;/r
--- init
main::unreachable_owner();
--- request eval
"POST /x\n" . '{"email":"unreachable@example.com"}'
--- error_code: 200
--- response_headers
X-Outcome: spooled
--- error_log eval
[qr/connect\(\) to 192\.0\.2\.1:$main::Ports[2] failed/]
--- no_error_log
[alert]
[crit]
