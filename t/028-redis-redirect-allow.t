# A rogue cluster node or Sentinel is not a pivot (issue 21): a MOVED to a
# node neither the configuration nor the slot map names is not followed
# (one [error] naming it; the command did not run: 503 under reject), unless
# allow= lists its network; a master a Sentinel names outside allow= is not
# connected to. The rogue parts are this file's own, in Perl: nginx never
# reaches 192.0.2.0/24 (TEST-NET-1, and the tests run with loopback only).
use Test::Nginx::Socket 'no_plan';
use t::Resend;

our ($Node, $Sentinel) = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 100, 101;
$ENV{TEST_NGINX_ROGUE_NODE} = $Node;
$ENV{TEST_NGINX_ROGUE_SENTINEL} = $Sentinel;
our %Pids;
END { kill 'KILL', $_ for values %Pids }

my $bulk = \&t::Resend::bulk;
# A node whose slot map names only itself, and which sends every record
# elsewhere.
$Pids{node} = t::Resend::fake_redis($Node, sub {
    my ($connection, $command) = @_;
    $command = uc $command;
    return "*1\r\n*3\r\n:0\r\n:16383\r\n*3\r\n" . $bulk->('127.0.0.1') . ":$Node\r\n" . $bulk->('rogue') if $command eq 'CLUSTER';
    return "-MOVED 12331 192.0.2.55:6380\r\n" if $command eq 'XADD';
    return "+OK\r\n";
});
# A Sentinel that names a master in TEST-NET-1.
$Pids{sentinel} = t::Resend::fake_redis($Sentinel, sub {
    my ($connection, $command) = @_;
    return "*2\r\n" . $bulk->('192.0.2.66') . $bulk->('6379') if uc $command eq 'SENTINEL';
    return "*3\r\n" . $bulk->('psubscribe') . $bulk->('*') . ":1\r\n" if uc $command eq 'PSUBSCRIBE';
    return "+OK\r\n";
});

resend_defaults(more_headers => "Content-Type: application/json");
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a MOVED to a node nobody named is not followed
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_ROGUE_NODE timeout=500ms;
--- config eval: $::Endpoint
--- request
POST /r
{"email":"pivot@example.com"}
--- error_code: 503
--- error_log eval
qr/\[error\] .*redis 127\.0\.0\.1:\d+: a redirect to 192\.0\.2\.55:6380, a node neither the configuration nor the slot map names \(nor allow=\): not followed/
--- no_error_log eval
[qr/connect\(\) to 192\.0\.2\.55/, '[alert]', '[crit]']



=== TEST 2: ... unless allow= lists its network: then it is followed (and here cannot be reached)
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_ROGUE_NODE timeout=500ms allow=10.0.0.0/8,192.0.2.0/24;
--- config eval: $::Endpoint
--- request
POST /r
{"email":"allowed@example.com"}
--- error_code: 503
--- error_log eval
qr/connect\(\) to 192\.0\.2\.55:6380 failed/
--- no_error_log
not followed
[alert]
[crit]



=== TEST 3: a master a Sentinel names outside allow= is not connected to
--- http_config
    resend_confirmation_redis sentinel=mymaster 127.0.0.1:$TEST_NGINX_ROGUE_SENTINEL timeout=500ms allow=127.0.0.0/8;
--- config eval: $::Endpoint
--- request
POST /r
{"email":"sentinel-pivot@example.com"}
--- error_code: 503
--- error_log eval
qr/\[error\] .*Sentinel 127\.0\.0\.1:\d+ names the master 192\.0\.2\.66:6379, outside allow=: not followed/
--- no_error_log eval
[qr/connect\(\) to 192\.0\.2\.66/, '[alert]', '[crit]']



=== TEST 4: allow= is for sentinel= and cluster, and takes networks
--- http_config
    resend_confirmation_redis 127.0.0.1:6379 allow=10.0.0.0/8;
--- config eval: $::Endpoint
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "allow=10\.0\.0\.0\/8"/
--- no_error_log
[alert]



=== TEST 5: ... a network, not a word
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:6379 allow=10.0.0.0/8,,nowhere;
--- config eval: $::Endpoint
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "allow=10\.0\.0\.0\/8,,nowhere"/
--- no_error_log
[alert]
