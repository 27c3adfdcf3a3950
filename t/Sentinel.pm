# A Sentinel group for the failover tests (t/022-redis-sentinel-failover.t):
# two redis-server (a master and its replica) and three redis-sentinel
# (quorum 2, down-after-milliseconds 1000), killed when the test ends.
# Full syncs start at once (repl-diskless-sync-delay 0) unless a test
# slows them down.
package t::Sentinel;

use strict;
use warnings;
use Time::HiRes ();
use t::Resend ();

our (%Pids, @Nodes, @Sentinels, $Dir);
our $Name = 'mymaster';

sub at { t::Resend::redis({port => shift}, @_) }

# start_node($port[, $master]): a redis-server on `port`, the replica of
# `master` when given; empty (a replica keeps the RDB of its full sync,
# with the replication offset: started on it, it would only catch up).
sub start_node {
    my ($port, $master) = @_;
    unlink "$Dir/dump-$port.rdb";
    $Pids{$port} = t::Resend::spawn('redis-server', '--port', $port, '--bind', '127.0.0.1', '--save', '',
        '--appendonly', 'no', '--logfile', '/dev/null', '--dir', $Dir, '--dbfilename', "dump-$port.rdb",
        '--repl-diskless-sync-delay', 0,
        $master ? ('--replicaof', '127.0.0.1', $master) : ());
    t::Resend::wait_for("redis on $port", 10, sub { at($port, 'PING') eq 'PONG' });
}

# kill_node($port): kill -9, and gone.
sub kill_node {
    my $port = shift;
    my $pid = delete $Pids{$port} or return;
    kill 'KILL', $pid;
    waitpid $pid, 0;
}

# start(\@nodes, \@sentinels, $dir): $nodes[0] the master, $nodes[1] its
# replica; returns once every Sentinel knows the replica and the two others
# (hello messages every 2 s: only then can SENTINEL FAILOVER pick it).
sub start {
    my ($nodes, $sentinels, $dir) = @_;
    @Nodes = @$nodes;
    @Sentinels = @$sentinels;
    $Dir = $dir;
    start_node($nodes->[0]);
    start_node($nodes->[1], $nodes->[0]);
    for my $port (@Sentinels) {
        open my $out, '>', "$dir/sentinel-$port.conf" or die "$dir: $!\n";
        print $out "port $port\nbind 127.0.0.1\ndir $dir\nlogfile \"\"\n",
                   "sentinel monitor $Name 127.0.0.1 $nodes->[0] 2\n",
                   "sentinel down-after-milliseconds $Name 1000\n",
                   "sentinel failover-timeout $Name 10000\n";
        close $out;
        $Pids{"s$port"} = t::Resend::spawn('sh', '-c', "exec redis-sentinel $dir/sentinel-$port.conf >/dev/null 2>&1");
    }
    settled();
}

# The master's port, as the first Sentinel names it.
sub master { at($Sentinels[0], 'SENTINEL', 'get-master-addr-by-name', $Name)->[1] }

sub replica_of {
    my $master = shift;
    my ($replica) = grep { $_ != $master } @Nodes;
    return $replica;
}

# Waits (at most `seconds`, default 40) until the group is at rest: every
# Sentinel names the same master, the other node replicates it (the link
# up, the master lists it online) and every Sentinel knows it as a replica
# whose link is up. Returns (master, replica).
sub settled {
    my $seconds = shift // 40;
    my ($master, $replica);
    t::Resend::wait_for('the Sentinel group to settle', $seconds, sub {
        $master = master();
        $replica = replica_of($master);
        return 0 if grep { at($_, 'SENTINEL', 'get-master-addr-by-name', $Name)->[1] != $master } @Sentinels;
        return 0 unless at($replica, 'INFO', 'replication') =~ /master_port:$master\r\nmaster_link_status:up/;
        return 0 unless at($master, 'INFO', 'replication') =~ /^slave0:.*port=$replica,state=online/m;
        for my $port (@Sentinels) {
            my @replicas = map { {@$_} } @{ at($port, 'SENTINEL', 'replicas', $Name) };
            return 0 unless @replicas == 1 && $replicas[0]{flags} eq 'slave' && $replicas[0]{port} == $replica
                && $replicas[0]{'master-link-status'} eq 'ok'
                && @{ at($port, 'SENTINEL', 'sentinels', $Name) } == @Sentinels - 1;
        }
        return 1;
    });
    return ($master, $replica);
}

# SENTINEL FAILOVER, asked again while the Sentinel answers that it
# cannot yet (no good replica, a failover in progress); returns when it
# was asked.
sub failover {
    my $reply;
    t::Resend::wait_for('SENTINEL FAILOVER to be taken', 20, sub {
        $reply = at($Sentinels[0], 'SENTINEL', 'FAILOVER', $Name);
        return $reply eq 'OK';
    });
    return Time::HiRes::time();
}

# Waits until the Sentinels name a master other than `old`; returns when.
sub switched {
    my $old = shift;
    t::Resend::wait_for('the Sentinels to name a new master', 30, sub { master() != $old });
    return Time::HiRes::time();
}

END { kill 'KILL', $_ for values %Pids }

1;
