# A Redis Cluster that speaks TLS, as managed Redis services run it: three
# masters with --tls-port, --tls-cluster and certificates this test makes.
# The directive names one node's TLS port; CLUSTER SLOTS and MOVED, asked
# over TLS, name the other nodes' TLS ports, and every link to them is TLS
# with the same settings (CA, name check). The plain ports are only for the
# test's own checks.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use t::Cluster ();
use File::Temp ();

our @Ports = map { $ENV{TEST_NGINX_REDIS_PORT} + $_ } 60 .. 62;
our %Tls = map { $_ => $_ + 3 } @Ports;
our $Dir = File::Temp::tempdir(CLEANUP => 1);
our $Key = 'resend_confirmation';
$ENV{TEST_NGINX_TLS_DIR} = $Dir;
t::Resend::tls_certificates($Dir);

t::Cluster::start(\@Ports, $Dir, sub {
    ('--tls-port', $Tls{ $_[0] }, '--tls-cluster', 'yes', '--tls-replication', 'yes',
     '--tls-cert-file', "$Dir/server.crt", '--tls-key-file', "$Dir/server.key",
     '--tls-ca-cert-file', "$Dir/ca.crt", '--tls-auth-clients', 'no')
});

# The stream's slot is served by $Owner; the directive names another node.
our $Slot = t::Cluster::node($Ports[0], 'CLUSTER', 'KEYSLOT', $Key);
our $Owner = t::Cluster::owner($Ports[0], $Slot);
our ($Other) = grep { $_ != $Owner } @Ports;
$ENV{TEST_NGINX_OTHER_TLS} = $Tls{$Other};

our $Location = <<'_EOC_';
    location = /r {
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
_EOC_

sub posts { [map { "POST /r\n" . qq({"email":"tls$_\@example.com"}) } 1 .. shift] }

resend_defaults(more_headers => "Content-Type: application/json",
                init => 't::Cluster::node($_, "FLUSHALL") for @main::Ports');

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the directive names another node's TLS port: every record on the slot's owner (nginx knows only TLS ports: a plain one would fail the handshake), the CA and name checked
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_OTHER_TLS tls tls_ca=$TEST_NGINX_TLS_DIR/ca.crt;
--- config eval: $::Location
--- pipelined_requests eval: main::posts(20)
--- error_code eval: [(200) x 20]
--- stream_port eval: $main::Owner
--- stream_len: 20
--- no_error_log
[alert]
[crit]



=== TEST 2: a CA that did not sign the nodes' certificates: nothing is written, 503, and the log says why
--- http_config
    resend_confirmation_redis cluster 127.0.0.1:$TEST_NGINX_OTHER_TLS tls tls_ca=$TEST_NGINX_TLS_DIR/other-ca.crt;
--- config eval: $::Location
--- request eval: main::posts(1)->[0]
--- error_code: 503
--- stream_port eval: $main::Owner
--- stream_len: 0
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+: TLS certificate verify error/
