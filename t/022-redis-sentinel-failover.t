# A 200 survives every Sentinel failover (issue 18): a master, a replica and
# three Sentinels (down-after-milliseconds 1000) started here, nginx on
# `replicas=1` (T_REPLICAS_PARAM; "" to run the same scenarios on a module
# without the parameter), timeout=500ms, under load from the test
# (t/Failover.pm: T_LOAD_RATE requests a second, 3000 by default, each
# with an email of its own). After each scenario the group is left to
# settle (and the spool to be replayed), then every answer 200 in the
# access log must have its request_id in the final master's stream. The
# answers not `accepted` (503, or 200 spooled) are printed, from the first
# sent to the last answered, after each fault.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use t::Sentinel ();
use t::Failover qw(start_load stop_load answers stream_ids spool_drained report replicas_param);
use File::Temp ();
use Time::HiRes ();

our @Nodes = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 80, 81;
our @Sentinels = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 82 .. 84;
our $Dir = File::Temp::tempdir(CLEANUP => 1);
$ENV{TEST_NGINX_SENTINELS} = join ' ', map { "127.0.0.1:$_" } @Sentinels;
$ENV{TEST_NGINX_REPLICAS} = replicas_param();
$ENV{TEST_NGINX_SPOOL} = "$Dir/spool";
mkdir "$Dir/spool";
($ENV{TEST_NGINX_LOG_FORMAT}, $ENV{TEST_NGINX_ACCESS_LOG}) = t::Failover::access_log();

t::Sentinel::start(\@Nodes, \@Sentinels, $Dir);

sub at { t::Resend::redis({port => shift}, @_) }
sub wait_for { t::Resend::wait_for(@_) }
sub sleep_for { Time::HiRes::sleep(shift) }
sub now { Time::HiRes::time() }

# A full sync of `replica` from `master` that waits `delay` seconds before
# it starts (the master's repl-diskless-sync-delay): the replica restarted.
# Returns when it was killed.
sub resync {
    my ($master, $replica, $delay) = @_;
    at($master, 'CONFIG', 'SET', 'repl-diskless-sync-delay', $delay);
    my $killed = now();
    t::Sentinel::kill_node($replica);
    t::Sentinel::start_node($replica, $master);
    wait_for('the full sync to begin', 10,
             sub { at($master, 'INFO', 'replication') =~ /^slave0:.*port=$replica,state=wait_bgsave/m });
    return $killed;
}

# Waits until `replica` has caught up with `master` and every Sentinel
# knows its link is up, then lets syncs start at once again.
sub synced {
    my ($master, $replica) = @_;
    wait_for('the replica to sync', 30, sub { at($replica, 'INFO', 'replication') =~ /master_link_status:up/ });
    at($master, 'CONFIG', 'SET', 'repl-diskless-sync-delay', 0);
    t::Sentinel::settled();
}

# A failover the Sentinels finished: [name, when it was asked] for the
# windows, once the Sentinels name the new master.
sub failover {
    my ($name, $master) = @_;
    my $asked = t::Sentinel::failover();
    t::Sentinel::switched($master);
    return [$name, $asked];
}

# The scenarios: `before` runs before the load starts (with the group at
# rest: master, replica), `during` under load; it returns the marks of
# its faults ([name, time] each) and, where it has one, a check of the
# answers.
our %Scenarios = (
    # (a) nginx's link first connects while the replica is in its initial sync
    initial_sync => {
        # The replica is in sync only from just before the failover, and the
        # new master has none until Sentinel makes the old one its replica:
        # under `reject` the 200s are few or none (replicas=1), never lost.
        least_200 => 0,
        before => sub { resync(@_, 5) },
        during => sub {
            my ($master, $replica) = @_;
            synced($master, $replica);
            my $failover = failover('SENTINEL FAILOVER', $master);
            sleep_for(2);
            return ($failover);
        },
    },
    # (b) a second failover, once the first master has rejoined as a replica
    second_failover => {
        during => sub {
            my ($master, $replica) = @_;
            sleep_for(1.5);
            my $first = failover('first SENTINEL FAILOVER', $master);
            my ($new) = t::Sentinel::settled(60);
            my $second = failover('second SENTINEL FAILOVER', $new);
            sleep_for(2);
            return ($first, $second);
        },
    },
    # (c) nginx -s reload 0.2 s after SENTINEL FAILOVER: a fresh link
    reload => {
        during => sub {
            my ($master, $replica) = @_;
            sleep_for(1.5);
            my $asked = t::Sentinel::failover();
            sleep_for(0.2);
            kill 'HUP', t::Resend::master_pid();
            t::Sentinel::switched($master);
            sleep_for(2);
            return (['SENTINEL FAILOVER, reload 0.2 s later', $asked]);
        },
    },
    # (d) the replica restarted (a full sync that takes 8 s), then a failover
    replica_restarted => {
        during => sub {
            my ($master, $replica) = @_;
            sleep_for(1.5);
            my $restarted = ['replica restarted', resync($master, $replica, 8)];
            synced($master, $replica);
            my $failover = failover('SENTINEL FAILOVER', $master);
            sleep_for(2);
            return ($restarted, $failover);
        },
    },
    # (e) the replica down for 7 s: no answer 200 `accepted` meanwhile
    replica_down => {
        during => sub {
            my ($master, $replica) = @_;
            sleep_for(1.5);
            t::Sentinel::kill_node($replica);
            my $down = now();
            sleep_for(7);
            my $up = now();
            t::Sentinel::start_node($replica, $master);
            synced($master, $replica);
            sleep_for(1);
            my $check = sub {
                my $answers = shift;
                my @alone = grep { $_->[4] eq 'accepted' && $_->[1] > $down + 0.05 && $_->[0] < $up } @$answers;
                Test::More::is(scalar @alone, 0, "no answer 200 accepted while the replica is down")
                    or Test::More::diag(scalar(@alone) . " answers 200 accepted that only the master held");
            };
            return (['replica down', $down], ['replica back', $up], $check);
        },
    },
);

# Runs a scenario under `policy` (reject or spool) and checks its answers.
sub scenario {
    my ($name, $policy) = @_;
    t::Failover::scenario(name => $name, policy => $policy, spool => "$Dir/spool",
                          settled => \&t::Sentinel::settled, %{ $Scenarios{$name} });
}

t::Failover::defaults(q{resend_confirmation_redis sentinel=mymaster $TEST_NGINX_SENTINELS connect_timeout=300ms timeout=500ms $TEST_NGINX_REPLICAS;});
run_tests();

__DATA__

=== TEST 1: (a) the replica in its initial sync when the link connects, then SENTINEL FAILOVER: reject
--- config eval: t::Failover::location('reject')
--- init
main::scenario('initial_sync', 'reject');



=== TEST 2: (a) the replica in its initial sync when the link connects, then SENTINEL FAILOVER: spool
--- config eval: t::Failover::location('spool')
--- init
main::scenario('initial_sync', 'spool');



=== TEST 3: (b) a second SENTINEL FAILOVER, after the first master rejoined as a replica: reject
--- config eval: t::Failover::location('reject')
--- init
main::scenario('second_failover', 'reject');



=== TEST 4: (b) a second SENTINEL FAILOVER, after the first master rejoined as a replica: spool
--- config eval: t::Failover::location('spool')
--- init
main::scenario('second_failover', 'spool');



=== TEST 5: (c) nginx -s reload 0.2 s after SENTINEL FAILOVER: reject
--- config eval: t::Failover::location('reject')
--- init
main::scenario('reload', 'reject');



=== TEST 6: (c) nginx -s reload 0.2 s after SENTINEL FAILOVER: spool
--- config eval: t::Failover::location('spool')
--- init
main::scenario('reload', 'spool');



=== TEST 7: (d) the replica restarted (8 s to resync), then SENTINEL FAILOVER: reject
--- config eval: t::Failover::location('reject')
--- init
main::scenario('replica_restarted', 'reject');



=== TEST 8: (d) the replica restarted (8 s to resync), then SENTINEL FAILOVER: spool
--- config eval: t::Failover::location('spool')
--- init
main::scenario('replica_restarted', 'spool');



=== TEST 9: (e) the replica down for 7 s: 503s, never a 200 only the master holds: reject
--- config eval: t::Failover::location('reject')
--- init
main::scenario('replica_down', 'reject');



=== TEST 10: (e) the replica down for 7 s: spooled 200s, never a 200 only the master holds: spool
--- config eval: t::Failover::location('spool')
--- init
main::scenario('replica_down', 'spool');
