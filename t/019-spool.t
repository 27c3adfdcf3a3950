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

sub endpoint {
    my @more = @_;
    return join "\n        ", '    location = /r {', 'resend_confirmation;',
        'resend_confirmation_redis 127.0.0.1:$TEST_NGINX_OWN_REDIS_PORT connect_timeout=200ms timeout=300ms;',
        'resend_confirmation_redis_failure spool;', @more,
        'add_header X-Outcome $resend_confirmation_outcome always;',
        'add_header X-Request-Id $request_id always;' . "\n    }\n"
        . "    location = /metrics { resend_confirmation_metrics; }\n";
}

our $Spool = 'resend_confirmation_spool $TEST_NGINX_SPOOL;';

# post($email): one request on its own connection: [status, outcome, request_id].
sub post {
    my ($email) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984)
        or die "cannot connect to nginx: $!\n";
    my $body = qq({"email":"$email"});
    print $sock "POST /r HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
              . "Content-Type: application/json\r\nContent-Length: " . length($body) . "\r\n\r\n$body";
    my $response = do { local $/; <$sock> } // '';
    my ($status) = $response =~ m{\AHTTP/1\.1 (\d+)};
    my ($outcome) = $response =~ m{^X-Outcome: (\S+)}mi;
    my ($id) = $response =~ m{^X-Request-Id: (\S+)}mi;
    return [$status // 0, $outcome // '', $id // ''];
}

# The scrape's spool samples, as {name => value}.
sub spool_metrics {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984)
        or die "cannot connect to nginx: $!\n";
    print $sock "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    my $response = do { local $/; <$sock> } // '';
    return { $response =~ /^resend_confirmation_spool_(\w+) (\S+)$/mg };
}

sub segments { my @s = glob "$Top/spool/*.seg"; return @s }

sub redis_own { t::Resend::redis({port => $Port}, @_) }

# The stream's entries as {email => [request_id, ...]}.
sub stream_ids {
    my $entries = redis_own('XRANGE', 'resend_confirmation', '-', '+');
    my %ids;
    for my $entry (@$entries) {
        my %f = @{ $entry->[1] };
        push @{ $ids{$f{email}} }, $f{request_id};
    }
    return \%ids;
}

# Waits (up to `seconds`) until the stream holds `n` entries and the spool
# is empty; returns the stream's length.
sub wait_replayed {
    my ($n, $seconds) = @_;
    my $deadline = time + ($seconds // 10);
    my $len = 0;
    while (time < $deadline) {
        $len = redis_own('XLEN', 'resend_confirmation');
        last if $len >= $n && !segments() && !glob("$Top/tmpfs/*.seg");
        sleep 0.05;
    }
    sleep 0.2;  # nothing more comes
    return redis_own('XLEN', 'resend_confirmation');
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
    my $len = wait_replayed($sent, 15);
    my $ids = stream_ids();
    my @missing = map { my $c = $_; grep { !$ids->{$_} } map { "load$c.$_\@example.com" } 1 .. $each }
                  1 .. $clients;
    Test::More::is(scalar @missing, 0, 'every record in the stream') or Test::More::diag("missing: @missing");
    my $dupes = $len - keys %$ids;
    Test::More::diag("$dupes duplicates (same request_id) of $sent") if $dupes;
    my $foreign = grep { my %s = map { $_ => 1 } @$_; keys(%s) > 1 } values %$ids;
    Test::More::is($foreign, 0, 'duplicates only with the same request_id');
}

our @Kept;  # answers of one block checked in a later one

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
t::Resend::signal_redis('KILL', $main::Port) if $t::Resend::Started{$main::Port};
my @answers = map { [@{ main::post("down$_\@example.com") }, "down$_\@example.com"] } 1 .. 20;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers), 20, 'every answer 200 spooled');
Test::More::ok(scalar(main::segments()) >= 1, 'segment files on disk');
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
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



=== TEST 6: Redis killed under load and back 2 s later: every answer 200; every record in the stream
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
my $result = "$main::Top/load";
my $pid = fork // die;
if (!$pid) {
    my ($ok, $sent) = t::Resend::load_posts(4, 250, '/r');
    open my $out, '>', $result;
    print $out "$ok $sent";
    close $out;
    POSIX::_exit(0);
}
sleep 0.3;
t::Resend::signal_redis('KILL', $main::Port);
sleep 2;
t::Resend::start_redis($main::Port, @main::Durable);
waitpid $pid, 0;
my ($ok, $sent) = split ' ', do { open my $in, '<', $result; <$in> };
Test::More::is($ok, $sent, "every answer 200 ($sent)");
main::check_load(4, 250, $sent);
--- request
GET /metrics
--- response_body_like
resend_confirmation_requests_total\{location="/r",outcome="spooled"\} [1-9]\d*
--- no_error_log
[alert]
[crit]
[emerg]



=== TEST 7: kill -9 of the workers while Redis is down: the new workers adopt their segments, nothing lost
--- http_config eval: $::Spool
--- config eval: main::endpoint()
--- init
t::Resend::signal_redis('KILL', $main::Port) if $t::Resend::Started{$main::Port};
my @answers = map { [@{ main::post("killed$_\@example.com") }, "killed$_\@example.com"] } 1 .. 20;
Test::More::is(scalar(grep { $_->[0] == 200 } @answers), 20, 'every answer 200');
my $master = t::Resend::master_pid();
my @workers = split ' ', `ps -o pid= --ppid $master`;
kill 'KILL', @workers;
sleep 0.5;
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
Test::More::is(main::wait_replayed(20), 20, 'the 20 records in the stream');
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
t::Resend::signal_redis('KILL', $main::Port) if $t::Resend::Started{$main::Port};
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
main::redis_own('FLUSHALL');
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
t::Resend::signal_redis('KILL', $main::Port) if $t::Resend::Started{$main::Port};
@main::Kept = map { [@{ main::post("tail$_\@example.com") }, "tail$_\@example.com"] } 1 .. 10;
Test::More::is(scalar(grep { $_->[0] == 200 } @main::Kept), 10, 'every answer 200');
--- request
GET /metrics
--- error_code: 200



=== TEST 11: (2) the last record of each segment damaged (a flipped byte, or torn): truncated there with one line each, the rest replayed
--- http_config eval: $::Spool
--- config eval: main::endpoint('# the next nginx')
--- post_setup_server_root
my $i = 0;
$main::Damaged = 0;
for my $file (main::segments()) {
    my $size = -s $file;
    next if $size <= 16;
    if ($i++ % 2 == 0) {
        open my $fh, '+<', $file or die;
        binmode $fh;
        sysseek $fh, $size - 3, 0;
        sysread $fh, my $byte, 1;
        sysseek $fh, $size - 3, 0;
        syswrite $fh, chr(ord($byte) ^ 0x01);
        close $fh;
    } else {
        truncate $file, $size - 5;
    }
    $main::Damaged++;
}
--- init
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
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
t::Resend::signal_redis('KILL', $main::Port) if $t::Resend::Started{$main::Port};
my @answers = map { [@{ main::post("full$_\@example.com") }, "full$_\@example.com"] } 1 .. 40;
my $spooled = grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers;
my $refused = grep { "$_->[0] $_->[1]" eq '503 redis_error' } @answers;
Test::More::ok($spooled > 5 && $spooled < 40, "some spooled ($spooled)");
Test::More::is($spooled + $refused, 40, 'the rest 503');
Test::More::is(join('', map { $_->[0] == 200 ? 'a' : 'b' } @answers), 'a' x $spooled . 'b' x $refused,
               '503s once full, not before');
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
Test::More::is(main::wait_replayed($spooled), $spooled, 'every 200 in the stream');
main::check_every_200_recorded('full', @answers);
my ($after) = main::post('after@example.com');
Test::More::is("$after->[0] $after->[1]", '200 accepted', 'room again once replayed');
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
    t::Resend::signal_redis('KILL', $main::Port) if $t::Resend::Started{$main::Port};
    my @answers;
    for my $n (1 .. 600) {
        push @answers, [@{ main::post("tmpfs$n\@example.com") }, "tmpfs$n\@example.com"];
        last if $answers[-1][0] == 503 && @answers > 5 && $answers[-6][0] == 503;
    }
    my $spooled = grep { $_->[0] == 200 } @answers;
    Test::More::ok($spooled > 100, "spooled until the disk is full ($spooled)");
    Test::More::is($answers[-1][0], 503, '503 once full');
    t::Resend::start_redis($main::Port, @main::Durable);
    main::redis_own('FLUSHALL');
    my $deadline = time + 10;
    sleep 0.1 while time < $deadline && main::redis_own('XLEN', 'resend_confirmation') < $spooled;
    sleep 0.3;
    Test::More::is(main::redis_own('XLEN', 'resend_confirmation'), $spooled, 'every 200 in the stream');
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
t::Resend::signal_redis('KILL', $main::Port) if $t::Resend::Started{$main::Port};
my ($ok, $sent) = t::Resend::load_posts(4, 100, '/r');
Test::More::is($ok, $sent, "every answer 200 ($sent)");
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
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
t::Resend::signal_redis('KILL', $main::Port) if $t::Resend::Started{$main::Port};
my @answers = map { [@{ main::post("always$_\@example.com") }, "always$_\@example.com"] } 1 .. 10;
Test::More::is(scalar(grep { "$_->[0] $_->[1]" eq '200 spooled' } @answers), 10, 'every answer 200 spooled');
t::Resend::start_redis($main::Port, @main::Durable);
main::redis_own('FLUSHALL');
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
