# Rate limits in shared memory, with two worker processes and a new
# connection per request: burst+1 then 429 with Retry-After, silent per-email
# limits that answer the very same 200 and record nothing, one entry for
# many parallel requests, state across reloads, tiny zones, dry run, and the
# quota given back when Redis fails.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

master_on();
workers(2);

our $OwnPort = $ENV{TEST_NGINX_REDIS_PORT} + 3;
$ENV{TEST_NGINX_OWN_REDIS_PORT} = $OwnPort;

our $Zones = <<"_EOC_";
    $t::Resend::Redis
    resend_confirmation_limit_zone \$binary_remote_addr zone=client:1m rate=10r/m;
    resend_confirmation_limit_zone \$binary_remote_addr zone=per_minute:1m rate=1r/m;
    resend_confirmation_limit_zone \$resend_confirmation_email zone=email:1m rate=3r/h;
    resend_confirmation_limit_zone \$resend_confirmation_email zone=tiny:32k rate=1r/d;
_EOC_

our $Locations = <<'_EOC_';
    location = /client {
        resend_confirmation;
        resend_confirmation_limit zone=per_minute burst=2;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
    location = /email {
        resend_confirmation;
        resend_confirmation_limit zone=email silent;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
    location = /tiny {
        resend_confirmation;
        resend_confirmation_limit zone=tiny silent;
    }
_EOC_

sub post { my ($uri, $email) = @_; "POST $uri\n" . qq({"email":"$email"}) }

# Rewrites the running nginx.conf with $edit (a sub on its text), then
# reloads and waits for the reload to be over.
sub reload_with {
    my $edit = shift;
    my $conf = server_root() . '/conf/nginx.conf';
    open my $in, '<', $conf or die $!;
    my $text = $edit->(do { local $/; <$in> });
    close $in;
    open my $out, '>', $conf or die $!;
    print $out $text;
    close $out;
    kill 'HUP', master_pid();
    select undef, undef, undef, 1;
}

# $text with the marker header of the refused-reload tests set to $what
# (X-Reloaded: $what in location /own), or taken out (undef): a reload that
# should have been refused but went through shows the header.
sub mark {
    my ($text, $what) = @_;
    $text =~ s/\n\s*add_header X-Reloaded \S+ always;//;
    return $text unless defined $what;
    $text =~ s/(location = \/own \{)/$1\n        add_header X-Reloaded $what always;/ or die "no /own";
    return $text;
}

# No default config: blocks without one keep the previous block's nginx
# (and its zones), which the state tests rely on.
resend_defaults(http_config => $Zones, more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a client zone: exactly burst+1 pass, then 429 rate_limited with Retry-After
--- config eval: $::Locations
--- request eval
[map { main::post("/client", "user$_\@example.com") } 1 .. 5]
--- error_code eval
[200, 200, 200, 429, 429]
--- response_headers eval
["X-Outcome: accepted", "X-Outcome: accepted", "X-Outcome: accepted",
 "X-Outcome: client_limited\nContent-Type: application/json\nCache-Control: no-store",
 "X-Outcome: client_limited"]
--- raw_response_headers_like eval
# 1r/m, burst 2, three passes within a second or two: one more in ~60 s
["", "", "", "Retry-After: (?:5[89]|60)\r\n", "Retry-After: (?:5[89]|60)\r\n"]
--- response_body eval
[$::Accepted, $::Accepted, $::Accepted,
 '{"error":{"code":"rate_limited","message":"Too many requests; retry later."}}',
 '{"error":{"code":"rate_limited","message":"Too many requests; retry later."}}']
--- stream_len: 3



=== TEST 2: ... the refusal is logged at [error] with the zone and the excess it would have made (over burst 2), as limit_req does
--- request eval
main::post("/client", 'user6@example.com')
--- error_code: 429
--- error_log eval
qr/\[error\] .*resend_confirmation: limiting requests by zone "per_minute", excess: (?:2\.(?!000)\d{3}|3\.000),/



=== TEST 3: a silent email zone: one entry for an address, none for its repeats or case variants, the same bytes
--- config eval: $::Locations
--- request eval
[main::post("/email", 'first@example.com'), main::post("/email", 'First@Example.COM'),
 main::post("/email", 'first@example.com'), main::post("/email", 'other@example.com')]
--- error_code eval
[200, 200, 200, 200]
--- response_headers eval
["X-Outcome: accepted", "X-Outcome: silenced", "X-Outcome: silenced", "X-Outcome: accepted"]
--- response_body eval
[($::Accepted) x 4]
--- stream eval
[[email => 'first@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
  received_at => qr/\A\d{13}\z/],
 [email => 'other@example.com', ip => '127.0.0.1', request_id => qr/\A[0-9a-f]{32}\z/,
  received_at => qr/\A\d{13}\z/]]
--- no_error_log eval
[qr/\[(?:info|notice|warn|error)\].*first\@example\.com/i, "[alert]", "[crit]"]



=== TEST 4: twenty parallel requests for one new address record exactly one entry
--- init
t::Resend::redis("FLUSHALL");
my ($ok, $sent) = t::Resend::load_posts(20, 1, "/email", 'parallel@example.com');
die "only $ok of $sent parallel requests were answered 200\n" unless $ok == $sent;
--- request eval
main::post("/email", 'parallel@example.com')
--- error_code: 200
--- response_headers
X-Outcome: silenced
--- stream_len: 1
--- error_log eval
qr/\[error\] .*resend_confirmation: silencing requests by zone "email", excess: /



=== TEST 5: the zones keep their state across a reload
--- init
t::Resend::redis("FLUSHALL");
kill 'HUP', main::master_pid();
select undef, undef, undef, 1;
--- request eval
main::post("/email", 'first@example.com')
--- error_code: 200
--- response_headers
X-Outcome: silenced
--- stream_len: 0
--- error_log
reconfiguring



=== TEST 6: a tiny zone with thousands of addresses keeps answering 200 (it forgets the oldest)
--- init
t::Resend::redis("FLUSHALL");
my ($ok, $sent) = t::Resend::load_posts(10, 200, "/tiny");
die "only $ok of $sent requests were answered 200\n" unless $ok == $sent;
--- request eval
main::post("/tiny", 'last@example.com')
--- error_code: 200
--- stream_len: 2001
--- timeout: 30



=== TEST 7: dry run: everything goes through, the log and the variable say what would have been refused
--- config
    location = /dry {
        resend_confirmation;
        resend_confirmation_limit zone=client;
        resend_confirmation_limit zone=email silent;
        resend_confirmation_limit_dry_run on;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
[main::post("/dry", 'dry@example.com'), main::post("/dry", 'dry@example.com'),
 main::post("/dry", 'dry2@example.com')]
--- error_code eval
[200, 200, 200]
--- response_headers eval
["X-Outcome: accepted", "X-Outcome: dry_run_limited", "X-Outcome: dry_run_limited"]
--- stream_len: 3



=== TEST 8: ... and the log says so
--- request eval
main::post("/dry", 'dry@example.com')
--- error_code: 200
--- response_headers
X-Outcome: dry_run_limited
--- error_log eval
[qr/resend_confirmation: dry run, limiting requests by zone "client"/,
 qr/resend_confirmation: dry run, silencing requests by zone "email"/]



=== TEST 9: a custom status and log level for refusals
--- config
    location = /status {
        resend_confirmation;
        resend_confirmation_limit zone=client;
        resend_confirmation_limit_status 503;
        resend_confirmation_limit_log_level warn;
    }
--- init
t::Resend::redis("FLUSHALL");
for my $email ('a@example.com', 'b@example.com') {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984) or die;
    my $body = qq({"email":"$email"});
    print $sock "POST /status HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    my $response = do { local $/; <$sock> };
}
--- request eval
main::post("/status", 'c@example.com')
--- error_code: 503
--- response_body chomp
{"error":{"code":"rate_limited","message":"Too many requests; retry later."}}
--- error_log eval
qr/\[warn\] .*resend_confirmation: limiting requests by zone "client"/



=== TEST 10: a request refused because Redis failed gives its email quota back
--- config
    location = /own {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT connect_timeout=300ms timeout=300ms;
        resend_confirmation_limit zone=email silent;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
main::post("/own", 'refund@example.com')
--- error_code: 503
--- response_headers
X-Outcome: redis_error



=== TEST 11: ... so that the address is recorded once Redis is back, not silenced
--- init
t::Resend::start_redis($main::OwnPort);
select undef, undef, undef, 2.5;
--- request eval
main::post("/own", 'refund@example.com')
--- error_code: 200
--- response_headers
X-Outcome: accepted
--- stream_port eval: $::OwnPort
--- stream_len: 1



=== TEST 12: a reload that changes a zone's key is refused, and the old configuration goes on
--- init
main::reload_with(sub { my $text = $_[0];
                        $text =~ s/\$binary_remote_addr zone=client:1m/\$http_x_client zone=client:1m/ or die "no zone";
                        main::mark($text, "key") });
--- request eval
main::post("/own", 'still@example.com')
--- error_code: 200
--- response_headers
!X-Reloaded
--- error_log eval
qr/\[emerg\] .*resend_confirmation_limit_zone "client" uses the "\$http_x_client" key while previously it used the "\$binary_remote_addr" key: a zone's key changes only with a restart, not a reload/
--- no_error_log
[alert]
[crit]



=== TEST 13: a reload that changes a zone's size is refused
--- init
main::reload_with(sub { my $text = $_[0];
                        $text =~ s/limit_zone \S+ zone=client:1m/limit_zone \$binary_remote_addr zone=client:2m/ or die "no zone";
                        main::mark($text, "size") });
--- request eval
main::post("/own", 'still2@example.com')
--- error_code: 200
--- response_headers
!X-Reloaded
--- error_log eval
qr/\[emerg\] .*resend_confirmation_limit_zone "client" was 1048576 bytes and is now 2097152: a zone's size changes only with a restart, not a reload/
--- no_error_log
[alert]
[crit]



=== TEST 14: a reload that fails after the email zone was set up leaves the zone's key alone
--- init
my $root = server_root();
open my $key, '>', "$root/html/secret.key" or die $!;
print $key "a-secret-of-more-than-16-bytes\n";
close $key;
main::reload_with(sub {
    my $text = main::mark($_[0] =~ s/zone=client:2m/zone=client:1m/r, undef);
    # the next good reload: as before, plus a header that shows it took effect
    $main::Original = $text =~ s/(location = \/own \{)/$1\n        add_header X-Config second always;/r;
    # a secret, and a zone resized after the email zone: the reload fails late
    $text =~ s/(resend_confirmation_limit_zone \$resend_confirmation_email zone=email:1m)/resend_confirmation_limit_secret $root\/html\/secret.key;\n    $1/
        or die "no email zone";
    $text =~ s/zone=tiny:32k/zone=tiny:64k/ or die "no tiny zone";
    $text;
});
--- request eval
main::post("/own", 'refund@example.com')
--- error_code: 200
--- response_headers
X-Outcome: silenced
--- error_log eval
qr/\[emerg\] .*resend_confirmation_limit_zone "tiny" was 32768 bytes and is now 65536/
--- no_error_log
[alert]
[crit]



=== TEST 15: ... so that the next good reload still knows the address
--- init
main::reload_with(sub { $main::Original });
--- request eval
main::post("/own", 'refund@example.com')
--- error_code: 200
--- response_headers
X-Config: second
X-Outcome: silenced
--- no_error_log
[alert]
[crit]
