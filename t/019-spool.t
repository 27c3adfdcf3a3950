# The spool (issue 13): with `resend_confirmation_redis_failure spool`, a
# record Redis cannot take in time is kept on local disk, the client gets
# its 200, and the record reaches the stream once Redis is back. Real
# Redis, real nginx, two workers.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use File::Temp ();
use IO::Socket::INET;
use Time::HiRes qw(time sleep);

master_on();
workers(2);

# A Redis of these tests' own, which they kill and start again; it keeps
# what it acknowledged (an append-only file synced on every write).
our $Port = $ENV{TEST_NGINX_REDIS_PORT} + 7;
$ENV{TEST_NGINX_OWN_REDIS_PORT} = $Port;

# The spool directories live outside the server root (which each block
# with a config starts afresh): the records outlive an nginx.
our $Top = File::Temp::tempdir(CLEANUP => 1);
$ENV{TEST_NGINX_SPOOL} = "$Top/spool";
mkdir "$Top/spool";
mkdir "$Top/redis";
our @Durable = ('--dir', "$Top/redis", '--appendonly', 'yes', '--appendfsync', 'always');
$ENV{TEST_NGINX_SPOOL_FILE} = "$Top/a-file";
open my $touch, '>', "$Top/a-file";
close $touch;

# location_for($uri, $redis, @more): a location of the module at $uri,
# spooling what `$redis` (an address and its parameters) cannot take in time.
sub location_for {
    my ($uri, $redis, @more) = @_;
    return join "\n        ", "    location = $uri {", 'resend_confirmation;',
        "resend_confirmation_redis $redis connect_timeout=200ms timeout=300ms;",
        'resend_confirmation_redis_failure spool;', @more,
        'add_header X-Outcome $resend_confirmation_outcome always;',
        'add_header X-Request-Id $request_id always;' . "\n    }\n";
}

our $Metrics = "    location = /metrics { resend_confirmation_metrics; }\n";

# The endpoint at /r on this file's own Redis, and the metrics.
sub endpoint { location_for('/r', '127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT', @_) . $Metrics }

# The same at /r2, on the second Redis.
sub second_endpoint { location_for('/r2', '127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT2') }

our $Spool = 'resend_confirmation_spool $TEST_NGINX_SPOOL;';

# A second Redis, for records bound to two of them in one segment.
our $Port2 = $ENV{TEST_NGINX_REDIS_PORT} + 8;
$ENV{TEST_NGINX_OWN_REDIS_PORT2} = $Port2;

# post($email[, $uri]): one request on its own connection: [status, outcome, request_id].
sub post {
    my ($email, $uri) = @_;
    $uri //= '/r';
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984)
        or die "cannot connect to nginx: $!\n";
    my $body = qq({"email":"$email"});
    print $sock "POST $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
              . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    my $response = do { local $/; <$sock> } // '';
    my ($status) = $response =~ m{\AHTTP/1\.1 (\d+)};
    my ($outcome) = $response =~ m{^X-Outcome: (\S+)}mi;
    my ($id) = $response =~ m{^X-Request-Id: (\S+)}mi;
    return [$status // 0, $outcome // '', $id // ''];
}

# The scrape's spool samples, as {name => value}.
sub spool_metrics {
    my $all = t::Resend::metrics();
    return { map { /^resend_confirmation_spool_(\w+)$/ ? ($1 => $all->{$_}) : () } keys %$all };
}

sub segments { my @s = glob "$Top/spool/*.seg"; return @s }

sub redis_own { t::Resend::redis({port => $Port}, @_) }

# The stream's entries as {email => [request_id, ...]} (of the Redis on `port`).
sub stream_ids {
    my ($port) = @_;
    my $entries = t::Resend::redis({port => $port // $Port}, 'XRANGE', 'resend_confirmation', '-', '+');
    my %ids;
    for my $entry (@$entries) {
        my %f = @{ $entry->[1] };
        push @{ $ids{$f{email}} }, $f{request_id};
    }
    return \%ids;
}

# Waits (up to `seconds`) until the stream holds `n` entries and the spool
# is empty; returns how many requests the stream holds (distinct
# request_ids: the replay's duplicates, t::Resend::stream_requests, are
# only reported).
sub wait_replayed {
    my ($n, $seconds) = @_;
    my $deadline = time + ($seconds // 10);
    while (time < $deadline) {
        last if redis_own('XLEN', 'resend_confirmation') >= $n && !segments() && !glob("$Top/tmpfs/*.seg");
        sleep 0.05;
    }
    sleep 0.2;  # nothing more comes
    my ($requests, $duplicates) = t::Resend::stream_requests($Port);
    Test::More::diag("replayed: $duplicates duplicates (same request_id)") if $duplicates;
    return scalar @$requests;
}

# Every 200 of `answers` ([status, outcome, id, email]) is in the stream,
# with its request_id; duplicates only with the same request_id.
sub check_every_200_recorded {
    my ($name, @answers) = @_;
    my $ids = stream_ids();
    my ($missing, $duplicates, $foreign) = (0, 0, 0);
    for my $a (grep { $_->[0] == 200 } @answers) {
        my $got = $ids->{$a->[3]} // [];
        $missing++ unless @$got;
        $duplicates += @$got - 1 if @$got > 1;
        $foreign += grep { $_ ne $a->[2] } @$got;
    }
    Test::More::is($missing, 0, "$name: every 200 is in the stream");
    Test::More::is($foreign, 0, "$name: with its own request_id");
    Test::More::diag("$name: $duplicates duplicates (same request_id)") if $duplicates;
}

# After load_posts($clients, $each): every address is in the stream once
# the spool is replayed; duplicates only with the same request_id.
sub check_load {
    my ($clients, $each, $sent) = @_;
    wait_replayed($sent, 15);
    my $ids = stream_ids();
    my @missing = map { my $c = $_; grep { !$ids->{$_} } map { "load$c.$_\@example.com" } 1 .. $each }
                  1 .. $clients;
    Test::More::is(scalar @missing, 0, 'every record in the stream') or Test::More::diag("missing: @missing");
    my $foreign = grep { my %s = map { $_ => 1 } @$_; keys(%s) > 1 } values %$ids;
    Test::More::is($foreign, 0, 'duplicates only with the same request_id');
}

# Fleet-wide limits (resend_confirmation_shared_limit) need a secret file.
$ENV{TEST_NGINX_SPOOL_SECRET} = "$Top/secret.key";
open my $secret, '>', "$Top/secret.key";
print $secret "0123456789abcdef0123456789abcdef\n";
close $secret;
our $SharedSpool = 'resend_confirmation_spool $TEST_NGINX_SPOOL; '
                 . 'resend_confirmation_limit_secret $TEST_NGINX_SPOOL_SECRET;';

# CRC32C as core/spool_format.cpp computes it, to write segments by hand.
sub crc32c {
    my ($bytes) = @_;
    my $crc = 0xFFFFFFFF;
    for my $byte (unpack 'C*', $bytes) {
        $crc ^= $byte;
        $crc = $crc & 1 ? ($crc >> 1) ^ 0x82F63B78 : $crc >> 1 for 1 .. 8;
    }
    return $crc ^ 0xFFFFFFFF;
}

# A segment as an earlier version wrote it ("RCSPOOL1": address, stream,
# maxlen, then the fields), with `records` ([field => value, ...] each).
sub write_v1_segment {
    my ($path, $address, @records) = @_;
    my $bytes = 'RCSPOOL1' . pack('VV', 16, 0);
    for my $fields (@records) {
        my @items = ($address, 'resend_confirmation', '1000000', @$fields);
        my $payload = pack('v', scalar @items) . join '', map { pack('V', length) . $_ } @items;
        $bytes .= pack('VV', length $payload, crc32c($payload)) . $payload;
    }
    open my $out, '>', $path or die "$path: $!";
    binmode $out;
    print $out $bytes;
    close $out;
}

# Load from `clients` processes, one request per connection, each for a
# new address, until stop_load(): returns the answers as check_every_200_recorded
# takes them ([status, outcome, request_id, email]).
sub start_load {
    my ($clients) = @_;
    my $stop = "$Top/stop-load";
    unlink $stop;
    my @pids;
    for my $c (1 .. $clients) {
        my $pid = fork // die "fork: $!";
        if (!$pid) {
            open my $out, '>', "$Top/load-$c" or POSIX::_exit(1);
            my $n = 0;
            until (-e $stop) {
                my $email = "out$c." . ++$n . '@example.com';
                print $out join(' ', @{ post($email) }, $email), "\n";
            }
            close $out;
            POSIX::_exit(0);
        }
        push @pids, $pid;
    }
    return sub {
        open my $touch, '>', $stop;
        close $touch;
        waitpid $_, 0 for @pids;
        my @answers;
        for my $c (1 .. $clients) {
            open my $in, '<', "$Top/load-$c" or next;
            push @answers, map { chomp; my @a = split / /; @a == 4 ? [@a] : [$a[0], '', '', $a[-1]] } <$in>;
        }
        return @answers;
    };
}

# Empties the stream and stops Redis (emptied first: once it is back, a
# replay may begin before the test could empty it).
sub redis_down {
    t::Resend::start_redis($Port, @Durable);
    redis_own('FLUSHALL');
    t::Resend::signal_redis('KILL', $Port);
}

# Empties the stream, stops Redis, and posts `emails` one at a time:
# every answer must be 200 spooled. Returns the answers as
# check_every_200_recorded takes them.
sub spool_while_down {
    my @emails = @_;
    redis_down();
    my @answers = map { [@{ post($_) }, $_] } @emails;
    Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers), scalar @emails,
                   'every answer 200 spooled');
    return @answers;
}

# flip_bit($file, $offset, $bit): one bit of the file flipped in place.
sub flip_bit {
    my ($file, $offset, $bit) = @_;
    open my $fh, '+<:raw', $file or die "$file: $!";
    sysseek $fh, $offset, 0;
    sysread $fh, my $byte, 1;
    sysseek $fh, $offset, 0;
    syswrite $fh, chr(ord($byte) ^ (1 << $bit));
    close $fh;
}

# The records of an intact version-2 segment, walked by their lengths, as
# [offset, size, request_id].
sub segment_records {
    my ($file) = @_;
    open my $in, '<:raw', $file or die "$file: $!";
    my $bytes = do { local $/; <$in> };
    my ($at, @records) = (16);
    while ($at + 8 <= length $bytes) {
        my $length = unpack 'V', substr $bytes, $at, 4;
        my $payload = substr $bytes, $at + 8, $length;
        my ($pos, @items) = (2);
        for (1 .. unpack 'v', $payload) {
            my $n = unpack 'V', substr $payload, $pos, 4;
            push @items, substr $payload, $pos + 4, $n;
            $pos += 4 + $n;
        }
        my %fields = @items[5 + 4 * $items[3] .. $#items];  # after the address ... limits
        push @records, [$at, 8 + $length, $fields{request_id}];
        $at += 8 + $length;
    }
    return @records;
}

# The segment that holds the most records, and its records.
sub fullest_segment {
    my ($file) = sort { segment_records($b) <=> segment_records($a) } segments();
    return ($file, segment_records($file));
}

# After damage_inside() or a damaged header: exactly the request_ids of
# @Lost are missing from the stream, every other 200 of @Kept is there.
our @Lost;
sub check_only_damage_lost {
    my $ids = stream_ids();
    my %in = map { $_ => 1 } map { @$_ } values %$ids;
    my @missing = map { $_->[2] } grep { !$in{$_->[2]} } @main::Kept;
    Test::More::is("@{[sort @missing]}", "@{[sort @Lost]}", 'exactly the damaged records are missing')
        or Test::More::diag(scalar(@missing) . ' missing');
}

# Lines of this block's error log that match `re`.
sub log_lines {
    my ($re) = @_;
    open my $in, '<', main::server_root() . '/logs/error.log' or return 0;
    return scalar grep { /$re/ } <$in>;
}

# Damages the last record of every segment: a flipped byte in one, a torn
# end in the next... Sets $Damaged to how many.
our $Damaged;
sub damage_tails {
    my $i = 0;
    $Damaged = 0;
    for my $file (segments()) {
        my $size = -s $file;
        next if $size <= 16;
        if ($i++ % 2 == 0) {
            flip_bit($file, $size - 3, 0);
        } else {
            truncate $file, $size - 5;
        }
        $Damaged++;
    }
}

our @Kept;  # answers of one block checked in a later one

# In a block's post_setup_server_root (just before its config is written):
# its workers run as nobody (when root; the block's init sets
# $Test::Nginx::Util::WorkerUser back to undef), with the spool in $Top/$dir.
sub workers_as_nobody {
    my ($dir) = @_;
    $Test::Nginx::Util::WorkerUser = 'nobody ' . getgrgid((getpwnam 'nobody')[3]) if $> == 0;
    chmod 0755, $Top;
    mkdir "$Top/$dir", 0755;
}

# A watchdog for a FIFO planted in the spool: after `seconds`, it opens the
# FIFO for writing whenever a process waits to read it (which unblocks a
# master stuck in open()), and leaves "$fifo.unblocked" behind if it had to.
# Bounds a start that would hang; stop_watchdog() ends it.
our $Watchdog;
sub start_watchdog {
    my ($fifo, $seconds) = @_;
    $Watchdog = fork // die "fork: $!";
    return if $Watchdog;
    my $until = time + $seconds;
    sleep 0.1 while time < $until;
    while (-p $fifo) {
        if (sysopen my $out, $fifo, POSIX::O_WRONLY() | POSIX::O_NONBLOCK()) {
            open my $mark, '>', "$fifo.unblocked";
            close $out;
        }
        sleep 0.1;
    }
    POSIX::_exit(0);
}
sub stop_watchdog { kill 'KILL', $Watchdog; waitpid $Watchdog, 0 }

# nginx -t of this block's configuration, killed after `seconds`:
# [exit code (124: killed), output].
sub nginx_t {
    my ($seconds) = @_;
    my $root = main::server_root();
    my $out = `timeout $seconds $Test::Nginx::Util::NginxBinary -t -p $root/ -c $root/conf/nginx.conf 2>&1`;
    return [$? >> 8, $out];
}

# Links to `target` at PATH/.probe-N for the next `n` pids (the old probe
# name, made as root at every start and nginx -t).
sub plant_probe_links {
    my ($dir, $target, $n) = @_;
    my $next = fork // die "fork: $!";
    POSIX::_exit(0) unless $next;
    waitpid $next, 0;
    symlink $target, "$dir/.probe-$_" for $next .. $next + $n;
}

no_shuffle();
run_tests();

__DATA__

=== TEST 1: PATH that does not exist: nginx -t names it and file:line
--- http_config
resend_confirmation_spool /nonexistent/spool;
--- config eval: main::endpoint()
--- must_die
--- error_log eval
qr/\[emerg\] .*resend_confirmation_spool "\/nonexistent\/spool" cannot be used \(2: No such file or directory\) in \S+nginx\.conf:\d+/



=== TEST 2: PATH that is a file: not a directory
--- http_config
resend_confirmation_spool $TEST_NGINX_SPOOL_FILE;
--- config eval: main::endpoint()
--- must_die
--- error_log eval
qr/\[emerg\] .*resend_confirmation_spool "\S+a-file" is not a directory in \S+nginx\.conf:\d+/



=== TEST 3: policy spool without a spool
--- http_config
--- config eval: main::endpoint()
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation_redis_failure spool" needs "resend_confirmation_spool" at http level in \S+nginx\.conf:\d+/



=== TEST 4: bad parameters
--- http_config
resend_confirmation_spool $TEST_NGINX_SPOOL fsync=sometimes;
--- config eval: main::endpoint()
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "fsync=sometimes" in \S+nginx\.conf:\d+/



=== TEST 5: Redis down: every request 200 spooled; Redis back: every record in the stream, in order, the spool emptied
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
main::redis_down();
my @answers = map { [@{ main::post("down$_\@example.com") }, "down$_\@example.com"] } 1 .. 20;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers), 20, 'every answer 200 spooled');
Test::More::ok(scalar(main::segments()) >= 1, 'segment files on disk');
t::Resend::start_redis($main::Port, @main::Durable);
Test::More::is(main::wait_replayed(20), 20, 'the stream holds the 20 records');
main::check_every_200_recorded('down', @answers);
Test::More::is(scalar(main::segments()), 0, 'the spool is empty');
my $m = main::spool_metrics();
Test::More::is("$m->{records} $m->{bytes} $m->{replayed_total} $m->{oldest_seconds}", '0 0 20 0.000',
               'metrics: nothing waiting, 20 replayed');
my $entries = main::redis_own('XRANGE', 'resend_confirmation', '-', '+');
my %f = @{ $entries->[0][1] };
Test::More::is(join(' ', map { $entries->[0][1][2 * $_] } 0 .. 3), 'email ip request_id received_at',
               'the fields as sent');
Test::More::like($f{received_at}, qr/\A\d{13}\z/, 'received_at as sent');
--- request
GET /metrics
--- response_body_like
resend_confirmation_requests_total\{location="/r",outcome="spooled"\} 20
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 6: Redis killed under load for 5 s: every answer 200; every 200's request_id in the stream once it is back
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
my $stop_load = main::start_load(4);
sleep 0.5;
t::Resend::signal_redis('KILL', $main::Port);
sleep 5;
t::Resend::start_redis($main::Port, @main::Durable);
sleep 1;
my @answers = $stop_load->();
my @not_200 = grep { $_->[0] != 200 } @answers;
Test::More::is(scalar @not_200, 0, 'every answer 200 (' . scalar(@answers) . ')')
    or Test::More::diag("first: @{ $not_200[0] }");
Test::More::cmp_ok(scalar(grep { $_->[1] eq 'spooled' } @answers), '>', 100, 'many spooled meanwhile');
main::wait_replayed(scalar @answers, 30);
main::check_every_200_recorded('outage', @answers);
--- request
GET /metrics
--- response_body_like
resend_confirmation_requests_total\{location="/r",outcome="spooled"\} [1-9]\d*
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 7: kill -9 of a worker under load while Redis is down: its segment is adopted, nothing lost
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
main::redis_down();
my $stop_load = main::start_load(4);
sleep 1;
my $master = t::Resend::master_pid();
my ($victim) = split ' ', `ps -o pid= --ppid $master`;
kill 'KILL', $victim;
sleep 1;
t::Resend::start_redis($main::Port, @main::Durable);
sleep 0.5;
my @answers = $stop_load->();
Test::More::cmp_ok(scalar(grep { $_->[0] == 200 } @answers), '>', 100, 'answered 200 before and after the kill');
main::wait_replayed(scalar(grep { $_->[0] == 200 } @answers), 30);
main::check_every_200_recorded('killed', @answers);
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[emerg]



=== TEST 8: a full restart of nginx while Redis is down (1): records spooled
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
main::redis_down();
@main::Kept = map { [@{ main::post("restart$_\@example.com") }, "restart$_\@example.com"] } 1 .. 10;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @main::Kept), 10, 'every answer 200 spooled');
sleep 0.01;
my $m = main::spool_metrics();
Test::More::is($m->{records}, 10, 'metrics: 10 records waiting');
Test::More::cmp_ok($m->{bytes}, '>', 10 * 100, 'metrics: their bytes');
Test::More::cmp_ok($m->{oldest_seconds}, '>', 0, 'metrics: the oldest one\'s age');
--- request
GET /metrics
--- error_code: 200



=== TEST 9: (2) the next nginx replays the previous one's segments
--- http_config eval: $::Spool
--- config eval: main::endpoint('# a new nginx')
--- init
t::Resend::start_redis($main::Port, @main::Durable);
Test::More::is(main::wait_replayed(10), 10, 'the 10 records of the previous nginx');
main::check_every_200_recorded('restart', @main::Kept);
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 10: corrupt tails (1): records spooled
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
main::redis_down();
@main::Kept = map { [@{ main::post("tail$_\@example.com") }, "tail$_\@example.com"] } 1 .. 10;
Test::More::is(scalar(grep { $_->[0] == 200 } @main::Kept), 10, 'every answer 200');
--- request
GET /metrics
--- error_code: 200



=== TEST 11: (2) the last record of each segment damaged (a flipped byte, or torn): truncated there with one line each, the rest replayed
--- http_config eval: $::Spool
--- config eval: main::endpoint('# the next nginx')
--- post_setup_server_root
main::damage_tails();
--- init
t::Resend::start_redis($main::Port, @main::Durable);
my $want = 10 - $main::Damaged;
Test::More::is(main::wait_replayed($want), $want, "the $want intact records in the stream");
Test::More::is(main::spool_metrics()->{corrupt_total}, $main::Damaged, 'metrics: the truncated segments');
--- request
GET /metrics
--- error_code: 200
--- error_log eval
qr/\[warn\] .*resend_confirmation: spool "\d+-\d+-\d+\.seg": a (corrupt|torn) record at offset \d+, truncated there \(\d+ bytes dropped\)/



=== TEST 12: max_size: once full, new requests get 503; every 200 reaches the stream
--- http_config eval: 'resend_confirmation_spool $TEST_NGINX_SPOOL max_size=4k;'
--- config eval: main::endpoint()
--- init
main::redis_down();
my @answers = map { [@{ main::post("full$_\@example.com") }, "full$_\@example.com"] } 1 .. 40;
my $spooled = grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers;
my $refused = grep { "$_->[0] $_->[1]" eq '503 redis_error' } @answers;
Test::More::ok($spooled > 5 && $spooled < 40, "some spooled ($spooled)");
Test::More::is($spooled + $refused, 40, 'the rest 503');
Test::More::is(join('', map { $_->[0] == 200 ? 'a' : 'b' } @answers), 'a' x $spooled . 'b' x $refused,
               '503s once full, not before');
t::Resend::start_redis($main::Port, @main::Durable);
Test::More::is(main::wait_replayed($spooled), $spooled, 'every 200 in the stream');
main::check_every_200_recorded('full', @answers);
my ($after) = main::post('after@example.com');
# Recorded, or spooled if Redis was slow just then (a loaded machine): not 503.
Test::More::like("$after->[0] $after->[1]", qr/\A200 (accepted|spooled)\z/, 'room again once replayed');
--- request
GET /metrics
--- error_code: 200
--- error_log eval
qr/\[error\] .*resend_confirmation: spool "\S+" is full \(max_size\): requests are answered 503/



=== TEST 13: a tmpfs of 1 MB filling up (root only): 503 once full, no 200 lost
--- http_config eval: "resend_confirmation_spool $::Top/tmpfs;"
--- config eval: main::endpoint('resend_confirmation_field pad ' . ('x' x 3000) . ';')
--- post_setup_server_root
mkdir "$main::Top/tmpfs";
if ($> == 0) {
    system('mount', '-t', 'tmpfs', '-o', 'size=1m', 'tmpfs', "$main::Top/tmpfs") == 0
        or warn "cannot mount a tmpfs\n";
}
--- init
SKIP: {
    Test::More::skip('not root: no tmpfs', 4) unless $> == 0 && `grep -c ' $main::Top/tmpfs tmpfs' /proc/mounts` > 0;
    main::redis_down();
    my @answers;
    for my $n (1 .. 600) {
        push @answers, [@{ main::post("tmpfs$n\@example.com") }, "tmpfs$n\@example.com"];
        last if $answers[-1][0] == 503 && @answers > 5 && $answers[-6][0] == 503;
    }
    my $spooled = grep { $_->[0] == 200 } @answers;
    Test::More::ok($spooled > 100, "spooled until the disk is full ($spooled)");
    Test::More::is($answers[-1][0], 503, '503 once full');
    t::Resend::start_redis($main::Port, @main::Durable);
    Test::More::is(main::wait_replayed($spooled), $spooled, 'every 200 in the stream');
    main::check_every_200_recorded('tmpfs', @answers);
}
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[emerg]



=== TEST 14: a reload while the spool is replayed: nothing lost, duplicates only with the same request_id
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
system('umount', "$main::Top/tmpfs") if $> == 0;
main::redis_down();
my ($ok, $sent) = t::Resend::load_posts(4, 100, '/r');
Test::More::is($ok, $sent, "every answer 200 ($sent)");
t::Resend::start_redis($main::Port, @main::Durable);
sleep 0.05;
kill 'HUP', t::Resend::master_pid();
main::check_load(4, 100, $sent);
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 15: fsync=always: the 200 comes once the record is synced (in the thread pool); replayed as any other
--- http_config eval: 'resend_confirmation_spool $TEST_NGINX_SPOOL fsync=always;'
--- config eval: main::endpoint()
--- init
main::redis_down();
my @answers = map { [@{ main::post("always$_\@example.com") }, "always$_\@example.com"] } 1 .. 10;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers), 10, 'every answer 200 spooled');
t::Resend::start_redis($main::Port, @main::Durable);
Test::More::is(main::wait_replayed(10), 10, 'the 10 records in the stream');
main::check_every_200_recorded('always', @answers);
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 16: Redis refusing writes for now (OOM): spooled, not 503; replayed once it takes them again
--- http_config eval: 'resend_confirmation_spool $TEST_NGINX_SPOOL fsync=off;'
--- config eval: main::endpoint()
--- init
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
main::redis_own('CONFIG', 'SET', 'maxmemory-policy', 'noeviction');
main::redis_own('CONFIG', 'SET', 'maxmemory', '1');
my @answers = map { [@{ main::post("oom$_\@example.com") }, "oom$_\@example.com"] } 1 .. 10;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers), 10, 'every answer 200 spooled');
sleep 0.5;
Test::More::is(main::redis_own('XLEN', 'resend_confirmation'), 0, 'nothing taken while OOM');
main::redis_own('CONFIG', 'SET', 'maxmemory', '0');
Test::More::is(main::wait_replayed(10), 10, 'the 10 records in the stream');
main::check_every_200_recorded('oom', @answers);
--- request
GET /metrics
--- error_code: 200
--- error_log eval
qr/\[error\] .*resend_confirmation: redis 127\.0\.0\.1:\d+ refused XADD: OOM/



=== TEST 17: replayed through the shared-limit script: fleet limits apply when the records reach Redis, keyed as live requests are
--- http_config eval: $::SharedSpool
--- config eval: main::endpoint('resend_confirmation_shared_limit $resend_confirmation_mailbox rate=1r/h burst=1;')
--- init
my @victim = ('Victim@example.com', 'victim+1@example.com', 'VICTIM+x@Example.com', 'victim+2@example.com',
              'victim@example.com');
my @others = map { "other$_\@example.com" } 1 .. 3;
main::spool_while_down(@victim, @others);
t::Resend::start_redis($main::Port, @main::Durable);
Test::More::is(main::wait_replayed(5), 5, 'burst + 1 records for the victim, one each for the others');
sleep 0.5;
my $ids = main::stream_ids();
Test::More::is(scalar(grep { lc =~ /victim/ } keys %$ids), 2, 'two of the five for one mailbox');
Test::More::is(scalar(grep { $ids->{$_} } @others), 3, 'the other addresses');
my $keys = main::redis_own('KEYS', 'resend_confirmation:limit:*');
Test::More::is(scalar @$keys, 4, 'one bucket per mailbox');
Test::More::unlike("@$keys", qr/victim|other/i, 'no address in the keys');
my $ttl = main::redis_own('PTTL', $keys->[0]);
Test::More::ok($ttl > 0 && $ttl <= 2 * 3600 * 1000, "the buckets expire ($ttl ms)");
my $m = main::spool_metrics();
Test::More::is($m->{records}, 0, 'the spool is empty');
Test::More::is($m->{replayed_total}, 8, 'every record acknowledged, silenced ones too');
# A record sent again after a late reply (at least once) meets its own
# token taken: silenced, and counted again.
my $all = t::Resend::metrics();
my $silenced = $all->{'resend_confirmation_shared_limit_total{result="silenced"}'};
if (grep { /^resend_confirmation_redis_timeouts_total/ && $all->{$_} > 0 } keys %$all) {
    Test::More::cmp_ok($silenced, '>=', 3, 'metrics: the 3 silenced, and records sent again after a timeout');
} else {
    Test::More::is($silenced, 3, 'metrics: the 3 silenced');
}
--- request
GET /metrics
--- error_code: 200
--- no_error_log eval
[qr/\[alert\]/, qr/\[emerg\]/, qr/redis \S+ refused/]



=== TEST 18: NOSCRIPT on replay (a Redis that cannot SCRIPT LOAD): the script goes in full with EVAL, nothing lost
--- http_config eval: $::SharedSpool
--- config eval: main::endpoint('resend_confirmation_shared_limit $resend_confirmation_email rate=1r/h burst=100;')
--- init
my @answers = main::spool_while_down(map { "noscript$_\@example.com" } 1 .. 40);
t::Resend::start_redis($main::Port, @main::Durable, '--rename-command', 'SCRIPT', '');
Test::More::is(main::wait_replayed(40), 40, 'the 40 records in the stream');
main::check_every_200_recorded('noscript', @answers);
Test::More::is(scalar @{ main::redis_own('KEYS', 'resend_confirmation:limit:*') }, 40, 'each counted in its bucket');
t::Resend::signal_redis('KILL', $main::Port);
--- request
GET /metrics
--- error_code: 200
--- error_log eval
qr/\[notice\] .*resend_confirmation: redis 127\.0\.0\.1:\d+ refused EVALSHA: NOSCRIPT, sending the script in full/
--- no_error_log
[alert]
[emerg]



=== TEST 19: a segment an earlier version wrote (without shared limits) is replayed as it was
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
t::Resend::start_redis($main::Port, @main::Durable);
Test::More::is(main::wait_replayed(3), 3, 'its 3 records in the stream');
my ($entries) = t::Resend::stream_requests($main::Port);
Test::More::is_deeply($entries,
                      [map { [email => "old$_\@example.com", ip => '192.0.2.1', request_id => "old$_",
                              received_at => '1700000000000'] } 1 .. 3],
                      'as they were written, in order');
--- post_setup_server_root
main::redis_down();
main::write_v1_segment(sprintf("%s/spool/%013d-1-1.seg", $main::Top, time * 1000), "127.0.0.1:$main::Port",
                       map { [email => "old$_\@example.com", ip => '192.0.2.1', request_id => "old$_",
                              received_at => '1700000000000'] } 1 .. 3);
--- request
GET /metrics
--- response_body_like
resend_confirmation_spool_replayed_total 3
--- no_error_log eval
[qr/\[alert\]/, qr/\[emerg\]/, qr/redis \S+ refused \S+: (?!LOADING)/, qr/corrupt|torn/]



=== TEST 20: records for two Redis in one segment, one of them stalled then gone: replies come out of order; each record is acknowledged only by its own reply, nothing lost
--- http_config eval: $::Spool
--- config eval
main::endpoint() . main::second_endpoint()
--- init
for my $port ($main::Port, $main::Port2) {
    t::Resend::start_redis($port, @main::Durable, '--appendfilename', "$port.aof");
    t::Resend::redis({port => $port}, 'FLUSHALL');
    t::Resend::signal_redis('KILL', $port);
}
my (@a, @b);
for my $n (1 .. 30) {
    push @a, [@{ main::post("a$n\@example.com") }, "a$n\@example.com"];
    push @b, [@{ main::post("b$n\@example.com", '/r2') }, "b$n\@example.com"];
}
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @a, @b), 60, 'every answer 200 spooled');
# The first Redis takes connections but answers nothing: its records time
# out while the second one's are answered; then it dies without having run
# them (killed while stopped), and comes back empty.
t::Resend::start_redis($main::Port, @main::Durable, '--appendfilename', "$main::Port.aof");
t::Resend::signal_redis('STOP', $main::Port);
t::Resend::start_redis($main::Port2, @main::Durable, '--appendfilename', "$main::Port2.aof");
sleep 5;
t::Resend::signal_redis('KILL', $main::Port);
t::Resend::start_redis($main::Port, @main::Durable, '--appendfilename', "$main::Port.aof");
my $deadline = time + 15;
sleep 0.1 while time < $deadline && (main::segments() || t::Resend::redis({port => $main::Port}, 'XLEN', 'resend_confirmation') < 30);
sleep 0.3;
my ($first, $second) = (main::stream_ids($main::Port), main::stream_ids($main::Port2));
Test::More::is(scalar(grep { !$first->{$_->[3]} } @a), 0, 'every record for the stalled Redis in its stream');
Test::More::is(scalar(grep { !$second->{$_->[3]} } @b), 0, 'every record for the other one in its stream');
Test::More::is(scalar(grep { $_->[3] =~ /^b/ } map { [0, 0, 0, $_] } keys %$first), 0, 'none in the wrong stream');
my $dupes = 0;
$dupes += @$_ - 1 for values %$first, values %$second;
Test::More::diag("$dupes duplicates (same request_id)") if $dupes;
t::Resend::signal_redis('KILL', $main::Port2);
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[emerg]



=== TEST 21: workers that run as another user (root only): nginx gives them PATH, as it does its temp paths; records are kept and replayed
--- http_config eval: "resend_confirmation_spool $::Top/owned;"
--- config eval: main::endpoint()
--- post_setup_server_root
main::workers_as_nobody('owned');
--- init
$Test::Nginx::Util::WorkerUser = undef;
SKIP: {
    Test::More::skip('not root: the workers run as this user', 4) unless $> == 0;
    my $owner = (stat "$main::Top/owned")[4];
    Test::More::is($owner, scalar getpwnam('nobody'), 'PATH belongs to the workers\' user');
    my @answers = main::spool_while_down(map { "owned$_\@example.com" } 1 .. 10);
    t::Resend::start_redis($main::Port, @main::Durable);
    my $deadline = time + 10;
    sleep 0.1 while time < $deadline && (glob("$main::Top/owned/*.seg") || main::redis_own('XLEN', 'resend_confirmation') < 10);
    main::check_every_200_recorded('owned', @answers);
}
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[emerg]



=== TEST 22: a tail damaged while nginx runs (its writer still holds the segment): truncated on replay; the records gauge comes back to 0 once the spool is empty
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
main::spool_while_down(map { "live$_\@example.com" } 1 .. 10);
Test::More::is(main::spool_metrics()->{records}, 10, 'metrics: 10 records waiting');
main::damage_tails();
t::Resend::start_redis($main::Port, @main::Durable);
my $want = 10 - $main::Damaged;
Test::More::is(main::wait_replayed($want), $want, "the $want intact records in the stream");
my $m = main::spool_metrics();
Test::More::is($m->{records}, 0, 'metrics: no record waiting');
Test::More::is($m->{bytes}, 0, 'metrics: no byte on disk');
--- request
GET /metrics
--- error_code: 200
--- error_log eval
qr/\[warn\] .*resend_confirmation: spool "\d+-\d+-\d+\.seg": a (corrupt|torn) record at offset \d+, truncated there \(\d+ bytes dropped\)/



=== TEST 23: a replay Redis refuses (the stream's key holds a string: WRONGTYPE) takes nothing from the fleet limits: once the key is fixed, every record is recorded, none silenced by its own earlier attempt
--- http_config eval: $::SharedSpool
--- config eval: main::endpoint('resend_confirmation_shared_limit $resend_confirmation_email rate=1r/h burst=0;')
--- init
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
main::redis_own('SET', 'resend_confirmation', 'not a stream');
t::Resend::signal_redis('KILL', $main::Port);
my @answers = map { [@{ main::post("wrongtype$_\@example.com") }, "wrongtype$_\@example.com"] } 1 .. 5;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers), 5, 'every answer 200 spooled');
t::Resend::start_redis($main::Port, @main::Durable);
my $log = main::server_root() . '/logs/error.log';
t::Resend::wait_for('a replay refused with WRONGTYPE', 10, sub {
    open my $in, '<', $log or return 0;
    return grep { /refused EVALSHA: WRONGTYPE|refused EVAL: WRONGTYPE/ } <$in>;
});
sleep 1.2;  # and refused again
main::redis_own('DEL', 'resend_confirmation');
Test::More::is(main::wait_replayed(5), 5, 'the 5 records in the stream');
main::check_every_200_recorded('wrongtype', @answers);
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[emerg]



=== TEST 24: a replayed segment the workers cannot delete (its directory made read-only; root only): its records reach Redis, the failure is logged once per worker, and the workers keep serving (no loop on it)
--- http_config eval: "resend_confirmation_spool $::Top/readonly;"
--- config eval: main::endpoint()
--- post_setup_server_root
main::workers_as_nobody('readonly');
--- init
$Test::Nginx::Util::WorkerUser = undef;
SKIP: {
    Test::More::skip('not root: the workers run as this user', 6) unless $> == 0;
    my @answers = main::spool_while_down(map { "stuck$_\@example.com" } 1 .. 10);
    chmod 0555, "$main::Top/readonly";
    t::Resend::start_redis($main::Port, @main::Durable);
    t::Resend::wait_for('the records in Redis', 10, sub { main::redis_own('XLEN', 'resend_confirmation') >= 10 });
    sleep 2;
    main::check_every_200_recorded('stuck', @answers);
    open my $log, '<', main::server_root() . '/logs/error.log' or die;
    my $alerts = grep { /resend_confirmation: spool unlink\(.*\) failed/ } <$log>;
    my $segments = () = glob "$main::Top/readonly/*.seg";
    Test::More::ok($alerts >= 1 && $alerts <= 2 * $segments,
                   "each segment that stays logged once per worker ($alerts lines, $segments segments)");
    Test::More::ok(scalar keys %{ t::Resend::metrics() }, 'the workers answer');
    Test::More::ok(main::spool_metrics()->{bytes} > 0, 'the segments that stay are counted in bytes');
    chmod 0755, "$main::Top/readonly";
}
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[emerg]



=== TEST 25: two directives for one Redis address, two databases: each record is replayed into its own database
--- http_config eval: $::Spool
--- config eval
main::location_for('/r', '127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT db=1')
. main::location_for('/r2', '127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT db=2') . $::Metrics
--- init
main::redis_down();
my @one = map { [@{ main::post("db1.$_\@example.com") }, "db1.$_\@example.com"] } 1 .. 5;
my @two = map { [@{ main::post("db2.$_\@example.com", '/r2') }, "db2.$_\@example.com"] } 1 .. 5;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @one, @two), 10, 'every answer 200 spooled');
t::Resend::start_redis($main::Port, @main::Durable);
my $in = sub { t::Resend::redis({port => $main::Port, db => $_[0]}, 'XLEN', 'resend_confirmation') };
t::Resend::wait_for('the replay', 10, sub { !main::segments() && $in->(1) + $in->(2) >= 10 });
Test::More::is($in->(1), 5, 'db 1: its 5 records');
Test::More::is($in->(2), 5, 'db 2: its 5 records');
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[emerg]



=== TEST 26: records for the second Redis wait in a worker's own segment while the first Redis stays down: replayed once the second is back
--- http_config eval: $::Spool
--- config eval
main::endpoint() . main::second_endpoint()
--- init
main::redis_down();
t::Resend::start_redis($main::Port2, @main::Durable, '--appendfilename', "$main::Port2.aof");
t::Resend::redis({port => $main::Port2}, 'FLUSHALL');
t::Resend::signal_redis('KILL', $main::Port2);
my @answers = map { [@{ main::post("second$_\@example.com", '/r2') }, "second$_\@example.com"] } 1 .. 5;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers), 5, 'every answer 200 spooled');
t::Resend::start_redis($main::Port2, @main::Durable, '--appendfilename', "$main::Port2.aof");
my $len = sub { t::Resend::redis({port => $main::Port2}, 'XLEN', 'resend_confirmation') };
eval { t::Resend::wait_for('the replay into the second Redis', 6, sub { $len->() >= 5 }) };
Test::More::is($len->(), 5, 'its 5 records in the second Redis, the first one still down');
t::Resend::signal_redis('KILL', $main::Port2);
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[emerg]



=== TEST 27: segments the spool's counts do not know of (moved into PATH from elsewhere while nginx runs): replayed all the same (1): records spooled in another PATH
--- http_config eval: "resend_confirmation_spool $::Top/elsewhere;"
--- config eval: main::endpoint()
--- post_setup_server_root
mkdir "$main::Top/elsewhere";
--- init
@main::Kept = main::spool_while_down(map { "moved$_\@example.com" } 1 .. 5);
--- request
GET /metrics
--- error_code: 200



=== TEST 28: (2) the next nginx, on an empty PATH, finds them once they are moved in and replays them
--- http_config eval: $::Spool
--- config eval: main::endpoint('# the next nginx')
--- init
Test::More::is(main::spool_metrics()->{bytes}, 0, 'the spool counts nothing');
system("mv $main::Top/elsewhere/*.seg $main::Top/spool/") == 0 or die "mv failed\n";
t::Resend::start_redis($main::Port, @main::Durable);
Test::More::is(main::wait_replayed(5), 5, 'the 5 records in the stream');
main::check_every_200_recorded('moved', @main::Kept);
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[emerg]



=== TEST 29: damage inside a segment (1): records spooled
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
@main::Kept = main::spool_while_down(map { "inside$_\@example.com" } 1 .. 30);
--- request
GET /metrics
--- error_code: 200



=== TEST 30: (2) one bit flipped in one record's payload, and in another's length: exactly those two are missing, every record after them is replayed; counted, one line for the segment
--- http_config eval: $::Spool
--- config eval: main::endpoint('# the next nginx')
--- post_setup_server_root
my ($file, @records) = main::fullest_segment();
die "too few records in one segment\n" if @records < 6;
main::flip_bit($file, $records[1][0] + 20, 2);  # in the payload: its CRC fails
main::flip_bit($file, $records[3][0] + 1, 3);   # in the length: 2048 bytes longer
@main::Lost = ($records[1][2], $records[3][2]);
--- init
t::Resend::start_redis($main::Port, @main::Durable);
main::wait_replayed(28);
main::check_only_damage_lost();
Test::More::is(main::spool_metrics()->{corrupt_total}, 2, 'metrics: the two damaged records');
Test::More::is(main::log_lines(qr/a corrupt record at offset \d+, skipped/), 1, 'one line for the segment');
Test::More::is(scalar(main::segments()), 0, 'the spool is empty');
--- request
GET /metrics
--- error_code: 200
--- error_log eval
qr/\[warn\] .*resend_confirmation: spool "\d+-\d+-\d+\.seg": a corrupt record at offset \d+, skipped \(\d+ bytes\); the records after it are replayed/
--- no_error_log
[alert]
[emerg]



=== TEST 31: a damaged header (1): records spooled
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
@main::Kept = main::spool_while_down(map { "header$_\@example.com" } 1 .. 20);
--- request
GET /metrics
--- error_code: 200



=== TEST 32: (2) one bit flipped in a segment's magic: its records are read one by one, none is missing
--- http_config eval: $::Spool
--- config eval: main::endpoint('# the next nginx')
--- post_setup_server_root
my ($file) = main::fullest_segment();
main::flip_bit($file, 3, 1);
@main::Lost = ();
--- init
t::Resend::start_redis($main::Port, @main::Durable);
main::wait_replayed(20);
main::check_only_damage_lost();
Test::More::is(scalar(main::segments()), 0, 'the spool is empty');
--- request
GET /metrics
--- error_code: 200
--- error_log eval
qr/\[warn\] .*resend_confirmation: spool "\S+\.seg" has a damaged header: its records are read one by one from the start/
--- no_error_log
[alert]
[emerg]



=== TEST 33: a symlink to a root-owned file and a directory, named like segments: one [warn] each per process, skipped: never followed, counted, nor deleted
--- http_config eval: "resend_confirmation_spool $::Top/planted;"
--- config eval: main::endpoint()
--- post_setup_server_root
mkdir "$main::Top/planted";
open my $out, '>', "$main::Top/root-only" or die;
print $out 'not a segment ' x 400;
close $out;
chmod 0600, "$main::Top/root-only";
utime 1000000000, 1000000000, "$main::Top/root-only";
symlink "$main::Top/root-only", "$main::Top/planted/0000000000001-1-1.seg" or die;
mkdir "$main::Top/planted/0000000000002-1-2.seg";
--- init
my $link = "$main::Top/planted/0000000000001-1-1.seg";
my $dir = "$main::Top/planted/0000000000002-1-2.seg";
# The master at start, then each worker.
eval {
    t::Resend::wait_for('each process\'s lines', 10, sub {
        main::log_lines(qr/\[warn\] .*spool "\Q$link\E" is a symbolic link: skipped/) >= 3
            && main::log_lines(qr/\[warn\] .*spool "\Q$dir\E" is a directory: skipped/) >= 3 });
};
sleep 1.5;  # a second turn of the workers: no more lines
Test::More::is(main::log_lines(qr/spool "\Q$link\E" is a symbolic link: skipped/), 3, 'the link: one line per process');
Test::More::is(main::log_lines(qr/spool "\Q$dir\E" is a directory: skipped/), 3, 'the directory: one line per process');
Test::More::ok(-l $link && -d $dir, 'both left where they are');
my @st = stat "$main::Top/root-only";
Test::More::is("$st[7] $st[9]", 5600 . ' 1000000000', 'the file it points to untouched');
Test::More::is(main::spool_metrics()->{bytes}, 0, 'neither counted');
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[emerg]



=== TEST 34: a FIFO named like a segment: start and nginx -t do not block on it (bounded: a watchdog opens it after 15 s); skipped, left alone
--- http_config eval: "resend_confirmation_spool $::Top/fifo;"
--- config eval: main::endpoint()
--- post_setup_server_root
mkdir "$main::Top/fifo";
POSIX::mkfifo("$main::Top/fifo/0000000000003-1-3.seg", 0600) or die "mkfifo: $!";
main::start_watchdog("$main::Top/fifo/0000000000003-1-3.seg", 15);
--- init
my $fifo = "$main::Top/fifo/0000000000003-1-3.seg";
main::stop_watchdog();
Test::More::ok(!-e "$fifo.unblocked", 'nginx started without waiting on the FIFO');
POSIX::mkfifo($fifo, 0600) unless -p $fifo;  # a module that deleted it is not let off nginx -t
my ($code, $out) = @{ main::nginx_t(15) };
Test::More::is($code, 0, 'nginx -t ends, and passes') or Test::More::diag($out);
Test::More::like($out, qr/\[warn\] .*spool "\Q$fifo\E" is not a regular file: skipped/, 'nginx -t names it');
eval {
    t::Resend::wait_for('a worker\'s line', 10, sub {
        main::log_lines(qr/\[warn\] .*spool "\Q$fifo\E" is not a regular file: skipped/) >= 2 });
};
Test::More::cmp_ok(main::log_lines(qr/spool "\Q$fifo\E" is not a regular file: skipped/), '>=', 2,
                   'the master and the workers skip it');
Test::More::ok(-p $fifo, 'left where it is');
Test::More::is(main::spool_metrics()->{bytes}, 0, 'not counted');
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[emerg]



=== TEST 35: links planted at the old probe names (.probe-<pid>, 3,000 pids ahead) to a file: start and nginx -t never truncate it
--- http_config eval: "resend_confirmation_spool $::Top/probed;"
--- config eval: main::endpoint()
--- post_setup_server_root
mkdir "$main::Top/probed";
open my $out, '>', "$main::Top/victim" or die;
print $out "keep me\n";
close $out;
main::plant_probe_links("$main::Top/probed", "$main::Top/victim", 3000);
--- init
Test::More::is(-s "$main::Top/victim", 8, 'the start left the file alone');
unlink glob "$main::Top/probed/.probe-*";
main::plant_probe_links("$main::Top/probed", "$main::Top/victim", 3000);
my ($code, $out) = @{ main::nginx_t(15) };
Test::More::is($code, 0, 'nginx -t passes') or Test::More::diag($out);
Test::More::is(-s "$main::Top/victim", 8, 'nginx -t left the file alone');
my @left = grep { !-l } glob "$main::Top/probed/.probe-*";
Test::More::is(scalar @left, 0, 'no probe file left behind');
--- request
GET /metrics
--- error_code: 200
--- no_error_log
[alert]
[emerg]
