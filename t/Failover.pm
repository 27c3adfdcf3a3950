# Load + fault + count, for the failover tests (t/022-redis-sentinel-failover.t,
# t/023-redis-cluster-failover.t): a load client of the test's own runs
# while a test breaks Redis; afterwards every answer 200 that nginx logged
# is looked up in the final master's stream, by its $request_id.
#
# - start_load(%o) / stop_load($load): keep-alive POSTs, each with an email of
#   its own, at a target rate, from a child process, until stopped;
# - access_log(): the log_format and access_log lines a location needs
#   (the harness's server root, one line per answer: when nginx answered,
#   how long it took, $request_id, $status, the outcome);
# - answers(): that log read back; lost(\@answers, \%stream_ids): the 200s
#   whose record is not in the stream; windows(\@answers, @marks): the
#   answers not accepted (503, spooled) after each fault;
# - report(): the figures of a run printed, and the 200s checked;
# - stream_ids($port, $key): every request_id of a stream, read in pages;
# - spool_drained($dir, $seconds): waits until the spool holds no segment.
package t::Failover;

use strict;
use warnings;
use Exporter 'import';
use File::Temp ();
use IO::Select;
use IO::Socket::INET;
use POSIX ();
use Socket qw(IPPROTO_TCP TCP_NODELAY);
use Test::More ();
use Time::HiRes ();
use t::Resend ();

our @EXPORT_OK = qw(start_load stop_load access_log location answers lost windows stream_ids
                    spool_drained report scenario replicas_param defaults);

our $Dir = File::Temp::tempdir(CLEANUP => 1);

# The acknowledgement parameter the tests configure: "replicas=1" unless
# T_REPLICAS_PARAM says otherwise ("" runs the scenarios on a module that
# does not know the parameter, to show what they catch there).
sub replicas_param { $ENV{T_REPLICAS_PARAM} // 'replicas=1' }

# The load: T_LOAD_RATE requests a second (default 3000) over
# T_LOAD_CONNECTIONS keep-alive connections (default 32), from one process.
sub start_load {
    my (%o) = @_;
    my $prefix = $o{prefix} // 'load';
    my $rate = $o{rate} // $ENV{T_LOAD_RATE} // 3000;
    my $conns = $o{connections} // $ENV{T_LOAD_CONNECTIONS} // 32;
    my $limit = $o{max_seconds} // 90;  # a test that forgets to stop it must not hang
    my $port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
    my $result = "$Dir/$prefix.result";
    unlink $result;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        my $stop = 0;
        local $SIG{TERM} = sub { $stop = 1 };
        my %count = run_load($port, $o{uri} // '/r', $prefix, $rate, $conns, $limit, \$stop);
        open my $out, '>', "$result.tmp" or POSIX::_exit(1);
        print $out join(' ', map { "$_=$count{$_}" } sort keys %count), "\n";
        close $out;
        rename "$result.tmp", $result;
        POSIX::_exit(0);
    }
    return {pid => $pid, result => $result, started => Time::HiRes::time()};
}

# Stops the load and returns what its client counted: {sent, seconds, and
# one count per status (or "none": no answer in 5 s, or the connection
# closed under it)}.
sub stop_load {
    my $load = shift;
    kill 'TERM', $load->{pid};
    my $until = Time::HiRes::time() + 15;
    while (waitpid($load->{pid}, POSIX::WNOHANG()) == 0) {
        if (Time::HiRes::time() > $until) {
            kill 'KILL', $load->{pid};
            waitpid $load->{pid}, 0;
            last;
        }
        Time::HiRes::sleep(0.05);
    }
    open my $in, '<', $load->{result} or return {};
    my %count = map { split /=/ } split ' ', <$in>;
    return \%count;
}

# The client's loop: each connection has one request out at a time; a
# request is sent when the rate allows it, until $$stop or $limit seconds.
sub run_load {
    my ($port, $uri, $prefix, $rate, $conns, $limit, $stop) = @_;
    my $start = Time::HiRes::time();
    my $select = IO::Select->new;
    my (%conn, %count);
    my $sent = 0;
    my $connect = sub {
        my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Blocking => 1)
            or return;
        setsockopt $sock, IPPROTO_TCP, TCP_NODELAY, 1;
        $sock->blocking(0);
        $select->add($sock);
        $conn{fileno $sock} = {sock => $sock, in => '', busy => 0};
    };
    my $drop = sub {
        my $c = shift;
        $count{none}++ if $c->{busy};
        $select->remove($c->{sock});
        delete $conn{fileno $c->{sock}};
        close $c->{sock};
    };
    $connect->() for 1 .. $conns;
    while (1) {
        my $now = Time::HiRes::time();
        my $open = !$$stop && $now - $start < $limit;
        my @busy = grep { $_->{busy} } values %conn;
        last if !$open && (!@busy || $now - $start > $limit + 5);
        if ($open) {
            $connect->() for scalar(keys %conn) .. $conns - 1;
            for my $c (values %conn) {
                last if $sent >= $rate * ($now - $start);
                next if $c->{busy};
                my $body = qq({"email":"$prefix.) . ++$sent . q(@example.com"});
                my $request = "POST $uri HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                            . 'Content-Length: ' . length($body) . "\r\n\r\n$body";
                my $n = syswrite $c->{sock}, $request;
                if (!defined $n || $n != length $request) {  # a new connection's buffer takes a request
                    $drop->($c);
                    next;
                }
                @$c{qw(busy since)} = (1, $now);
            }
        }
        for my $sock ($select->can_read(0.002)) {
            my $c = $conn{fileno $sock} or next;
            my $n = sysread $sock, $c->{in}, 65536, length $c->{in};
            next if !defined $n && $!{EAGAIN};
            if (!$n) {
                $drop->($c);
                next;
            }
            while ($c->{in} =~ /\A(HTTP\/1\.1 (\d{3}) .*?\r\n\r\n)/s) {
                my ($head, $status) = ($1, $2);
                my ($length) = $head =~ /\r\ncontent-length: *(\d+)/i;
                last if length($c->{in}) < length($head) + ($length // 0);
                substr($c->{in}, 0, length($head) + ($length // 0), '');
                $count{$status}++;
                $c->{busy} = 0;
                if ($head =~ /\r\nconnection: *close/i) {
                    $drop->($c);
                    last;
                }
            }
        }
        for my $c (grep { $_->{busy} && $now - $_->{since} > 5 } values %conn) {
            $drop->($c);
        }
    }
    $drop->($_) for values %conn;
    return (%count, sent => $sent, seconds => sprintf('%.1f', Time::HiRes::time() - $start));
}

# The lines a location logs its answers with (log_format goes in http).
sub access_log {
    return ('log_format failover \'$msec $request_time $request_id $status $resend_confirmation_outcome\';',
            "access_log $ENV{TEST_NGINX_SERVER_ROOT}/logs/failover.log failover;");
}

# The endpoint at /r with the failure policy `policy`, its answers logged
# (the location of access_log(), as $TEST_NGINX_ACCESS_LOG); with
# `padding`, each record carries that many bytes more.
sub location {
    my ($policy, $padding) = @_;
    my $field = $padding ? 'resend_confirmation_field padding ' . ('x' x $padding) . ';' : '';
    return <<"_EOC_";
    location = /r {
        resend_confirmation;
        resend_confirmation_redis_failure $policy;
        $field
        \$TEST_NGINX_ACCESS_LOG
    }
_EOC_
}

# The blocks' defaults: nginx with a master process (the tests reload it)
# and one worker, logging at info (not debug: the load would fill the
# disk); the access log of access_log(), the spool in $TEST_NGINX_SPOOL
# (room for 25 s of load with 3 KB records: not full in any scenario),
# and `redis` (a resend_confirmation_redis directive) in http; blocks in
# order (each starts from the Redis the one before left); after each a
# request answered 200.
sub defaults {
    my $redis = shift;
    main::master_on();
    main::workers(1);
    main::no_shuffle();
    t::Resend::resend_defaults(more_headers => "Content-Type: application/json", log_level => 'info', init => '',
                               request => "POST /r\n" . '{"email":"after@example.com"}', error_code => 200,
                               http_config => <<"_EOC_");
    \$TEST_NGINX_LOG_FORMAT
    $redis
    resend_confirmation_spool \$TEST_NGINX_SPOOL max_size=256m;
_EOC_
}

# The answers nginx logged: [answered at, sent at, request_id, status, outcome] each.
sub answers {
    open my $in, '<', main::server_root() . '/logs/failover.log' or return [];
    my @answers;
    while (<$in>) {
        my ($at, $took, $id, $status, $outcome) = split ' ';
        push @answers, [$at, $at - $took, $id, $status, $outcome // '-'] if defined $status;
    }
    return \@answers;
}

# Every request_id in the stream `key` of the Redis on `port`, read in pages.
sub stream_ids {
    my ($port, $key) = @_;
    my (%ids, $from);
    $from = '-';
    while (1) {
        my $page = t::Resend::redis({port => $port}, 'XRANGE', $key // 'resend_confirmation', $from, '+',
                                    'COUNT', 5000);
        die "XRANGE on $port: $page\n" unless ref $page;
        last unless @$page;
        for my $entry (@$page) {
            my %f = @{ $entry->[1] };
            $ids{$f{request_id}} = 1;
        }
        $from = '(' . $page->[-1][0];
    }
    return \%ids;
}

# The answers 200 whose request_id is not among `ids`.
sub lost {
    my ($answers, $ids) = @_;
    return [grep { $_->[3] eq '200' && !$ids->{$_->[2]} } @$answers];
}

# The answers not `accepted` (503, or 200 spooled) sent between each mark
# and the next (marks: [name, time] each): [name, count, first sent, last
# answered] each (times relative to the mark; a window without such
# answers has count 0).
sub windows {
    my ($answers, @marks) = @_;
    my @windows;
    for my $i (0 .. $#marks) {
        my ($name, $from) = @{ $marks[$i] };
        my $to = $i < $#marks ? $marks[$i + 1][1] : 9e99;
        my @failed = grep { $_->[4] ne 'accepted' && $_->[1] >= $from && $_->[1] < $to } @$answers;
        my ($first) = sort { $a <=> $b } map { $_->[1] } @failed;
        my ($last) = sort { $b <=> $a } map { $_->[0] } @failed;
        push @windows, [$name, scalar @failed, @failed ? ($first - $from, $last - $from) : (0, 0)];
    }
    return @windows;
}

# Prints a run's figures (one diag line) and checks that no answer 200 is
# missing from the stream; returns the lost answers.
sub report {
    my ($name, $load, $answers, $ids, @marks) = @_;
    my %by;
    $by{"$_->[3] $_->[4]"}++ for @$answers;
    my $lost = lost($answers, $ids);
    my $seconds = $load->{seconds} || 1;
    Test::More::diag(sprintf "%s: %d sent in %.1f s (%.0f/s); answers: %s; acknowledged but lost: %d", $name,
                     $load->{sent} // 0, $seconds, ($load->{sent} // 0) / $seconds,
                     join(', ', map { "$_: $by{$_}" } sort keys %by), scalar @$lost);
    for my $w (windows($answers, @marks)) {
        Test::More::diag(sprintf "  %s: %d answers not accepted, from %.3f s to %.3f s after it (%.3f s)",
                         $w->[0], $w->[1], $w->[2], $w->[3], $w->[3] - $w->[2]);
    }
    Test::More::is(scalar @$lost, 0, "$name: every answer 200 is in the final master's stream")
        or Test::More::diag("not there, e.g.: " . join(' ', map { "$_->[2]($_->[4])" } @$lost[0 .. ($#$lost < 4 ? $#$lost : 4)]));
    return $lost;
}

# scenario(name => N, policy => reject|spool, spool => DIR, settled => CODE,
#          during => CODE[, before => CODE, after => CODE, key => STREAM]):
# one run. With the Redis at rest (settled->() returns the master, and
# whatever `before` and `during` want after it), the stream emptied on the
# master and the spool too, `before` runs, then the load starts and
# `during` breaks Redis under it; it returns the marks of its faults
# ([name, time] each) and may end with a check of the answers (CODE). The
# load stopped (after 6 s at least; at once if `during` dies), `after`
# mends what is left broken, Redis is left to settle (settled->(60)), the
# spool to be replayed, and the answers are counted against the stream on
# the master settled names then.
sub scenario {
    my (%o) = @_;
    my $name = "$o{name} ($o{policy})";
    my @topology = $o{settled}->();
    t::Resend::redis({port => $topology[0]}, 'DEL', $o{key} // 'resend_confirmation');
    unlink glob "$o{spool}/*";
    $o{before}->(@topology) if $o{before};
    my $load = start_load(prefix => "$o{name}-$o{policy}");
    my @marks = eval { $o{during}->(@topology) };
    if (my $error = $@) {
        stop_load($load);
        die $error;
    }
    my $check = ref $marks[-1] eq 'CODE' ? pop @marks : undef;
    my $rest = $load->{started} + 6 - Time::HiRes::time();  # the load runs 6 s at least
    Time::HiRes::sleep($rest) if $rest > 0;
    my $counted = stop_load($load);
    $o{after}->(@topology) if $o{after};
    my ($final) = $o{settled}->(60);
    Test::More::ok(spool_drained($o{spool}, 60), "$name: the spool is replayed") if $o{policy} eq 'spool';
    my $answers = answers();
    # The load ran (a scenario where no record may be acknowledged says how
    # few 200s it expects: `least_200`).
    Test::More::cmp_ok(scalar(grep { $_->[3] eq '200' } @$answers), '>=', $o{least_200} // 1000, "$name: many 200s");
    report($name, $counted, $answers, stream_ids($final, $o{key}), @marks);
    $check->($answers) if $check;
}

# Waits (at most `seconds`) until the spool directory holds no segment.
sub spool_drained {
    my ($dir, $seconds) = @_;
    return eval { t::Resend::wait_for('the spool to be replayed', $seconds, sub { !glob("$dir/*.seg") }) };
}

1;
