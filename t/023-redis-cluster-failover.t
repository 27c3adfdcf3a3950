# A 200 survives a Redis Cluster failover (issue 18): three masters and
# three replicas started here (t/Cluster.pm, cluster-node-timeout 4000:
# a replica stopped 2.5 s is never marked failed, so the slot map keeps
# listing it), nginx on `cluster` with the replicas the slot map lists
# (the default; T_CLUSTER_REPLICAS_PARAM adds a parameter, "replicas=1"
# say), timeout=500ms, under load from the test (t/Failover.pm). The master of
# the stream's slot is killed -9; after each scenario the cluster is left
# to settle (the killed node back, as a replica) and the spool to be
# replayed, then every answer 200 in the access log must have its
# request_id in the stream on the slot's final master. The answers not
# `accepted` (503, or 200 spooled) are printed, from the first sent to the
# last answered, after each fault.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use t::Cluster ();
use t::Failover qw(start_load stop_load answers stream_ids spool_drained report windows);
use File::Temp ();
use Time::HiRes ();

our @Ports = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 90 .. 95;
our $Dir = File::Temp::tempdir(CLEANUP => 1);
our $Key = 'resend_confirmation';
$ENV{TEST_NGINX_NODES} = join ' ', map { "127.0.0.1:$_" } @Ports[0 .. 2];
$ENV{TEST_NGINX_REPLICAS} = $ENV{T_CLUSTER_REPLICAS_PARAM} // '';
$ENV{TEST_NGINX_SPOOL} = "$Dir/spool";
mkdir "$Dir/spool";
($ENV{TEST_NGINX_LOG_FORMAT}, $ENV{TEST_NGINX_ACCESS_LOG}) = t::Failover::access_log();

sub node { t::Cluster::node(@_) }
sub wait_for { t::Resend::wait_for(@_) }
sub sleep_for { Time::HiRes::sleep(shift) }
sub now { Time::HiRes::time() }

t::Cluster::start(\@Ports, $Dir, sub { ('--cluster-node-timeout', 4000, '--repl-diskless-sync-delay', 0) }, 1);
our $Slot = node($Ports[0], 'CLUSTER', 'KEYSLOT', $Key);

sub alive { grep { eval { node($_, 'PING') eq 'PONG' } } @Ports }

# The stream slot's master and its replica, as a live node sees them.
sub owner {
    my ($at) = alive();
    return t::Cluster::owner($at, $Slot);
}
sub replica_of {
    my $master = shift;
    my ($at) = alive();
    my $id = node($master, 'CLUSTER', 'MYID');
    my ($port) = node($at, 'CLUSTER', 'NODES') =~ /^\S+ 127\.0\.0\.1:(\d+)\@\d+ (?:myself,)?slave $id /m;
    return $port;
}

# Waits until the cluster is at rest: every node up and of one mind about
# the slot's owner (state ok), and every replica's link to its master up.
# Returns the slot's (master, replica).
sub settled {
    my $seconds = shift // 40;
    my ($master, $replica);
    wait_for('the cluster to settle', $seconds, sub {
        return 0 unless alive() == @Ports;
        my %owners = map { (t::Cluster::owner($_, $Slot) => 1) } @Ports;
        return 0 unless keys %owners == 1;
        for my $port (@Ports) {
            my $info = node($port, 'INFO', 'replication');
            return 0 if node($port, 'CLUSTER', 'INFO') !~ /cluster_state:ok/
                || ($info =~ /role:slave/ && $info !~ /master_link_status:up/);
        }
        ($master) = keys %owners;
        $replica = replica_of($master);
        return defined $replica && node($master, 'INFO', 'replication') =~ /port=$replica,state=online/;
    });
    return ($master, $replica);
}

# Waits until the live nodes name a new master of the slot (the failover
# is done); returns when.
sub failed_over {
    my $old = shift;
    wait_for('the replica to take over the slot', 30, sub {
        my @live = alive();
        my %owners = map { (t::Cluster::owner($_, $Slot) => 1) } @live;
        keys %owners == 1 && !$owners{$old} && !grep { node($_, 'CLUSTER', 'INFO') !~ /cluster_state:ok/ } @live;
    });
    return now();
}

sub kill_node {
    my $port = shift;
    kill 'KILL', $t::Cluster::Pids{$port};
    waitpid $t::Cluster::Pids{$port}, 0;
    return now();
}

our %Scenarios = (
    # (f) the master killed while its replica lags 2.5 s behind (stopped;
    # the records' padding makes more than the sockets' buffers hold, so
    # that the resumed replica cannot catch up from what the kernel kept)
    lagging_replica => sub {
        my ($master, $replica) = @_;
        sleep_for(1.5);
        kill 'STOP', $t::Cluster::Pids{$replica};
        my $stopped = now();
        sleep_for(2.5);
        my $killed = kill_node($master);
        kill 'CONT', $t::Cluster::Pids{$replica};
        failed_over($master);
        sleep_for(2);
        return (['replica stopped', $stopped], ['master killed -9', $killed]);
    },
    # (g) the master killed and kept down 15 s: a few seconds of 503, not 15
    master_down => sub {
        my ($master, $replica) = @_;
        sleep_for(1.5);
        my $killed = kill_node($master);
        my $done = failed_over($master);
        sleep_for(15 - ($done - $killed));
        t::Cluster::restart($master);
        my $back = now();
        sleep_for(2);
        my $check = sub {
            my ($window) = windows(shift, ['master killed', $killed], ['back', $back]);
            Test::More::cmp_ok($window->[3] - $window->[2], '<', 10,
                               "answers not accepted for a few seconds after the master died, not until it came back");
        };
        return (['master killed -9', $killed], ['node back', $back], $check);
    },
);

# Runs a scenario under `policy` (reject or spool) and checks its answers;
# a master it killed comes back (as a replica) before the cluster settles.
sub scenario {
    my ($name, $policy) = @_;
    t::Failover::scenario(name => $name, policy => $policy, spool => "$Dir/spool", key => $Key,
                          settled => \&settled, during => $Scenarios{$name},
                          after => sub { my $master = shift;
                                         t::Cluster::restart($master) unless eval { node($master, 'PING') eq 'PONG' } });
}

t::Failover::defaults(q{resend_confirmation_redis cluster $TEST_NGINX_NODES connect_timeout=300ms timeout=500ms $TEST_NGINX_REPLICAS;});
run_tests();

__DATA__

=== TEST 1: (f) the stream slot's master killed -9 while its replica lags 2.5 s: reject
--- config eval: t::Failover::location('reject', 3000)
--- init
main::scenario('lagging_replica', 'reject');



=== TEST 2: (f) the stream slot's master killed -9 while its replica lags 2.5 s: spool
--- config eval: t::Failover::location('spool', 3000)
--- init
main::scenario('lagging_replica', 'spool');



=== TEST 3: (g) the stream slot's master killed -9 and down for 15 s: 503s for a few seconds only: reject
--- config eval: t::Failover::location('reject')
--- init
main::scenario('master_down', 'reject');



=== TEST 4: (g) the stream slot's master killed -9 and down for 15 s: spooled answers for a few seconds only: spool
--- config eval: t::Failover::location('spool')
--- init
main::scenario('master_down', 'spool');
