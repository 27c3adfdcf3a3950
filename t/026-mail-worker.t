# The reference mail worker (examples/mail-worker, issue 22), end to end:
# real nginx with the module, the test Redis, a real SMTP server
# (t/smtp-sink on Debian's python3-aiosmtpd) and the worker on Debian's
# python3-redis. One mail per request_id, whatever copies the stream holds
# and wherever a worker dies; nothing acknowledged that the SMTP server did
# not accept. Every wait is bounded and waits for a state (mails on disk, the
# group's pending list), never for a time.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use File::Temp ();
use IO::Socket::INET;
use POSIX ();

# Debian's Python, where python3-redis is (a python3 of pyenv or a venv
# earlier in PATH would not have it).
our $Python = $ENV{TEST_PYTHON3} || '/usr/bin/python3';
system($Python, '-c', 'import redis, aiosmtpd') == 0
    or die "$Python cannot import redis and aiosmtpd: run scripts/install-deps\n";

our $Top = File::Temp::tempdir(CLEANUP => 1);
our $Smtp = "$Top/smtp";
mkdir $Smtp;
our $SmtpPort = do {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1) or die $!;
    my $port = $s->sockport;
    close $s;
    $port;
};
our $Sink = t::Resend::spawn('t/smtp-sink', $SmtpPort, $Smtp);
t::Resend::wait_for('the SMTP server', 20, sub { -e "$Smtp/ready" });
END { if ($Sink) { kill 'TERM', $Sink; waitpid $Sink, 0 } }

our $Secret = "$Top/secret.key";
open my $key, '>', $Secret or die $!;
print $key "0123456789abcdef0123456789abcdef\n";
close $key;

our $Metrics = "    location = /metrics { resend_confirmation_metrics; }\n";

# worker($consumer, [{ENV => value},] @options): the worker as a process of
# its own, its log in a file; returns {pid, log}.
our ($Started, %Running) = (0);
sub worker {
    my ($consumer, @options) = @_;
    my %env = ref $options[0] eq 'HASH' ? %{ shift @options } : ();
    my $log = "$Top/worker-" . ++$Started . ".log";
    my $pid = fork // die "fork: $!";
    if (!$pid) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $log;
        delete $ENV{$_} for grep { /^RESEND_MAIL_/ } keys %ENV;
        @ENV{keys %env} = values %env;
        { exec $Python, 'examples/mail-worker/resend_mail_worker.py',
              '--redis-url', "redis://127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT}/0",
              '--smtp-host', '127.0.0.1', '--smtp-port', $SmtpPort,
              '--from', 'Quiva <no-reply@quiva.ai>', '--block', 200, '--consumer', $consumer, @options }
        POSIX::_exit(127);
    }
    $Running{$pid} = 1;
    return {pid => $pid, log => $log};
}
END { kill 'KILL', $_ for keys %Running }

sub worker_log {
    my ($w) = @_;
    open my $in, '<', $w->{log} or return '';
    local $/;
    return <$in>;
}

# stop_worker($w, $signal): signals it and waits (bounded) for its exit;
# returns its wait status.
sub stop_worker {
    my ($w, $signal) = @_;
    kill $signal // 'TERM', $w->{pid};
    t::Resend::wait_for("the worker's exit", 15, sub { waitpid($w->{pid}, POSIX::WNOHANG()) == $w->{pid} });
    delete $Running{$w->{pid}};
    return $?;
}

# Waits (bounded) until the worker stands still at its test pause, then
# kills it there (SIGKILL).
sub kill_at_pause {
    my ($w) = @_;
    t::Resend::wait_for('the test pause', 20, sub { worker_log($w) =~ /test pause: / });
    stop_worker($w, 'KILL');
}

# Each block starts with an empty Redis, no mail and an SMTP server that
# answers at once.
sub fresh {
    t::Resend::redis('FLUSHALL');
    unlink glob("$Smtp/mail/*"), glob("$Smtp/mail/.*.eml"), "$Smtp/hold", "$Smtp/held", "$Smtp/tempfail";
}

sub touch { open my $out, '>', $_[0] or die "$_[0]: $!"; close $out }

# The mails the SMTP server accepted, as {header name (lowercase) => value, body}.
sub mails {
    my @mails;
    for my $file (sort glob "$Smtp/mail/*.eml") {
        open my $in, '<', $file or next;
        my ($head, $body) = split /\r?\n\r?\n/, do { local $/; <$in> }, 2;
        my %mail = (body => $body);
        $mail{lc $1} = $2 while $head =~ /^([\w-]+): (.*?)\r?$/mg;
        push @mails, \%mail;
    }
    return @mails;
}

# Whether the group has read every stream to its end and acknowledged all it read.
sub drained {
    for my $stream (@_) {
        my %stream = @{ t::Resend::redis('XINFO', 'STREAM', $stream) };
        my ($group) = grep { my %g = @$_; $g{name} eq 'mailers' } @{ t::Resend::redis('XINFO', 'GROUPS', $stream) };
        my %group = @{ $group // return 0 };
        return 0 if $group{pending} != 0 || $group{'last-delivered-id'} ne $stream{'last-generated-id'};
    }
    return 1;
}

# Waits (bounded) until at least $n mails are in and the streams are
# drained: from then on no more can come (nothing is pending or unread).
sub wait_mailed {
    my ($n, @streams) = @_;
    @streams = ('resend_confirmation') unless @streams;
    t::Resend::wait_for("$n mails, every entry acknowledged", 30, sub { mails() >= $n && drained(@streams) });
}

# The request_ids of a stream, each once, and {request_id => email}.
sub stream_ids {
    my ($once) = t::Resend::stream_requests(undef, $_[0]);
    my %email = map { my %f = @$_; ($f{request_id} => $f{email}) } @$once;
    return \%email;
}

# check_mails($name, {request_id => email}, @twice): one mail per
# request_id, to its address, none other (those of @twice: two each).
sub check_mails {
    my ($name, $want, @twice) = @_;
    my (%count, @wrong);
    for my $mail (mails()) {
        my $id = $mail->{'x-resend-confirmation-request-id'} // '';
        $count{$id}++;
        push @wrong, $id if ($want->{$id} // '') ne $mail->{to}
            || $mail->{'x-envelope-to'} ne $mail->{to}
            || $mail->{'message-id'} ne "<resend-confirmation.$id\@quiva.ai>";
    }
    my %twice = map { $_ => 1 } @twice;
    my @missing = grep { !$count{$_} } sort keys %$want;
    my @extra = grep { !exists $want->{$_} } sort keys %count;
    my @wrong_count = grep { $count{$_} != ($twice{$_} ? 2 : 1) } grep { $count{$_} } sort keys %$want;
    Test::More::is("@missing", '', "$name: no request without its mail");
    Test::More::is("@extra", '', "$name: no mail without its request");
    Test::More::is("@wrong_count", '', "$name: one mail per request_id" . (@twice ? " (@twice: two)" : ''));
    Test::More::is("@wrong", '', "$name: each to its address, its request_id in Message-ID");
}

sub post {
    my ($email) = @_;
    return t::Resend::post_once($ENV{TEST_NGINX_SERVER_PORT} || 1984, '/r', qq({"email":"$email"}));
}

sub post_all {
    my ($name, @emails) = @_;
    my $ok = grep { post($_) } @emails;
    Test::More::is($ok, scalar @emails, "$name: every request answered 200");
}

# Ten requests recorded, then a worker that reads them in one batch and is
# killed at a test pause of its fourth mail; returns the ten request_ids.
sub killed_mid_batch {
    my ($point, @options) = @_;
    post_all('batch', map { "Batch$_\@Example.com" } 1 .. 10);
    my $w = worker('w1', {RESEND_MAIL_WORKER_TEST_PAUSE => "$point:4"}, @options);
    kill_at_pause($w);
    Test::More::is(scalar(mails()), $point eq 'claimed' ? 3 : 4, "killed at $point of the fourth mail");
    return stream_ids();
}

resend_defaults(config => $Endpoint);
no_shuffle();
run_tests();

__DATA__

=== TEST 1: N accepted requests, N mails: each to its address, as sent; a SIGTERM stops the idle worker (exit 0)
--- config eval: $t::Resend::Endpoint . $::Metrics
--- init
main::fresh();
main::post_all('before', map { "Before.$_\@Example.com" } 1 .. 10);
my $w = main::worker('w1');
main::post_all('while', map { "while+$_\@example.org" } 1 .. 10);
main::wait_mailed(20);
my $want = main::stream_ids();
Test::More::is(scalar(keys %$want), 20, '20 records');
main::check_mails('20 requests', $want);
my ($mail) = grep { $_->{to} eq 'Before.1@Example.com' } main::mails();
Test::More::is("$mail->{from}|$mail->{subject}|$mail->{'auto-submitted'}",
               'Quiva <no-reply@quiva.ai>|Confirm your account|auto-generated', 'the headers');
Test::More::like($mail->{body}, qr/registered\s+with Before\.1\@Example\.com again/, 'the template filled in');
Test::More::is(main::stop_worker($w), 0, 'SIGTERM: exit 0');
Test::More::like(main::worker_log($w), qr/SIGTERM: stopping after the current mail.*\n.* stopped\n\z/, 'logged');
Test::More::unlike(main::worker_log($w), qr/example\.(?:com|org)/i, 'no address in the log');
--- request
GET /metrics
--- response_body_like
resend_confirmation_requests_total\{location="/r",outcome="accepted"\} 20



=== TEST 2: requests silenced by a limit (a local zone, a shared limit) get no mail; the silenced stream is not read, even by a pattern
--- http_config eval
"$t::Resend::Redis
resend_confirmation_limit_secret $::Secret;
resend_confirmation_limit_zone \$resend_confirmation_email zone=email:1m rate=1r/h;"
--- config eval
"    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=email burst=3 silent;
        resend_confirmation_shared_limit \$resend_confirmation_mailbox rate=1r/h burst=1;
    }
$::Metrics"
--- init
main::fresh();
main::post_all('victim', ('victim@example.com') x 6);
Test::More::is(t::Resend::redis('XLEN', 'resend_confirmation'), 2, 'two recorded');
my $silenced = 'resend_confirmation:silenced:{resend_confirmation}';
Test::More::cmp_ok(t::Resend::redis('XLEN', $silenced), '>=', 1, 'the silenced stream is written');
my $w = main::worker('w1', '--stream-pattern', 'resend_confirmation*');
main::wait_mailed(2);
main::check_mails('silenced', main::stream_ids());
Test::More::is_deeply(t::Resend::redis('XINFO', 'GROUPS', $silenced), [], 'no group on the silenced stream');
Test::More::is(main::stop_worker($w), 0, 'exit 0');
--- request
GET /metrics
--- response_body_like
outcome="silenced"\} 4



=== TEST 3: a record replayed twice (the same request_id twice in the stream, as the spool can write it): one mail; also when two workers get the two copies at once
--- init
main::fresh();
main::post_all('one', 'once@example.com');
my $w = main::worker('w1');
main::wait_mailed(1);
my ($entry) = @{ t::Resend::redis('XRANGE', 'resend_confirmation', '-', '+') };
t::Resend::redis('XADD', 'resend_confirmation', '*', @{ $entry->[1] });
main::wait_mailed(1);
main::check_mails('a copy after the mail', main::stream_ids());
Test::More::like(main::worker_log($w), qr/already mailed \(a duplicate\): acknowledged/, 'the copy acknowledged');
main::stop_worker($w);
main::fresh();
t::Resend::redis('DEL', 'resend_confirmation');
main::post_all('ten', map { "copy$_\@example.com" } 1 .. 10);
# each record twice, the copy right behind it: two workers reading one at
# a time get the two copies at once
my @entries = @{ t::Resend::redis('XRANGE', 'resend_confirmation', '-', '+') };
t::Resend::redis('DEL', 'resend_confirmation');
t::Resend::redis('XADD', 'resend_confirmation', '*', @{ $_->[1] }) for map { ($_, $_) } @entries;
my @w = map { main::worker("w$_", '--count', 1, '--idle', 300) } 1, 2;
main::wait_mailed(10);
main::check_mails('two copies each, two workers', main::stream_ids());
Test::More::is(main::stop_worker($_), 0, 'exit 0') for @w;
--- request
GET /r
--- error_code: 405



=== TEST 4: a worker killed (SIGKILL) mid-batch after its fourth mail was marked sent, before the XACK; restarted under its name: no mail lost, none twice
--- init
main::fresh();
my $want = main::killed_mid_batch('marked');
my $w = main::worker('w1');
main::wait_mailed(10);
main::check_mails('after the restart', $want);
Test::More::like(main::worker_log($w), qr/already mailed \(a duplicate\): acknowledged/,
                 'the fourth read again from its pending list, acknowledged without a mail');
main::stop_worker($w);
--- request
GET /r
--- error_code: 405



=== TEST 5: a worker killed while it holds the claim of its fourth mail, before SMTP; another consumer takes its entries over (XAUTOCLAIM) and sends the fourth once the claim expires
--- init
main::fresh();
my $want = main::killed_mid_batch('claimed', '--claim-ttl', 4000);
my %fourth = @{ t::Resend::redis('XRANGE', 'resend_confirmation', '-', '+')->[3][1] };
Test::More::like(t::Resend::redis('GET', "resend_confirmation:sent:$fourth{request_id}"), qr/^sending w1 /,
                 "the dead worker's claim on the fourth is still there");
my $w = main::worker('w2', '--idle', 300, '--claim-ttl', 4000);
main::wait_mailed(10);
main::check_mails('taken over', $want);
Test::More::like(main::worker_log($w), qr/entries idle for 300 ms taken over/, 'XAUTOCLAIM');
my $pending = t::Resend::redis('XPENDING', 'resend_confirmation', 'mailers');
Test::More::is($pending->[0], 0, 'nothing pending');
main::stop_worker($w);
--- request
GET /r
--- error_code: 405



=== TEST 6: the window that remains: killed after the SMTP server accepted the fourth mail, before it was marked sent: that one mail goes twice (same Message-ID), none is lost
--- init
main::fresh();
my $want = main::killed_mid_batch('sent', '--claim-ttl', 1000);
my $w = main::worker('w1', '--idle', 300, '--claim-ttl', 1000);
main::wait_mailed(11);
my ($fourth) = map { $_->{'x-resend-confirmation-request-id'} } (main::mails())[3];
main::check_mails('the window', $want, $fourth);
main::stop_worker($w);
--- request
GET /r
--- error_code: 405



=== TEST 7: SIGTERM while a mail is with the SMTP server: that mail is finished and acknowledged, the worker exits 0, the rest stay pending for the next run
--- init
main::fresh();
main::post_all('batch', map { "term$_\@example.com" } 1 .. 10);
main::touch("$main::Smtp/hold");
my $w = main::worker('w1');
t::Resend::wait_for('a mail held at DATA', 20, sub { -e "$main::Smtp/held" });
kill 'TERM', $w->{pid};
t::Resend::wait_for('the SIGTERM logged', 10, sub { main::worker_log($w) =~ /SIGTERM/ });
unlink "$main::Smtp/hold";
Test::More::is(main::stop_worker($w, 0), 0, 'exit 0');
Test::More::is(scalar(main::mails()), 1, 'the mail in flight was finished');
my $pending = t::Resend::redis('XPENDING', 'resend_confirmation', 'mailers');
Test::More::is($pending->[0], 9, 'it was acknowledged; the other nine of the batch are pending');
my $next = main::worker('w1');
main::wait_mailed(10);
main::check_mails('after the next run', main::stream_ids());
main::stop_worker($next);
--- request
GET /r
--- error_code: 405



=== TEST 8: the SMTP server answers 451 for a while: nothing acknowledged, mailed once it takes mail again; a recipient refused for good (550): acknowledged, no mail
--- init
main::fresh();
main::touch("$main::Smtp/tempfail");
main::post_all('two', 'later@example.com', 'refused.user@example.com');
my $w = main::worker('w1', '--idle', 300);
t::Resend::wait_for('a 451 and a 550 logged', 20,
                    sub { main::worker_log($w) =~ /\(451, .*\n(?s:.*)refused by the SMTP server for good \(550 / });
my $pending = t::Resend::redis('XPENDING', 'resend_confirmation', 'mailers');
Test::More::is($pending->[0], 1, 'the 451 mail is pending; the refused one acknowledged');
unlink "$main::Smtp/tempfail";
main::wait_mailed(1);
my $ids = main::stream_ids();
delete @$ids{ grep { $ids->{$_} =~ /^refused/ } keys %$ids };
main::check_mails('retried', $ids);
main::stop_worker($w);
--- request
GET /r
--- error_code: 405



=== TEST 9: several streams (shards): one group on each, read by one worker
--- config eval
"    location = /r {
        resend_confirmation;
        resend_confirmation_stream \"rc:{1}\";
    }
    location = /r2 {
        resend_confirmation;
        resend_confirmation_stream \"rc:{2}\";
    }"
--- init
main::fresh();
main::post_all('first', map { "one$_\@example.com" } 1 .. 5);
Test::More::is(scalar(grep { t::Resend::post_once($ENV{TEST_NGINX_SERVER_PORT} || 1984, '/r2', qq({"email":"two$_\@example.com"})) } 1 .. 5),
               5, 'second: every request answered 200');
my $w = main::worker('w1', '--stream', 'rc:{1}', '--stream', 'rc:{2}');
main::wait_mailed(10, 'rc:{1}', 'rc:{2}');
main::check_mails('two streams', {%{ main::stream_ids('rc:{1}') }, %{ main::stream_ids('rc:{2}') }});
Test::More::is(scalar(@{ t::Resend::redis('XINFO', 'GROUPS', $_) }), 1, "a group on $_") for 'rc:{1}', 'rc:{2}';
main::stop_worker($w);
--- request
GET /r
--- error_code: 405
