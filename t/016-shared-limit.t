# Shared limits (resend_confirmation_shared_limit): per-address limits kept
# in Redis and checked by the script that records, so that they hold across
# every node sharing the Redis. Three nginx nodes (the harness's and two of
# t/Fleet.pm's) share one Redis and one secret file; 3,000 requests for one
# victim come from 1,000 client addresses (X-Forwarded-For through
# real_ip), spread over the nodes. (The issue's 10,000 are scaled to 3,000
# to keep the file under ~20 s; the property is the same.)
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use t::Fleet;

$ENV{TEST_NGINX_CLUSTER_PORT} = $ENV{TEST_NGINX_REDIS_PORT} + 5;
our $Secret = "$t::Fleet::Dir/secret.key";
open my $key, '>', $Secret or die $!;
print $key "0123456789abcdef0123456789abcdef\n";
close $key;

# As nginx.conf.example (client zone 10r/m burst 5, silent email zone 3r/h
# burst 2), the client address from X-Forwarded-For.
our $Http = <<"_EOC_";
    $t::Resend::Redis
    resend_confirmation_limit_secret $Secret;
    set_real_ip_from 127.0.0.1;
    real_ip_header X-Forwarded-For;
    resend_confirmation_limit_zone \$binary_remote_addr zone=client:10m rate=10r/m;
    resend_confirmation_limit_zone \$resend_confirmation_email zone=email:10m rate=3r/h;
    resend_confirmation_limit_zone \$resend_confirmation_client_prefix zone=prefix:1m rate=1r/m;
    resend_confirmation_limit_zone \$binary_remote_addr zone=address:1m rate=1r/m;
_EOC_

sub locations {
    my $shared = shift // '';
    return <<"_EOC_";
        location = /r {
            resend_confirmation;
            resend_confirmation_limit zone=client burst=5;
            resend_confirmation_limit zone=email burst=2 silent;
            $shared
            add_header X-Outcome \$resend_confirmation_outcome always;
        }
        location = /prefix {
            resend_confirmation;
            resend_confirmation_limit zone=prefix burst=2;
            add_header X-Outcome \$resend_confirmation_outcome always;
        }
        location = /prefix48 {
            resend_confirmation;
            resend_confirmation_client_prefix ipv6=48;
            resend_confirmation_limit zone=prefix burst=2;
        }
        location = /address {
            resend_confirmation;
            resend_confirmation_limit zone=address burst=2;
        }
_EOC_
}

# TEST 17: a Redis (in Perl: a real one cannot be made to answer late at
# a given step) that answers its first EVALSHA with NOSCRIPT after 1 s,
# the EVAL after 1.5 s more, anything else at once.
$ENV{TEST_NGINX_SLOW_REDIS} = $ENV{TEST_NGINX_REDIS_PORT} + 6;
our $SlowRedis;
sub slow_noscript {
    my $scripts = 0;
    $SlowRedis //= t::Resend::fake_redis($ENV{TEST_NGINX_SLOW_REDIS}, sub {
        my ($connection, $command) = @_;
        $command = uc $command;
        return t::Resend::bulk('0' x 40) unless $command eq 'EVALSHA' || $command eq 'EVAL';
        return t::Resend::bulk('1-' . $scripts) if $scripts++ >= 2;
        select undef, undef, undef, $command eq 'EVALSHA' ? 1 : 1.5;
        return $command eq 'EVALSHA' ? "-NOSCRIPT No matching script. Please use EVAL.\r\n" : t::Resend::bulk('1-1');
    });
    # A: NOSCRIPT at 1 s, its EVAL due at 2 s (not 3 s), answered at 2.5 s.
    # B: sent at 1.4 s, behind A's EVAL; answered with it, not failed with it.
    my $a = t::Resend::timed_post('/r', '{"email":"late@example.com"}');
    select undef, undef, undef, 1.4;
    my $b = t::Resend::timed_post('/r', '{"email":"behind@example.com"}');
    return (t::Resend::timed_result($a), t::Resend::timed_result($b));
}
END { kill 'KILL', $SlowRedis if $SlowRedis }

our $Email = 'resend_confirmation_shared_limit $resend_confirmation_email rate=3r/h burst=2;';
our $Mailbox = 'resend_confirmation_shared_limit $resend_confirmation_mailbox rate=3r/h burst=2;';

# Starts nodes 1 and 2 with the block's config (node 0 is the harness's).
sub fleet { my $shared = shift; start_node($_, $Http, locations($shared)) for 1, 2 }

sub victim_posts { fleet_posts([0, 1, 2], shift // 3000, sub { 'victim@example.com' }) }

# A location with the shared limit alone (no local email zone before it).
sub only_shared {
    my $shared = shift;
    return <<"_EOC_";
        location = /s {
            resend_confirmation;
            $shared
            add_header X-Outcome \$resend_confirmation_outcome always;
        }
_EOC_
}

sub limit_keys { @{ t::Resend::redis('KEYS', 'resend_confirmation:limit:*') } }

sub post { "POST /r\n" . qq({"email":"$_[0]"}) }

resend_defaults(http_config => $Http, more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: without the shared limit (today): each node lets burst+1 through, 9 entries for 3 nodes
--- config eval: main::locations()
--- init
t::Resend::redis('FLUSHALL');
main::fleet();
main::victim_posts();
--- request eval
main::post('victim@example.com')
--- response_headers
X-Outcome: silenced
--- stream_len: 9



=== TEST 2: with it: burst+1 entries for the whole fleet, every answer the same 200, one key, not the address
--- config eval: main::locations($::Email)
--- init
t::Resend::redis('FLUSHALL');
main::fleet($::Email);
my $ok = main::victim_posts();
die "only $ok of 3000 answered 200\n" unless $ok == 3000;
my @keys = main::limit_keys();
die "keys: @keys\n" unless @keys == 1 && $keys[0] =~ /\Aresend_confirmation:limit:\{resend_confirmation\}:[0-9a-f]{32}\z/;
my $ttl = t::Resend::redis('PTTL', $keys[0]);
die "pttl $ttl\n" unless $ttl > 3_500_000 && $ttl <= 3_600_000;  # drained in 3 x 20 minutes
--- request eval
main::post('victim@example.com')
--- response_body eval: $::Accepted
--- response_headers
X-Outcome: silenced
--- stream eval
[([email => 'victim@example.com', ip => qr/\A10\.0\.\d+\.\d+\z/, request_id => qr/\A[0-9a-f]{32}\z/,
   received_at => qr/\A\d{13}\z/]) x 3]
--- error_log eval
qr/\[error\] .*resend_confirmation: silencing requests by shared limit "\$resend_confirmation_email" rate=3r\/h/



=== TEST 3: a restart of every node keeps the counts (the buckets are in Redis, the secret in a file)
--- config eval: main::locations($::Email . "\n# restarted")
--- init
main::fleet($::Email);
my $ok = main::victim_posts(300);
die "only $ok of 300 answered 200\n" unless $ok == 300;
--- request eval
main::post('victim@example.com')
--- response_headers
X-Outcome: silenced
--- stream_len: 3



=== TEST 3b: silencing writes about as much as recording, and nothing anyone sees: each bucket as it was (value, expiry), a short stream without the request
--- config eval: main::locations($::Email) . main::only_shared($::Email)
--- init
t::Resend::redis('FLUSHALL');
t::Fleet::fleet_posts([0], 3, sub { 'quiet@example.com' }, '/s') == 3 or die "not 3 answered 200\n";
my ($key) = main::limit_keys();
my $value = t::Resend::redis('GET', $key);
select undef, undef, undef, 0.3;
my $ttl = t::Resend::redis('PTTL', $key);
t::Fleet::fleet_posts([0], 20, sub { 'quiet@example.com' }, '/s') == 20 or die "not 20 answered 200\n";
Test::More::is(t::Resend::redis('GET', $key), $value, 'the bucket holds what it held');
my $after = t::Resend::redis('PTTL', $key);
Test::More::ok($after > 0 && $after <= $ttl, "its expiry is where it was (PTTL $ttl, then $after)");
my $silence = 'resend_confirmation:silenced:{resend_confirmation}';
Test::More::is(t::Resend::redis('XLEN', $silence), 20, 'an entry in the silence stream per silenced request');
Test::More::is_deeply([map { @{ $_->[1] } } @{ t::Resend::redis('XRANGE', $silence, '-', '+') }],
                      [('limit', '1') x 20], 'each says which limit, nothing of the request');
Test::More::is(t::Resend::redis('XLEN', 'resend_confirmation'), 3, 'the stream has the 3 records only');
t::Fleet::fleet_posts([0], 230, sub { 'quiet@example.com' }, '/s') == 230 or die "not 230 answered 200\n";
my $len = t::Resend::redis('XLEN', $silence);
Test::More::ok($len <= 101, "the silence stream stays short (MAXLEN ~ 1: one node), $len entries after 250");
--- request eval
"POST /s\n" . '{"email":"quiet@example.com"}'
--- response_headers
X-Outcome: silenced
--- stream_len: 3



=== TEST 4: $resend_confirmation_mailbox: case, plus-tag and gmail-dot variants count as one mailbox; the record keeps them as sent
--- config eval: main::locations($::Mailbox)
--- init
t::Resend::redis('FLUSHALL');
main::fleet($::Mailbox);
my $ok = t::Fleet::fleet_posts([0, 1, 2], 3000, sub {
    my $i = shift;
    return $i % 3 == 0 ? "Victim+$i\@Example.com"
         : $i % 3 == 1 ? "victim+$i\@example.com"
         :               join('.', split //, 'victim') . "+$i\@" . ($i % 2 ? 'GoogleMail.com' : 'gmail.com');
});
die "only $ok of 3000 answered 200\n" unless $ok == 3000;
my @keys = main::limit_keys();
die "keys: @keys\n" unless @keys == 2;
--- request eval
main::post('V.ictim@gmail.com')
--- response_headers
X-Outcome: silenced
--- stream_len: 6



=== TEST 5: keys expire once drained (PX), and the next request passes again
--- config eval: main::locations('resend_confirmation_shared_limit $resend_confirmation_email rate=1r/s;')
--- init
t::Resend::redis('FLUSHALL');
my $ok = t::Fleet::fleet_posts([0], 2, sub { 'a@example.com' });
my ($key) = main::limit_keys();
my $ttl = t::Resend::redis('PTTL', $key);
die "pttl $ttl\n" unless $ttl > 0 && $ttl <= 1000;  # one request's drain at 1r/s
t::Resend::wait_for('the key to expire', 2, sub { !t::Resend::redis('EXISTS', $key) });
--- request eval
main::post('a@example.com')
--- response_headers
X-Outcome: accepted
--- stream_len: 2



=== TEST 6: NOSCRIPT after SCRIPT FLUSH: sent again in full, no request fails
--- config eval: main::locations($::Email)
--- init
t::Resend::redis('FLUSHALL');
t::Fleet::fleet_posts([0], 1, sub { 'first@example.com' });
t::Resend::redis('SCRIPT', 'FLUSH');
--- request eval
main::post('second@example.com')
--- response_headers
X-Outcome: accepted
--- stream_len: 2
--- error_log eval
qr/\[notice\] .*refused EVALSHA: NOSCRIPT/
--- no_error_log
[error]



=== TEST 6b: ... the EVAL loaded it again: the next ones go with EVALSHA and pass
--- init
--- request eval
[main::post('third@example.com'), main::post('third@example.com'), main::post('third@example.com')]
--- response_headers eval
["X-Outcome: accepted", "X-Outcome: accepted", "X-Outcome: accepted"]
--- stream_len: 5
--- no_error_log
[error]



=== TEST 7: the script is loaded on connect (SCRIPT LOAD after the handshake): the first EVALSHA finds it, no NOSCRIPT
--- config eval: main::locations($::Email)
--- init
t::Resend::redis('FLUSHALL');
t::Resend::redis('SCRIPT', 'FLUSH');
--- request eval
main::post('a@example.com')
--- response_headers
X-Outcome: accepted
--- stream_len: 1
--- no_error_log
NOSCRIPT
[error]



=== TEST 8: dry run: over the shared limit is recorded, dry_run_limited, and logged
--- config eval: main::locations("resend_confirmation_limit_dry_run on;\n" . 'resend_confirmation_shared_limit $resend_confirmation_email rate=1r/h;')
--- init
t::Resend::redis('FLUSHALL');
t::Fleet::fleet_posts([0], 1, sub { 'dry@example.com' });
--- request eval
main::post('dry@example.com')
--- response_headers
X-Outcome: dry_run_limited
--- stream_len: 2
--- error_log eval
qr/\[error\] .*resend_confirmation: dry run, silencing requests by shared limit "\$resend_confirmation_email" rate=1r\/h/



=== TEST 9: two shared limits on one key with other rates are two buckets; all must pass
--- config eval: main::locations('resend_confirmation_shared_limit $resend_confirmation_email rate=3r/h burst=2; resend_confirmation_shared_limit $resend_confirmation_email rate=2r/d burst=1;')
--- init
t::Resend::redis('FLUSHALL');
t::Fleet::fleet_posts([0], 2, sub { 'two@example.com' });
--- request eval
main::post('two@example.com')
--- response_headers
X-Outcome: silenced
--- stream_len: 2
--- error_log eval
qr/silencing requests by shared limit "\$resend_confirmation_email" rate=2r\/d/



=== TEST 10: Redis down: the failure policy applies as without shared limits (503, nothing silenced)
--- config eval
"resend_confirmation_redis 127.0.0.1:1;\n" . main::locations($::Email)
--- request eval
main::post('down@example.com')
--- error_code: 503
--- response_headers
X-Outcome: redis_error
--- no_error_log
[alert]



=== TEST 11: $resend_confirmation_client_prefix groups an IPv6 /64 (1,000 addresses of one /64: burst+1 pass), not IPv4 addresses
--- config eval: main::locations()
--- init
t::Resend::redis('FLUSHALL');
my $v6 = t::Fleet::fleet_posts([0], 1000, sub { ("p$_[0]\@example.com", sprintf '2001:db8:1:2::%x', $_[0] + 1) }, '/prefix');
my $per_address = t::Fleet::fleet_posts([0], 1000, sub { ("q$_[0]\@example.com", sprintf '2001:db8:5:6::%x', $_[0] + 1) }, '/address');
my $v4 = t::Fleet::fleet_posts([0], 10, sub { ("r$_[0]\@example.com", "10.1.1.$_[0]") }, '/prefix');
my $other = t::Fleet::fleet_posts([0], 10, sub { ("s$_[0]\@example.com", sprintf '2001:db8:1:%x::1', $_[0] + 3) }, '/prefix');
my $wide = t::Fleet::fleet_posts([0], 10, sub { ("t$_[0]\@example.com", sprintf '2001:db8:9:%x::1', $_[0] + 3) }, '/prefix48');
die "one /64: $v6 of 1000 passed, expected 3\n" unless $v6 == 3;
die "per address: $per_address of 1000 passed, expected 1000\n" unless $per_address == 1000;
die "IPv4 /32: $v4 of 10 passed, expected 10\n" unless $v4 == 10;
die "other /64s: $other of 10 passed, expected 10\n" unless $other == 10;
die "one /48 (ipv6=48): $wide of 10 passed, expected 3\n" unless $wide == 3;
--- request eval
main::post('last@example.com')
--- response_headers
X-Outcome: accepted
--- stream_len: 1027



=== TEST 12: a shared limit without resend_confirmation_limit_secret is refused, naming its file:line
--- http_config eval: $t::Resend::Redis
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_shared_limit $resend_confirmation_mailbox rate=3r/h;
    }
--- must_die
--- no_error_log
[alert]
--- error_log eval
qr/\[emerg\] .*"resend_confirmation_shared_limit" needs "resend_confirmation_limit_secret FILE" \(the same secret on every node that shares the Redis\) in \S+nginx\.conf:\d+/



=== TEST 13: a burst the script cannot count exactly is refused
--- config eval: main::locations('resend_confirmation_shared_limit $resend_confirmation_email rate=1r/d burst=100001;')
--- must_die
--- no_error_log
[alert]
--- error_log eval
qr/\[emerg\] .*invalid burst "burst=100001": 0 to 100000 in \S+nginx\.conf:\d+/



=== TEST 14: a shared limit needs rate=
--- config eval: main::locations('resend_confirmation_shared_limit $resend_confirmation_email burst=1;')
--- must_die
--- no_error_log
[alert]
--- error_log eval
qr/\[emerg\] .*"resend_confirmation_shared_limit" needs "rate=" in \S+nginx\.conf:\d+/



=== TEST 15: Redis Cluster (one master owning every slot): the script's keys share the stream's slot (no CROSSSLOT), the same result
--- config eval
"resend_confirmation_redis 127.0.0.1:$ENV{TEST_NGINX_CLUSTER_PORT};\n" . main::locations($::Mailbox)
--- init
my $port = $ENV{TEST_NGINX_CLUSTER_PORT};
t::Resend::start_redis($port, '--cluster-enabled', 'yes', '--dir', $t::Fleet::Dir,
                       '--cluster-config-file', "nodes-$port.conf");
t::Resend::redis({port => $port}, 'CLUSTER', 'ADDSLOTSRANGE', 0, 16383);
for (1 .. 100) {
    last if t::Resend::redis({port => $port}, 'CLUSTER', 'INFO') =~ /cluster_state:ok/;
    select undef, undef, undef, 0.1;
}
t::Resend::redis({port => $port}, 'FLUSHALL');
my $ok = t::Fleet::fleet_posts([0], 300, sub { 'Victim+' . shift() . '@example.com' });
die "only $ok of 300 answered 200\n" unless $ok == 300;
--- request eval
main::post('victim@example.com')
--- response_headers
X-Outcome: silenced
--- stream_port eval: $ENV{TEST_NGINX_CLUSTER_PORT}
--- stream_len: 3
--- no_error_log
[error] resend_confirmation: redis
CROSSSLOT



=== TEST 16: ... with a stream key that has a hash tag of its own, the limit keys take that tag
--- config eval
"resend_confirmation_redis 127.0.0.1:$ENV{TEST_NGINX_CLUSTER_PORT};\nresend_confirmation_stream \"{edge}:resend\";\n" . main::locations($::Mailbox)
--- init
t::Resend::redis({port => $ENV{TEST_NGINX_CLUSTER_PORT}}, 'FLUSHALL');
my $ok = t::Fleet::fleet_posts([0], 30, sub { 'victim@example.com' });
my $keys = t::Resend::redis({port => $ENV{TEST_NGINX_CLUSTER_PORT}}, 'KEYS', 'resend_confirmation:limit:*');
die "keys: @$keys\n" unless @$keys == 1 && $keys->[0] =~ /\Aresend_confirmation:limit:\{edge\}:[0-9a-f]{32}\z/;
--- request eval
main::post('victim@example.com')
--- response_headers
X-Outcome: silenced
--- stream_port eval: $ENV{TEST_NGINX_CLUSTER_PORT}
--- stream_key: {edge}:resend
--- stream_len: 3
--- no_error_log
[error] resend_confirmation: redis
CROSSSLOT



=== TEST 17: NOSCRIPT late in the request's timeout: the EVAL sent then keeps the request's deadline (answered at 2 s, not 2 s after the NOSCRIPT), and is answered alone: a request behind it on the link is not failed with it
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:$TEST_NGINX_SLOW_REDIS timeout=2s;
        resend_confirmation_shared_limit $resend_confirmation_email rate=3r/h burst=2;
        add_header X-Outcome $resend_confirmation_outcome always;
        add_header X-Request-Time $request_time always;
    }
--- init
my ($a_time, $a_status, $a_response, $b_time, $b_status, $b_response) = main::slow_noscript();
Test::More::is($a_status, 503, 'A: no reply in its time: 503');
Test::More::like($a_response, qr/^X-Outcome: redis_timeout/mi, 'A: redis_timeout');
Test::More::cmp_ok($a_time, '>=', 1.95, 'A: its whole 2 s');
Test::More::cmp_ok($a_time, '<=', 2.3, 'A: answered at its deadline, not 2 s after the NOSCRIPT');
Test::More::is($b_status, 200, 'B: answered once the EVAL before it was, not failed with it');
--- request eval
"POST /r\n" . '{"email":"after@example.com"}'
--- error_code: 200
--- error_log eval
qr/\[error\] .*redis 127\.0\.0\.1:\d+: no reply in time to a command sent again with what was left of its request's time/
--- no_error_log
[alert]
[crit]



=== TEST 18: one rate spelled two ways (3r/h here, 03r/h on nodes 1 and 2) is one budget: burst+1 entries for the fleet; the bucket is named as 3r/h's always was (an upgraded fleet keeps its counts)
--- config eval: main::locations($::Email)
--- init
t::Resend::redis('FLUSHALL');
(my $zeros = $::Email) =~ s/rate=3r\/h/rate=03r\/h/ or die "no rate=3r/h in $::Email\n";
main::fleet($zeros);
my $ok = main::victim_posts(300);
die "only $ok of 300 answered 200\n" unless $ok == 300;
require Digest::SHA;
my $identity = join "\0", '$resend_confirmation_email', '3r/h', 'victim@example.com';
my $name = 'resend_confirmation:limit:{resend_confirmation}:'
         . substr(Digest::SHA::hmac_sha256_hex($identity, '0123456789abcdef0123456789abcdef'), 0, 32);
Test::More::is_deeply([main::limit_keys()], [$name], "one bucket, the one 3r/h's identity names");
--- request eval
main::post('victim@example.com')
--- response_headers
X-Outcome: silenced
--- stream_len: 3
