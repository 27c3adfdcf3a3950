# Prometheus for real: Debian's prometheus scrapes the module's metrics
# location every second, with the shipped alerting rules loaded; after known
# traffic, each PromQL expression of the README (read from the README
# itself) gives the value that traffic means, through Prometheus's HTTP API,
# and the rules see what they are for (Redis unreachable, evicting zone).
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use Cwd ();
use File::Temp ();
use HTTP::Tiny;
use JSON::PP ();
use Time::HiRes ();

our $Config = <<'_EOC_';
    location = /r {
        resend_confirmation;
        resend_confirmation_metrics_name resend;
        resend_confirmation_limit zone=prom_email silent;
    }
    location = /evict {
        resend_confirmation;
        resend_confirmation_limit zone=prom_small silent;
    }
    location = /down {
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:1 connect_timeout=200ms;
    }
    location = /metrics {
        resend_confirmation_metrics;
    }
_EOC_

# The known traffic: at /r 5 addresses once and one 4 times (6 accepted, 3
# silenced) and 2 invalid; 400 addresses through a 32k zone at /evict (400
# accepted, some keys evicted); 2 at a Redis that is down (redis_error).
our @Traffic = ((map { ["/r", "p$_\@example.com", 200] } 1 .. 5),
                (map { ["/r", 'same@example.com', 200] } 1 .. 4),
                (map { ["/r", "not an address $_", 400] } 1 .. 2),
                (map { ["/down", "d$_\@example.com", 503] } 1 .. 2));
our $Evicted = 400;
our %Count = (total => @Traffic + $Evicted, accepted => 6 + $Evicted, silenced => 3,
              redis_error => 2);

our $Port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
our $Target = "127.0.0.1:$Port";
our ($Prometheus, $PromPid, $PromDir);
our $Http = HTTP::Tiny->new(timeout => 10);

# Prometheus on a free port, scraping this file's nginx every second.
sub start_prometheus {
    $PromDir = File::Temp::tempdir('resend-prometheus.XXXXXX', TMPDIR => 1, CLEANUP => 1);
    my $rules = Cwd::abs_path('examples/prometheus/resend-confirmation.rules.yml');
    open my $out, '>', "$PromDir/prometheus.yml" or die "$PromDir: $!\n";
    print $out <<"_EOC_";
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $rules
scrape_configs:
  - job_name: resend
    metrics_path: /metrics
    static_configs:
      - targets: ['$Target']
_EOC_
    close $out;
    my $port = t::Resend::free_port();
    $Prometheus = "http://127.0.0.1:$port";
    $PromPid = t::Resend::spawn_logged("$PromDir/prometheus.log", 'prometheus',
        "--config.file=$PromDir/prometheus.yml", "--storage.tsdb.path=$PromDir/data",
        "--web.listen-address=127.0.0.1:$port");
    wait_until(30, 'Prometheus is ready', sub { $Http->get("$Prometheus/-/ready")->{success} });
}

END { my $status = $?; t::Resend::stop_group($PromPid) if $PromPid; $? = $status }

# wait_until($seconds, $what, $check): t::Resend::wait_for, and the end of
# Prometheus's log when it times out.
sub wait_until {
    my ($seconds, $what, $check) = @_;
    eval { t::Resend::wait_for($what, $seconds, $check) } and return 1;
    my $log = do { local (@ARGV, $/) = ("$PromDir/prometheus.log"); <> } // '';
    die $@ . substr($log, -2000);
}

# query($promql [, $time]): the result of an instant query, as
# [[{labels}, value], ...] (value a number, or "NaN").
sub query {
    my ($promql, $time) = @_;
    my $res = $Http->get("$Prometheus/api/v1/query?"
                         . $Http->www_form_urlencode({ query => $promql, defined $time ? (time => $time) : () }));
    my $reply = eval { JSON::PP::decode_json($res->{content}) };
    die "query $promql: $res->{status} $res->{content}\n" unless $reply && $reply->{status} eq 'success';
    return [map { [$_->{metric}, $_->{value}[1]] } @{ $reply->{data}{result} }];
}

sub value_of {
    my ($promql) = @_;
    my $result = query($promql);
    return @$result == 1 ? $result->[0][1] : undef;
}

# The README's PromQL: {comment => expression}.
sub readme_expressions {
    my $readme = do { local (@ARGV, $/) = ('README.md'); <> };
    my ($block) = $readme =~ /^```promql\n(.*?)^```$/ms or die "README.md has no promql block\n";
    my %expr;
    for my $part (split /\n\s*\n/, $block) {
        my ($comment, $text) = $part =~ /\A# ([^\n]+)\n(.+)\z/s or die "not '# comment' + expression: $part\n";
        $expr{$comment} = $text =~ s/\s+/ /gr =~ s/\s+\z//r;
    }
    return \%expr;
}

sub close_to {
    my ($got, $want, $name) = @_;
    Test::More::ok(defined $got && $got ne 'NaN' && abs($got - $want) <= 1e-9 * abs($want), $name)
        or Test::More::diag("got " . ($got // 'nothing') . ", want $want");
}

# histogram_quantile(q, buckets) as Prometheus defines it, from cumulative
# counts {le => count}: the linear interpolation inside the bucket where
# the rank falls (the lowest bucket from 0; in +Inf the last finite bound).
sub quantile {
    my ($q, $buckets) = @_;
    my @le = sort { $a <=> $b } grep { $_ ne '+Inf' } keys %$buckets;
    my $count = $buckets->{'+Inf'};
    return 'NaN' unless $count;
    my $rank = $q * $count;
    my ($lower, $below) = (0, 0);
    for my $le (@le) {
        my $cum = $buckets->{$le};
        return $lower + ($le - $lower) * ($rank - $below) / ($cum - $below) if $cum >= $rank;
        ($lower, $below) = ($le, $cum);
    }
    return $le[-1];
}

our %Checks = (
    'share of requests refused because Redis could not take them' => sub {
        my ($expr, $time) = @_;
        my $r = query($expr, $time);
        close_to(@$r == 1 ? $r->[0][1] : undef, $Count{redis_error} / $Count{total},
                 "$Count{redis_error} redis_error of $Count{total}: $expr");
    },
    'share of valid requests silenced by a per-address limit' => sub {
        my ($expr, $time) = @_;
        my $r = query($expr, $time);
        my $valid = $Count{accepted} + $Count{silenced};
        close_to(@$r == 1 ? $r->[0][1] : undef, $Count{silenced} / $valid,
                 "$Count{silenced} silenced of $valid valid: $expr");
    },
    'a zone that forgets keys before they drain: make it bigger' => sub {
        my ($expr, $time) = @_;
        my $r = query($expr, $time);
        Test::More::is(join(' ', map { $_->[0]{zone} } @$r), 'prom_small', "the evicting zone alone: $expr");
        Test::More::cmp_ok($r->[0][1], '>', 0, 'its rate of evictions') if @$r;
    },
    'Redis p99 reply time, per address' => sub {
        my ($expr, $time) = @_;
        my %want;
        for (@{ query('resend_confirmation_redis_reply_seconds_bucket', $time) }) {
            $want{ $_->[0]{redis} }{ $_->[0]{le} } = $_->[1];
        }
        my %got = map { $_->[0]{redis} => $_->[1] } @{ query($expr, $time) };
        Test::More::is(join(' ', sort keys %got), join(' ', sort keys %want), "a quantile per address: $expr");
        for my $redis (sort keys %want) {
            my $quantile = quantile(0.99, $want{$redis});
            if ($quantile eq 'NaN') {
                Test::More::is($got{$redis}, 'NaN', "$redis answered nothing: no quantile");
            } else {
                close_to($got{$redis}, $quantile, "$redis: the 0.99 quantile of its buckets ($quantile s)");
            }
        }
    },
    'nodes whose workers cannot reach Redis' => sub {
        my ($expr, $time) = @_;
        my $r = query($expr, $time);
        Test::More::is(join(' ', map { "$_->[0]{instance} $_->[0]{redis} $_->[1]" } @$r), "$Target 127.0.0.1:1 0",
                       "the Redis that is down, on this node: $expr");
    },
);

resend_defaults(
    more_headers => "Content-Type: application/json",
    http_config => "$t::Resend::Redis
    resend_confirmation_limit_zone \$resend_confirmation_email zone=prom_email:1m rate=1r/h;
    resend_confirmation_limit_zone \$resend_confirmation_email zone=prom_small:32k rate=1r/h;",
);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: Prometheus scrapes the module before any traffic (every counter at 0), then the known traffic
--- config eval: $::Config
--- init
t::Resend::redis("FLUSHALL");
main::start_prometheus();
main::wait_until(30, 'a first scrape', sub {
    main::value_of(qq{up{job="resend"}}) == 1
        && main::value_of(qq{sum(resend_confirmation_requests_total)}) == 0 });
my ($ok, $sent) = t::Resend::load_posts(4, $::Evicted / 4, "/evict");
die "only $ok of $sent requests to /evict were answered 200\n" unless $ok == $sent;
--- request eval
[map { "POST $_->[0]\n" . qq({"email":"$_->[1]"}) } @::Traffic]
--- error_code eval
[map { $_->[2] } @::Traffic]



=== TEST 2: every PromQL expression of the README gives what that traffic means
--- init
main::wait_until(30, 'the scrape that saw all the traffic', sub {
    main::value_of('sum(resend_confirmation_requests_total)') == $::Count{total}
        && main::value_of('sum(resend_confirmation_zone_evictions_total)') > 0 });
my $time = Time::HiRes::time();
my $expressions = main::readme_expressions();
Test::More::is(join("\n", sort keys %$expressions), join("\n", sort keys %::Checks),
               'the README lists the expressions this file checks');
for my $comment (sort keys %$expressions) {
    my $check = $::Checks{$comment} or next;
    $check->($expressions->{$comment}, $time);
}
--- request
GET /metrics
--- error_code: 200



=== TEST 3: the shipped rules, loaded by Prometheus, see the Redis that is down and the zone that evicts
--- init
my %want = (ResendConfirmationRedisUnreachable => '127.0.0.1:1', ResendConfirmationZoneEvicting => 'prom_small');
main::wait_until(30, 'the alerts ' . join(', ', sort keys %want), sub {
    my $reply = JSON::PP::decode_json($::Http->get("$::Prometheus/api/v1/alerts")->{content});
    my %seen = map { ($_->{labels}{alertname} => $_->{labels}{redis} // $_->{labels}{zone}) }
               @{ $reply->{data}{alerts} };
    return !grep { ($seen{$_} // '') ne $want{$_} } keys %want;
});
Test::More::pass('the rules fired (or are pending) for the Redis that is down and the evicting zone');
--- request
GET /metrics
--- error_code: 200
