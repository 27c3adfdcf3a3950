# A Redis address given by name: without `resolver` it is resolved once, at
# start (the system's resolver, /etc/hosts); with one, nginx's resolver
# resolves it again on every connect, so a new answer is followed without a
# reload. A tiny DNS server of the test's own (UDP on loopback, A records
# for one name, its answer changed between blocks) stands for the real one;
# "localhost" is the name, so that the system's answer (127.0.0.1) and the
# test server's (127.0.0.2) differ.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use File::Temp ();
use IO::Socket::INET;
use POSIX ();

# Two Redis on the same port, at 127.0.0.1 and at 127.0.0.2.
$ENV{TEST_NGINX_NAMED_PORT} = our $Port = $ENV{TEST_NGINX_REDIS_PORT} + 30;
$ENV{TEST_NGINX_DNS_PORT} = our $DnsPort = $ENV{TEST_NGINX_REDIS_PORT} + 31;
our $Dir = File::Temp::tempdir(CLEANUP => 1);
our %Pids;

sub start_redis_at {
    my $host = shift;
    return if $Pids{$host} && kill 0, $Pids{$host};
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        { exec 'redis-server', '--port', $Port, '--bind', $host, '--save', '', '--appendonly', 'no',
               '--logfile', '/dev/null', '--dir', $Dir }
        POSIX::_exit(127);
    }
    $Pids{$host} = $pid;
    for (1 .. 100) {
        last if eval { t::Resend::redis({host => $host, port => $Port}, 'PING') eq 'PONG' };
        select undef, undef, undef, 0.05;
    }
    t::Resend::redis({host => $host, port => $Port}, 'FLUSHALL');
}

# The DNS server: answers A queries for "localhost" (and "redis.test",
# which the system cannot resolve) with the address in
# $Dir/answer (NXDOMAIN when the file is empty), and AAAA with no address.
sub answer {
    open my $out, '>', "$Dir/answer" or die;
    print $out @_;
    close $out;
}

sub start_dns {
    return if $Pids{dns};
    my $sock = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $DnsPort, Proto => 'udp')
        or die "dns: $!\n";
    my $pid = fork // die "fork: $!";
    if ($pid) {
        $Pids{dns} = $pid;
        close $sock;
        return;
    }
    while (defined $sock->recv(my $query, 512)) {
        my ($id, $flags, $qdcount) = unpack 'n n n', $query;
        next unless $qdcount == 1;
        my ($pos, @labels) = (12);
        while ((my $len = ord substr $query, $pos, 1) != 0) {
            push @labels, lc substr $query, $pos + 1, $len;
            $pos += $len + 1;
        }
        my ($qtype) = unpack 'n', substr $query, $pos + 1, 2;
        my $question = substr $query, 12, $pos + 5 - 12;
        open my $in, '<', "$Dir/answer";
        my $address = <$in> // '';
        my $name = join '.', @labels;
        my $found = ($name eq 'localhost' || $name eq 'redis.test') && $address =~ /^\d+\.\d+\.\d+\.\d+$/;
        my $answer = $found && $qtype == 1
            ? pack('n n n N n', 0xc00c, 1, 1, 0, 4) . pack('C4', split /\./, $address) : '';
        my $rcode = $found ? 0 : 3;
        $sock->send(pack('n n n n n n', $id, 0x8180 | $rcode, 1, $answer ? 1 : 0, 0, 0)
                    . $question . $answer);
    }
    POSIX::_exit(0);
}

END { kill 'KILL', $_ for values %Pids }

start_redis_at($_) for '127.0.0.1', '127.0.0.2';
start_dns();

our $Location = <<'_EOC_';
    location = /r {
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
_EOC_

# resolver and redis at server level, the location inherits them.
our $ServerResolver = "resolver 127.0.0.1:$DnsPort valid=1s ipv6=off;\n"
                    . "resend_confirmation_redis localhost:$Port;\n" . $Location;

resend_defaults(more_headers => "Content-Type: application/json",
                request => "POST /r\n" . '{"email":"named@example.com"}',
                init => 'main::answer("127.0.0.2"); t::Resend::redis({host => $_, port => $main::Port}, "FLUSHALL") for "127.0.0.1", "127.0.0.2"');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: no resolver: the name as the system resolved it at start (127.0.0.1)
--- config eval: $::Location
--- http_config
    resend_confirmation_redis localhost:$TEST_NGINX_NAMED_PORT;
--- error_code: 200
--- stream_host: 127.0.0.1
--- stream_port eval: $main::Port
--- stream_len: 1



=== TEST 2: with a resolver: nginx's resolver answers (127.0.0.2), not the address found at start
--- config eval: $::Location
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
    resend_confirmation_redis localhost:$TEST_NGINX_NAMED_PORT;
--- error_code: 200
--- stream_host: 127.0.0.2
--- stream_port eval: $main::Port
--- stream_len: 1



=== TEST 3: the answer changes; once the link reconnects (Redis closed it) the new address is used, no reload
--- init
main::answer("127.0.0.1");
t::Resend::redis({host => '127.0.0.2', port => $main::Port}, 'CLIENT', 'KILL', 'TYPE', 'normal');
select undef, undef, undef, 2.2;  # past the resolver's valid=1s (whole seconds)
--- error_code: 200
--- stream_host: 127.0.0.1
--- stream_port eval: $main::Port
--- stream_len: 1



=== TEST 4: the name no longer resolves: 503 and a line naming it
--- config eval: $::Location
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
    resend_confirmation_redis localhost:$TEST_NGINX_NAMED_PORT connect_timeout=500ms timeout=500ms;
--- init
main::answer("");
--- error_code: 503
--- error_log eval
qr/\[error\] .*resend_confirmation: redis localhost:\d+: "localhost" could not be resolved \(3: Host not found\)/



=== TEST 5: the resolver of the directive's level: a server's resolver is used by the redis set in it
--- config eval: $::ServerResolver
--- error_code: 200
--- stream_host: 127.0.0.2
--- stream_port eval: $main::Port
--- stream_len: 1



=== TEST 6: with a resolver, a name the system cannot resolve at start is found when connecting
--- config eval: $::Location
--- http_config
    resolver 127.0.0.1:$TEST_NGINX_DNS_PORT valid=1s ipv6=off;
    resend_confirmation_redis redis.test:$TEST_NGINX_NAMED_PORT;
--- error_code: 200
--- stream_host: 127.0.0.2
--- stream_port eval: $main::Port
--- stream_len: 1



=== TEST 7: without one it is an nginx -t error naming file:line
--- config eval: $::Location
--- http_config
    resend_confirmation_redis redis.test:$TEST_NGINX_NAMED_PORT;
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid redis address "redis\.test:\d+": host not found, and no "resolver" to find it when connecting in \S+nginx\.conf:\d+/
--- no_error_log
[alert]
[crit]
