# Equal answers (issue 21): a request a limit silences cannot be told from
# one that is recorded, by its timing or its status, in every documented
# configuration: a local silent email zone alone, the zone with a shared
# limit, a shared limit alone; with Redis answering, and with Redis down
# under each failure policy.
#
# Timing: on one keep-alive connection, many short rounds, each one request
# for a silenced address and one for a fresh address in random order (so
# that drift of a loaded machine falls on both alike), then the best
# single-request guess from latency: the threshold, either way round, that
# guesses one half of the rounds best, judged on the other half (best_guess).
# For two equal distributions that is 50% give or take 1% (2,000 samples of
# each); a silenced request answered without its Redis round trip is
# guessed right 75-95% of the time.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use File::Temp ();
use IO::Socket::INET;
use List::Util ();
use Time::HiRes ();

our $Dir = File::Temp::tempdir(CLEANUP => 1);
our $Secret = "$Dir/secret.key";
open my $key, '>', $Secret or die $!;
print $key "0123456789abcdef0123456789abcdef\n";
close $key;
mkdir "$Dir/spool" or die $!;
chmod 0777, $Dir, "$Dir/spool";
# A port nothing listens on: Redis down.
$ENV{TEST_NGINX_DEAD_REDIS} = $ENV{TEST_NGINX_REDIS_PORT} + 27;

our $Rounds = $ENV{TEST_EQUAL_ROUNDS} || 2000;
our $MaxGuess = 0.55;

# As nginx.conf.example: the silent email zone 3r/h burst 2, the shared
# limit on the mailbox; the log as there (notice, the zone's line at error).
our $Http = <<"_EOC_";
    $t::Resend::Redis
    resend_confirmation_limit_secret $Secret;
    resend_confirmation_limit_zone \$resend_confirmation_email zone=email:10m rate=3r/h;
    resend_confirmation_spool $Dir/spool fsync=off;
    keepalive_requests 100000;  # one connection for every round
_EOC_

our $Local = 'resend_confirmation_limit zone=email burst=2 silent;';
our $Shared = 'resend_confirmation_shared_limit $resend_confirmation_mailbox rate=3r/h burst=2;';

sub location {
    my ($uri, @lines) = @_;
    my $body = join "\n            ", @lines;
    return <<"_EOC_";
        location = $uri {
            resend_confirmation;
            $body
            add_header X-Outcome \$resend_confirmation_outcome always;
        }
_EOC_
}

our $Down = 'resend_confirmation_redis 127.0.0.1:$TEST_NGINX_DEAD_REDIS;';
our $Config = join '',
    location('/local', $Local), location('/both', $Local, $Shared), location('/shared', $Shared),
    map({ my $policy = $_;
          location("/down/$policy", $Down, $Local, "resend_confirmation_redis_failure $policy;"),
          location("/down-both/$policy", $Down, $Local, $Shared, "resend_confirmation_redis_failure $policy;") }
        qw(reject accept spool));

# One keep-alive connection to nginx.
sub connection {
    IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984)
        or die "cannot connect to nginx: $!\n";
}

# post($sock, $uri, $email): [status, outcome, seconds from the first byte
# written to the last read].
sub post {
    my ($sock, $uri, $email) = @_;
    my $body = qq({"email":"$email"});
    my $request = "POST $uri HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
    my $started = Time::HiRes::clock_gettime(Time::HiRes::CLOCK_MONOTONIC());
    syswrite $sock, $request;
    my $response = '';
    until ($response =~ /\r\n\r\n/ && length($response) >= $-[0] + 4 + ($response =~ /^Content-Length: (\d+)/mi)[0]) {
        sysread($sock, $response, 4096, length $response) or die "nginx closed the connection\n";
    }
    my $elapsed = Time::HiRes::clock_gettime(Time::HiRes::CLOCK_MONOTONIC()) - $started;
    my ($status) = $response =~ m{\AHTTP/1\.1 (\d+)};
    my ($outcome) = $response =~ /^X-Outcome: (\w+)/mi;
    return [$status, $outcome // '', $elapsed];
}

# The best single-request guess of `silenced` against `fresh` (lists of
# latencies, in rounds): the threshold, either way round, that guesses the
# rounds of one half best, as an attacker would learn it, judged on the
# other half, for both halves; the better of the two. (The best threshold
# judged on the samples it was chosen from would add the noise of a
# maximum, about 2% here.)
sub best_guess {
    my ($silenced, $fresh) = @_;
    my @half = map { my $h = $_; [[@$silenced[grep { $_ % 2 == $h } 0 .. $#$silenced]],
                                  [@$fresh[grep { $_ % 2 == $h } 0 .. $#$fresh]]] } 0, 1;
    return List::Util::max(map { guess_rate(@{ $half[1 - $_] }, best_threshold(@{ $half[$_] })) } 0, 1);
}

# [threshold, 1 when silenced is guessed below it]: the one that guesses
# `silenced` and `fresh` best.
sub best_threshold {
    my ($silenced, $fresh) = @_;
    my @all = sort { $a->[0] <=> $b->[0] } (map([$_, 1], @$silenced), map([$_, 0], @$fresh));
    my ($below_s, $below_f, $best, $rule) = (0, 0, -1, [0, 1]);
    for my $i (0 .. $#all) {
        $all[$i][1] ? ++$below_s : ++$below_f;
        next if $i < $#all && $all[$i + 1][0] == $all[$i][0];
        my $d = $below_s / @$silenced - $below_f / @$fresh;
        ($best, $rule) = (abs $d, [$all[$i][0], $d > 0 ? 1 : 0]) if abs $d > $best;
    }
    return $rule;
}

# How often `rule` guesses right, one request at a time.
sub guess_rate {
    my ($silenced, $fresh, $rule) = @_;
    my ($threshold, $below) = @$rule;
    my $right = grep({ ($_ <= $threshold) == $below } @$silenced) + grep({ ($_ <= $threshold) != $below } @$fresh);
    return $right / (@$silenced + @$fresh);
}

# The p10, p50 and p90 of `samples`, in microseconds.
sub quantiles {
    my @s = sort { $a <=> $b } @_;
    return join '/', map { sprintf '%.1f', 1e6 * $s[int($_ * $#s)] } 0.1, 0.5, 0.9;
}

# Silences victim@ at `uri` (3 recorded, then silenced), then `rounds` of one
# silenced and one fresh request in random order; checks every answer, and
# that timing does not tell them apart.
sub equal_timing {
    my ($uri, $rounds) = @_;
    my $sock = connection();
    my $tag = $uri =~ s{\W}{}gr;
    my $victim = "victim-$tag\@example.com";
    post($sock, $uri, $victim) for 1 .. 3;
    my $first = post($sock, $uri, $victim);
    die "$uri: the victim is not silenced ($first->[0] $first->[1])\n" unless "$first->[0] $first->[1]" eq '200 silenced';
    my (@silenced, @fresh, @wrong);
    for my $round (-100 .. $rounds) {  # the first 100 warm up
        my @pair = ([\@silenced, $victim, 'silenced'], [\@fresh, "fresh-$tag-$round\@example.com", 'accepted']);
        @pair = reverse @pair if rand() < 0.5;
        for (@pair) {
            my ($into, $email, $expected) = @$_;
            my $answer = post($sock, $uri, $email);
            push @wrong, "$email: @$answer[0, 1]" if "$answer->[0] $answer->[1]" ne "200 $expected";
            push @$into, $answer->[2] if $round > 0;
        }
    }
    Test::More::is(scalar(@wrong), 0, "$uri: every answer 200, as expected (@wrong[0 .. List::Util::min(2, $#wrong)])");
    my $guess = best_guess(\@silenced, \@fresh);
    my $line = sprintf "%s: p10/p50/p90 silenced %s us, fresh %s us; best guess %.1f%% of %d each",
                       $uri, quantiles(@silenced), quantiles(@fresh), 100 * $guess, $rounds;
    Test::More::diag($line);
    Test::More::cmp_ok($guess, '<=', $MaxGuess, "$uri: timing does not tell ($line)");
}

# Silences victim@ through the live `up` location (same zone, same
# shared-limit keys), then asks each of `downs` for it and for a fresh
# address: the same status each time.
sub equal_status {
    my ($up, @downs) = @_;
    my $sock = connection();
    my $victim = 'victim-down@example.com';
    post($sock, $up, $victim) for 1 .. 3;
    my $silenced = post($sock, $up, $victim);
    die "$up: the victim is not silenced\n" unless "$silenced->[0] $silenced->[1]" eq '200 silenced';
    for my $down (@downs) {
        for my $i (1 .. 3) {
            my $s = post($sock, $down, $victim);
            my $f = post($sock, $down, "fresh-$i\@example.com");
            Test::More::is($s->[0], $f->[0], "$down: the same status for a silenced and a fresh address ($s->[0] $s->[1], $f->[0] $f->[1])");
        }
    }
}

# Every spooled record's bytes.
sub spooled { join '', map { open my $in, '<:raw', $_ or die "$_: $!"; local $/; <$in> } glob "$Dir/spool/*.seg" }

resend_defaults(http_config => $Http, more_headers => "Content-Type: application/json",
                config => $Config);
log_level('notice');
no_shuffle();
run_tests();

__DATA__

=== TEST 1: a local silent email zone alone: timing does not tell a silenced address from a fresh one
--- init
t::Resend::redis("FLUSHALL");
main::equal_timing('/local', $::Rounds);
--- request
POST /local
{"email":"victim-local@example.com"}
--- response_headers
X-Outcome: silenced
--- response_body eval
$::Accepted



=== TEST 2: the local zone and a shared limit: timing does not tell
--- init
t::Resend::redis("FLUSHALL");
main::equal_timing('/both', $::Rounds);
--- request
POST /both
{"email":"victim-both@example.com"}
--- response_headers
X-Outcome: silenced
--- response_body eval
$::Accepted



=== TEST 3: a shared limit alone: timing does not tell
--- init
t::Resend::redis("FLUSHALL");
main::equal_timing('/shared', $::Rounds);
--- request
POST /shared
{"email":"victim-shared@example.com"}
--- response_headers
X-Outcome: silenced
--- response_body eval
$::Accepted



=== TEST 4: Redis down, a local zone: the same status for a silenced and a fresh address under reject, accept and spool; nothing of the silenced one spooled
--- init
t::Resend::redis("FLUSHALL");
main::equal_status('/local', map { "/down/$_" } qw(reject accept spool));
my $spooled = main::spooled();
Test::More::like($spooled, qr/fresh-1\@example\.com/, 'the fresh address is spooled');
Test::More::unlike($spooled, qr/victim/, 'the silenced one is not');
--- request
POST /down/reject
{"email":"victim-down@example.com"}
--- error_code: 503
--- response_headers
X-Outcome: redis_error



=== TEST 5: Redis down, a local zone and a shared limit: the same status under reject, accept and spool
--- init
t::Resend::redis("FLUSHALL");
main::equal_status('/both', map { "/down-both/$_" } qw(reject accept spool));
Test::More::unlike(main::spooled(), qr/victim/, 'the silenced address is not spooled');
--- request
POST /down-both/spool
{"email":"victim-down@example.com"}
--- response_headers
X-Outcome: silenced
--- response_body eval
$::Accepted
