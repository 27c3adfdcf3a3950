# Redis Sentinel over TLS, as managed Sentinel-compatible services run it: a
# master and a replica replicating over TLS, and a Sentinel that nginx asks
# over TLS, which names the master's TLS port. Each node also has a plain
# port, for the test's own checks only (nginx is never told of them).
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use File::Temp ();
use Time::HiRes ();

our ($Master, $Replica, $Sentinel) = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 70 .. 72;
our %Tls = map { $_ => $_ + 10 } $Master, $Replica, $Sentinel;
our %Plain = reverse %Tls;
$ENV{TEST_NGINX_SENTINEL_TLS} = $Tls{$Sentinel};
our $Dir = File::Temp::tempdir(CLEANUP => 1);
$ENV{TEST_NGINX_TLS_DIR} = $Dir;
t::Resend::tls_certificates($Dir);
our @TlsArgs = ('--tls-cert-file', "$Dir/server.crt", '--tls-key-file', "$Dir/server.key",
                '--tls-ca-cert-file', "$Dir/ca.crt", '--tls-auth-clients', 'no', '--tls-replication', 'yes');
our %Pids;

sub at { t::Resend::redis({port => shift}, @_) }

sub wait_for { t::Resend::wait_for(@_) }

sub spawn {
    my ($port, @command) = @_;
    $Pids{$port} = t::Resend::spawn(@command);
    wait_for("port $port", 10, sub { at($port, 'PING') eq 'PONG' });
}

END { kill 'KILL', $_ for values %Pids }

for my $port ($Master, $Replica) {
    spawn($port, 'redis-server', '--port', $port, '--tls-port', $Tls{$port}, '--bind', '127.0.0.1',
          '--save', '', '--appendonly', 'no', '--logfile', '/dev/null', '--dir', $Dir, @TlsArgs,
          $port == $Replica ? ('--replicaof', '127.0.0.1', $Tls{$Master}) : ());
}
wait_for('the replica', 10, sub { at($Replica, 'INFO', 'replication') =~ /master_link_status:up/ });
{
    open my $out, '>', "$Dir/sentinel.conf" or die;
    print $out "port $Sentinel\ntls-port $Tls{$Sentinel}\nbind 127.0.0.1\ndir $Dir\nlogfile \"\"\n",
               "tls-cert-file $Dir/server.crt\ntls-key-file $Dir/server.key\ntls-ca-cert-file $Dir/ca.crt\n",
               "tls-auth-clients no\ntls-replication yes\n",
               "sentinel monitor mymaster 127.0.0.1 $Tls{$Master} 1\n",
               "sentinel down-after-milliseconds mymaster 1000\n",
               "sentinel failover-timeout mymaster 10000\n";
    close $out;
    spawn($Sentinel, 'sh', '-c', "exec redis-sentinel $Dir/sentinel.conf >/dev/null 2>&1");
}
wait_for('the Sentinel to know the replica', 20,
         sub { @{ at($Sentinel, 'SENTINEL', 'replicas', 'mymaster') } == 1 });

# The master the Sentinel names: its TLS port, and the plain one of the same node.
sub master_tls { at($Sentinel, 'SENTINEL', 'get-master-addr-by-name', 'mymaster')->[1] }
sub master_plain { $Plain{ master_tls() } }

resend_defaults(more_headers => "Content-Type: application/json",
                init => 'main::at($_, "DEL", "resend_confirmation") for main::master_plain()');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the Sentinel asked over TLS names the master's TLS port; the record goes there over TLS
--- http_config
    resend_confirmation_redis sentinel=mymaster 127.0.0.1:$TEST_NGINX_SENTINEL_TLS tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- config eval: $::Endpoint
--- request
POST /r
{"email":"sentinel-tls@example.com"}
--- error_code: 200
--- stream_port eval: $main::Master
--- stream_len: 1



=== TEST 2: after SENTINEL FAILOVER, the next records go to the new master, over TLS
--- http_config
    resend_confirmation_redis sentinel=mymaster 127.0.0.1:$TEST_NGINX_SENTINEL_TLS tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- config eval: $::Endpoint
--- init
my $old = main::master_tls();
Test::More::is(main::at($main::Sentinel, 'SENTINEL', 'FAILOVER', 'mymaster'), 'OK', 'SENTINEL FAILOVER');
main::wait_for('the new master', 20, sub { main::master_tls() != $old });
# A record needs a replica (replicas=1): the old master, once the Sentinel
# has made it one (it looks at it every 10 s).
main::wait_for('the new master to take records', 30, sub {
    my $role = main::at(main::master_plain(), 'ROLE');
    $role->[0] eq 'master' && @{ $role->[2] } == 1
});
Test::More::is(main::master_plain(), $main::Replica, 'the Sentinel names the former replica');
main::at($main::Replica, 'DEL', 'resend_confirmation');
--- pipelined_requests eval
[map { "POST /r\n" . qq({"email":"after$_\@example.com"}) } 1 .. 5]
--- error_code eval: [(200) x 5]
--- stream_port eval: $main::Replica
--- stream_len: 5
