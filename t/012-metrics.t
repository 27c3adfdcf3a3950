# Metrics: counters in shared memory, exact across two workers and kept
# across a reload, answered in Prometheus text format by
# `resend_confirmation_metrics;` (checked with promtool where it is
# installed), and $resend_confirmation_redis_time.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

master_on();
workers(2);

our $Config = <<'_EOC_';
    location = /r {
        resend_confirmation;
        resend_confirmation_metrics_name resend;
        add_header X-Redis-Time $resend_confirmation_redis_time always;
    }
    location = /other {
        resend_confirmation;
    }
    location = /metrics {
        resend_confirmation_metrics;
    }
_EOC_

sub post { my ($uri, $email) = @_; "POST $uri\n" . qq({"email":"$email"}) }

# The scrape as a hash: "name{labels}" => value.
sub scrape { t::Resend::metrics() }

# Blocks without a config keep the previous block's nginx and its counters.
resend_defaults(more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: requests of every kind, over new connections to two workers
--- config eval: $::Config
--- request eval
[main::post("/r", 'a1@example.com'), main::post("/r", 'a2@example.com'),
 main::post("/r", 'a3@example.com'), main::post("/r", 'not an address'),
 main::post("/r", 'nor@this'), "POST /r\n{oops", "GET /r", main::post("/other", 'b1@example.com')]
--- error_code eval
[200, 200, 200, 400, 400, 400, 405, 200]
--- raw_response_headers_like eval
["X-Redis-Time: \\d+\\.\\d{3}\r\n", "", "", "", "", "", "", ""]
--- response_headers eval
["", "", "", "!X-Redis-Time", "!X-Redis-Time", "!X-Redis-Time", "!X-Redis-Time", ""]
--- stream_len: 4



=== TEST 2: the scrape counts each request once, by location name and outcome, whichever worker answered
--- request
GET /metrics
--- error_code: 200
--- response_headers
Content-Type: text/plain; version=0.0.4; charset=utf-8
--- response_body_like eval
qr/^resend_confirmation_requests_total\{location="resend",outcome="accepted"\}[ ]3\n
   .*^resend_confirmation_requests_total\{location="resend",outcome="method_not_allowed"\}[ ]1\n
   .*^resend_confirmation_requests_total\{location="resend",outcome="invalid_json"\}[ ]1\n
   .*^resend_confirmation_requests_total\{location="resend",outcome="invalid_email"\}[ ]2\n
   .*^resend_confirmation_requests_total\{location="resend",outcome="redis_error"\}[ ]0\n
   .*^resend_confirmation_requests_total\{location="\/other",outcome="accepted"\}[ ]1\n
   .*^resend_confirmation_redis_up\{redis="127\.0\.0\.1:\d+"\}[ ][12]\n
   .*^resend_confirmation_redis_connects_total\{redis="127\.0\.0\.1:\d+"\}[ ][12]\n
   .*^resend_confirmation_redis_commands_in_flight\{redis="127\.0\.0\.1:\d+"\}[ ]0\n
   .*^resend_confirmation_redis_reply_seconds_count\{redis="127\.0\.0\.1:\d+"\}[ ]4\n/msx



=== TEST 3: every sample is one of the families, and promtool accepts the text
--- init
my $text = `curl -sS http://127.0.0.1:$ENV{TEST_NGINX_SERVER_PORT}/metrics`;
die "empty scrape\n" unless length $text;
for my $line (split /\n/, $text) {
    next if $line =~ /^# (?:HELP|TYPE) resend_confirmation_[a-z_]+ /;
    die "not a sample: $line\n"
        unless $line =~ /^resend_confirmation_[a-z_]+(?:\{(?:[a-z_]+="(?:[^"\\]|\\.)*",?)+\})? \d+(?:\.\d+)?$/;
}
if (system("command -v promtool >/dev/null 2>&1") == 0) {
    open my $check, '|-', 'promtool check metrics' or die "promtool: $!\n";
    print $check $text;
    close $check or die "promtool check metrics refused the scrape\n";
} else {
    Test::More::diag("promtool not installed: format checked by the pattern only");
}
--- request
GET /metrics
--- error_code: 200



=== TEST 4: a reload keeps every count, and the new workers add to them
--- init
kill 'HUP', t::Resend::master_pid();
select undef, undef, undef, 1;
--- request eval
main::post("/r", 'after-reload@example.com')
--- error_code: 200



=== TEST 5: ... 4 accepted now
--- request
GET /metrics
--- response_body_like eval
qr/^resend_confirmation_requests_total\{location="resend",outcome="accepted"\}[ ]4\n/m



=== TEST 6: a Redis that is down: connect failures and the 503s are counted
--- config
    location = /down {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:1 connect_timeout=200ms;
    }
    location = /metrics {
        resend_confirmation_metrics;
    }
--- request eval
[main::post("/down", 'x1@example.com'), main::post("/down", 'x2@example.com'),
 "GET /metrics"]
--- error_code eval
[503, 503, 200]
--- response_body_like eval
["", "",
 qr/^resend_confirmation_requests_total\{location="\/down",outcome="redis_error"\}[ ]2\n
    .*^resend_confirmation_redis_up\{redis="127\.0\.0\.1:1"\}[ ]0\n
    .*^resend_confirmation_redis_connect_failures_total\{redis="127\.0\.0\.1:1"\}[ ][12]\n/msx]
--- no_error_log
[alert]
[crit]



=== TEST 7: a Redis error reply is counted by its first word
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_stream not_a_stream;
    }
    location = /metrics {
        resend_confirmation_metrics;
    }
--- init
t::Resend::redis("FLUSHALL");
t::Resend::redis("SET", "not_a_stream", "a string");
--- request eval
[main::post("/r", 'y1@example.com'), "GET /metrics"]
--- error_code eval
[503, 200]
--- response_body_like eval
["", qr/^resend_confirmation_redis_refusals_total\{redis="127\.0\.0\.1:\d+",error="WRONGTYPE"\}[ ]1\n/m]



=== TEST 8: the metrics location answers GET and HEAD only
--- config
    location = /metrics {
        resend_confirmation_metrics;
    }
--- request
POST /metrics
x
--- error_code: 405



=== TEST 9: --with-debug builds log each step of the flow, never the address
--- config
    location = /r {
        resend_confirmation;
    }
--- request eval
main::post("/r", 'Debug.Me@example.com')
--- error_code: 200
--- error_log eval
$t::Resend::NginxDebug
    ? [qr/resend_confirmation: method and media type pass/,
       qr/resend_confirmation: client limits: 0/,
       qr/resend_confirmation: body of 32 bytes parsed: accepted/,
       qr/resend_confirmation: email limits: 0/,
       qr/resend_confirmation: record sent to redis 127\.0\.0\.1:\d+/,
       qr/resend_confirmation: record stored after \d+ ms/,
       qr/resend_confirmation: answer 200 accepted/]
    : []
--- no_error_log eval
[qr/debug\.me/i, "[alert]", "[crit]"]



=== TEST 10: rate-limit zones: keys held, requests refused and silenced, keys evicted from a full zone
--- http_config eval
"$t::Resend::Redis
    resend_confirmation_limit_zone \$binary_remote_addr zone=by_client:1m rate=1r/m;
    resend_confirmation_limit_zone \$resend_confirmation_email zone=by_email:1m rate=1r/h;
    resend_confirmation_limit_zone \$resend_confirmation_email zone=small:32k rate=1r/h;"
--- config
    location = /client {
        resend_confirmation;
        resend_confirmation_limit zone=by_client;
    }
    location = /email {
        resend_confirmation;
        resend_confirmation_limit zone=by_email silent;
    }
    location = /small {
        resend_confirmation;
        resend_confirmation_limit zone=small silent;
    }
    location = /metrics {
        resend_confirmation_metrics;
    }
--- init
t::Resend::redis("FLUSHALL");
# 600 addresses through a 32k zone: it cannot hold them all
my ($ok, $sent) = t::Resend::load_posts(6, 100, "/small");
die "only $ok of $sent load requests were answered 200\n" unless $ok == $sent;
--- request eval
[main::post("/client", 'c1@example.com'), main::post("/client", 'c2@example.com'),
 main::post("/email", 'same@example.com'), main::post("/email", 'same@example.com'),
 "GET /metrics"]
--- error_code eval
[200, 429, 200, 200, 200]
--- response_body_like eval
["", "", "", "",
 qr/^resend_confirmation_zone_keys\{zone="by_client"\}[ ]1\n
    .*^resend_confirmation_zone_keys\{zone="by_email"\}[ ]1\n
    .*^resend_confirmation_zone_keys\{zone="small"\}[ ][1-9]\d*\n
    .*^resend_confirmation_zone_evictions_total\{zone="by_client"\}[ ]0\n
    .*^resend_confirmation_zone_evictions_total\{zone="by_email"\}[ ]0\n
    .*^resend_confirmation_zone_evictions_total\{zone="small"\}[ ][1-9]\d*\n
    .*^resend_confirmation_zone_refused_total\{zone="by_client"\}[ ]1\n
    .*^resend_confirmation_zone_silenced_total\{zone="by_email"\}[ ]1\n/msx]



=== TEST 11: what the fleet-wide limit script answered
--- http_config eval
"$t::Resend::Redis
    resend_confirmation_limit_secret $ENV{TEST_NGINX_SERVER_ROOT}/html/secret;"
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_shared_limit $resend_confirmation_mailbox rate=1r/h;
    }
    location = /metrics {
        resend_confirmation_metrics;
    }
--- user_files
>>> secret
0123456789abcdef0123456789abcdef
--- request eval
[main::post("/r", 'fleet@example.com'), main::post("/r", 'Fleet+x@example.com'),
 main::post("/r", 'other@example.com'), "GET /metrics"]
--- error_code eval
[200, 200, 200, 200]
--- response_body_like eval
["", "", "",
 qr/^resend_confirmation_shared_limit_total\{result="recorded"\}[ ]2\n
    ^resend_confirmation_shared_limit_total\{result="silenced"\}[ ]1\n
    ^resend_confirmation_shared_limit_total\{result="dry_run_limited"\}[ ]0\n/msx]
