# A Redis Cluster for the tests (t/017-redis-cluster.t, t/020-redis-cluster-tls.t,
# t/023-redis-cluster-failover.t): redis-server processes on the given
# ports, joined with `redis-cli --cluster create` (no replicas, or one per
# master); killed when the test ends.
package t::Cluster;

use strict;
use warnings;
use t::Resend ();

our (%Pids, %Commands);

sub node { t::Resend::redis({port => shift}, @_) }

# start(\@ports, $dir[, $more[, $replicas]]): each node on its port with
# `--dir $dir` and the arguments $more->($port) returns (TLS settings,
# say); with $replicas (1), half the nodes are the others' replicas.
sub start {
    my ($ports, $dir, $more, $replicas) = @_;
    for my $port (@$ports) {
        my @more = $more ? $more->($port) : ();
        $Commands{$port} = ['redis-server', '--port', $port, '--bind', '127.0.0.1',
            '--cluster-enabled', 'yes', '--cluster-config-file', "$dir/nodes-$port.conf", '--save', '',
            '--appendonly', 'no', '--logfile', '/dev/null', '--dir', $dir, '--dbfilename', "dump-$port.rdb", @more];
        restart($port);
    }
    system("redis-cli --cluster create " . join(' ', map { "127.0.0.1:$_" } @$ports)
           . " --cluster-replicas " . ($replicas // 0) . " --cluster-yes >/dev/null 2>&1") == 0
        or die "cluster create failed\n";
    for my $port (@$ports) {
        for (1 .. 200) {
            last if node($port, 'CLUSTER', 'INFO') =~ /cluster_state:ok/;
            select undef, undef, undef, 0.05;
        }
    }
}

# restart($port): node `port` (again), with the arguments start() gave it
# and its nodes file: it rejoins the cluster it knew, empty (a replica's
# RDB of its last full sync is removed: no data of before comes back).
sub restart {
    my $port = shift;
    my %args = @{ $Commands{$port} }[1 .. $#{ $Commands{$port} }];
    unlink "$args{'--dir'}/$args{'--dbfilename'}";
    $Pids{$port} = t::Resend::spawn(@{ $Commands{$port} });
    for (1 .. 100) {
        last if eval { node($port, 'PING') eq 'PONG' };
        select undef, undef, undef, 0.05;
    }
}

# The port of the master that serves `slot`, as node `port` sees it.
sub owner {
    my ($port, $slot) = @_;
    for my $range (@{ node($port, 'CLUSTER', 'SLOTS') }) {
        return $range->[2][1] if $range->[0] <= $slot && $slot <= $range->[1];
    }
    die "slot $slot has no owner\n";
}

END { kill 'KILL', $_ for values %Pids }

1;
