# Shared by the t/*.t files: the contract's fixed bodies, and defaults every
# block gets unless it sets its own. Loaded as `use t::Resend;` (prove -I .),
# after `use Test::Nginx::Socket`, so it works under upstream Test::Nginx too.
package t::Resend;

use strict;
use warnings;
use Exporter 'import';
use File::Temp ();
use IO::Socket::INET;
use POSIX ();
use Test::More ();
use Time::HiRes ();

our @EXPORT = qw($Accepted $TooLarge $InvalidJson $InvalidRequest $InvalidEmail
                 $NotAllowed $UnsupportedMediaType $Unavailable $Endpoint $Redis
                 resend_defaults redis start_redis signal_redis background_post load_posts master_pid
                 cors_http_config $CorsLocation $NginxDebug);

# Whether the nginx under test was built --with-debug and logs at debug
# level (TEST_NGINX_LOG_LEVEL): assertions on debug log lines are skipped
# otherwise (nginx.org's packages, for one; t/check-sanitized-module logs at info).
our $NginxDebug = `$Test::Nginx::Util::NginxBinary -V 2>&1` =~ /--with-debug/
                  && ($ENV{TEST_NGINX_LOG_LEVEL} || 'debug') eq 'debug' ? 1 : 0;

# The Redis the tests record into: t/run starts one; under upstream
# Test::Nginx start your own and set TEST_NGINX_REDIS_PORT.
$ENV{TEST_NGINX_REDIS_PORT} ||= 6379;
our $Redis = "resend_confirmation_redis 127.0.0.1:$ENV{TEST_NGINX_REDIS_PORT};";

our $Accepted = '{"data":{"message":"Please check your inbox. If a root account is associated with this email and remains unconfirmed, a reconfirmation message should have been sent."}}';
our $TooLarge = '{"error":{"code":"payload_too_large","message":"The request body is too large."}}';
our $InvalidJson = '{"error":{"code":"invalid_json","message":"The request body is not valid JSON."}}';
our $InvalidRequest = '{"error":{"code":"invalid_request","message":"The request body must be a JSON object with one string member named email."}}';
our $InvalidEmail = '{"error":{"code":"invalid_email","message":"The email address is not valid."}}';
our $NotAllowed = '{"error":{"code":"method_not_allowed","message":"Only POST is allowed on this endpoint."}}';
our $Unavailable = '{"error":{"code":"unavailable","message":"The service is temporarily unavailable; retry later."}}';
our $UnsupportedMediaType = '{"error":{"code":"unsupported_media_type","message":"The request body must be sent as application/json."}}';

# The endpoint at /r, its outcome in a header for the tests to read.
our $Endpoint = <<'_EOC_';
    location = /r {
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
_EOC_

# How long nginx took over a request, in a header (timed_result() reads it):
# for a location of a test that bounds the time, measured where the deadline
# is kept, not by a client that a loaded machine may schedule late.
our $RequestTime = 'add_header X-Request-Time $request_time always;';
(our $TimedEndpoint = $Endpoint) =~ s/(\n    \})/\n        $RequestTime$1/;

# CORS as the README and nginx.conf.example show it (nginx's own map,
# add_header and if; t/025-cors.t checks that the example has these lines):
# cors_http_config($origin) for the http level, the one origin allowed;
# $CorsLocation for the endpoint's location, before `resend_confirmation;`.
sub cors_http_config {
    my ($origin) = @_;
    return <<"_EOC_";
    map \$http_origin \$cors_origin {
        default "";
        "$origin" \$http_origin;
    }
    map "\$request_method \$http_access_control_request_method" \$cors_preflight {
        default 0;
        "~^OPTIONS ." 1;
    }
_EOC_
}

our $CorsLocation = <<'_EOC_';
        add_header Access-Control-Allow-Origin $cors_origin always;
        add_header Access-Control-Expose-Headers Retry-After always;
        add_header Vary Origin always;
        if ($cors_preflight) {
            add_header Access-Control-Allow-Origin $cors_origin always;
            add_header Access-Control-Allow-Methods POST always;
            add_header Access-Control-Allow-Headers Content-Type always;
            add_header Access-Control-Max-Age 86400 always;
            add_header Vary Origin always;
            return 204;
        }
_EOC_

# resend_defaults(section => value, ...): each block gets these sections
# unless it has its own. Every block also records into the test Redis
# (http_config), starts with it empty (init), and checks that nginx logged no
# [alert], [crit] or [emerg] (bad input must never produce them).
sub resend_defaults {
    my %defaults = (
        no_error_log => "[alert]\n[crit]\n[emerg]",
        http_config => $Redis,
        init => 't::Resend::redis("FLUSHALL")',
        @_,
    );
    main::add_block_preprocessor(sub {
        my $block = shift;
        for my $section (sort keys %defaults) {
            $block->set_value($section, $defaults{$section})
                unless defined $block->$section;
        }
    });
}

our (%Started, %Password);  # of start_redis()

# redis(@command) or redis({port => N, db => D, host => A}, @command): one command to
# Redis, its reply as Perl data (arrays as array refs, errors "ERR: ...");
# AUTH first where start_redis() set a password.
sub redis {
    my %opt = ref $_[0] ? %{ shift() } : ();
    my $port = $opt{port} // $ENV{TEST_NGINX_REDIS_PORT};
    my $sock = IO::Socket::INET->new(PeerAddr => $opt{host} // '127.0.0.1', PeerPort => $port,
                                     Timeout => 3)
        or die "cannot connect to redis on port $port: $!\n";
    binmode $sock;
    my @commands = ($Password{$port} ? (['AUTH', $Password{$port}]) : (),
                    $opt{db} ? (['SELECT', $opt{db}]) : (), [@_]);
    my $reply;
    for my $args (@commands) {
        print $sock '*' . @$args . "\r\n", map { '$' . length($_) . "\r\n$_\r\n" } @$args;
        $reply = read_reply($sock);
    }
    close $sock;
    return $reply;
}

# A port nothing listens on now, for a helper server of a test's own
# (chromedriver, Prometheus): the kernel's choice for a socket bound to 0.
sub free_port {
    my $s = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => 0, Listen => 1)
        or die "no free port: $!\n";
    return $s->sockport;
}

# The pid of the nginx master the harness started (tests that reload it).
sub master_pid {
    open my $in, '<', main::server_root() . '/logs/nginx.pid' or die "no pid file: $!\n";
    chomp(my $pid = <$in>);
    return $pid;
}

# A Redis of the test's own on `port` (one the test can kill or stop);
# started once and reused by later blocks until killed. With
# '--requirepass', 'SECRET' among the arguments, redis() authenticates there.
sub start_redis {
    my ($port, @args) = @_;
    return $Started{$port} if $Started{$port} && kill 0, $Started{$port};
    my %named = @args % 2 ? () : @args;
    $Password{$port} = $named{'--requirepass'};
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        exec 'redis-server', '--port', $port, '--bind', '127.0.0.1', '--save', '',
             '--appendonly', 'no', '--logfile', '/dev/null', @args;
        exit 127;
    }
    for (1 .. 100) {
        last if eval { redis({port => $port}, 'PING') eq 'PONG' };
        select undef, undef, undef, 0.05;
    }
    return $Started{$port} = $pid;
}

# Certificates made with the openssl CLI in `dir`: a CA (ca.crt), Redis's
# certificate for 127.0.0.1 and localhost signed by it (server.crt/.key), a
# client certificate (client.crt/.key), and another CA that signed none of
# them (other-ca.crt).
sub tls_certificates {
    my ($dir) = @_;
    my $openssl = sub { system('openssl', @_) == 0 or die "openssl @_ failed\n" };
    open my $stderr, '>&', \*STDERR or die;
    open STDERR, '>', '/dev/null' or die;
    for my $ca (qw(ca other-ca)) {
        $openssl->('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2', '-subj', "/CN=test $ca",
                   '-keyout', "$dir/$ca.key", '-out', "$dir/$ca.crt");
    }
    open my $ext, '>', "$dir/server.ext" or die;
    print $ext "subjectAltName=IP:127.0.0.1,DNS:localhost\n";
    close $ext;
    for my $name (qw(server client)) {
        $openssl->('req', '-newkey', 'rsa:2048', '-nodes', '-subj', "/CN=$name",
                   '-keyout', "$dir/$name.key", '-out', "$dir/$name.csr");
        $openssl->('x509', '-req', '-days', '2', '-in', "$dir/$name.csr", '-CA', "$dir/ca.crt",
                   '-CAkey', "$dir/ca.key", '-CAcreateserial', '-out', "$dir/$name.crt",
                   $name eq 'server' ? ('-extfile', "$dir/server.ext") : ());
    }
    open STDERR, '>&', $stderr or die;
}

# spawn(@command): runs the command in a child process; returns its pid.
sub spawn {
    my @command = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        { exec @command }
        POSIX::_exit(127);
    }
    return $pid;
}

# spawn_logged($log, @command): spawn() in a process group of its own (a
# browser, Prometheus: whatever it starts goes with it), its output appended
# to the file $log. stop_group($pid) ends the group (TERM, KILL after 5 s).
sub spawn_logged {
    my ($log, @command) = @_;
    my $pid = fork // die "fork: $!";
    if ($pid == 0) {
        POSIX::setpgid(0, 0);
        open STDOUT, '>>', $log;
        open STDERR, '>>', $log;
        { exec @command }
        POSIX::_exit(127);
    }
    return $pid;
}

sub stop_group {
    my ($pid) = @_;
    kill 'TERM', -$pid;
    my $until = Time::HiRes::time() + 5;
    while (waitpid($pid, POSIX::WNOHANG()) == 0) {
        if (Time::HiRes::time() > $until) { kill 'KILL', -$pid; waitpid $pid, 0; last }
        select undef, undef, undef, 0.05;
    }
}

# wait_for($what, $seconds, $check): until $check->() is true (errors count
# as false), every 0.1 s; dies naming $what after $seconds.
sub wait_for {
    my ($what, $seconds, $check) = @_;
    my $until = Time::HiRes::time() + $seconds;
    while (Time::HiRes::time() < $until) {
        return 1 if eval { $check->() };
        select undef, undef, undef, 0.1;
    }
    die "timed out waiting for $what\n";
}

sub signal_redis {
    my ($signal, $port) = @_;
    my $pid = $Started{$port} or die "no redis of ours on port $port\n";
    kill $signal, $pid;
    if ($signal eq 'KILL' or $signal eq 'TERM') {
        waitpid $pid, 0;
        delete $Started{$port};
    }
}

END { kill 'KILL', $_ for values %Started }

# timed_post($uri, $body): one JSON POST sent from a child process, so that
# it can wait on nginx while the caller goes on; timed_result() waits for it
# and returns (seconds it took, status, whole response): the seconds nginx
# says (X-Request-Time, $RequestTime) where the location adds them.
sub timed_post {
    my ($uri, $body) = @_;
    # Not named by $$: test files run side by side in PID namespaces of
    # their own, where the same pid comes up in each.
    my $file = File::Temp::tempdir(CLEANUP => 1) . '/answer';
    my $pid = fork // die "fork: $!";
    return {pid => $pid, file => $file} if $pid;
    my $started = Time::HiRes::time();
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984)
        or POSIX::_exit(1);
    print $sock "POST $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
              . "Content-Type: application/json\r\nContent-Length: " . length($body)
              . "\r\n\r\n$body";
    my $response = do { local $/; <$sock> } // '';
    open my $out, '>', $file;
    printf $out "%.3f\n%s", Time::HiRes::time() - $started, $response;
    close $out;
    POSIX::_exit(0);
}

sub timed_result {
    my $post = shift;
    waitpid $post->{pid}, 0;
    open my $in, '<', $post->{file} or die "no answer from the timed request\n";
    my ($elapsed, $response) = do { local $/; split /\n/, <$in>, 2 };
    my ($status) = ($response // '') =~ m{\AHTTP/1\.1 (\d+)};
    my ($nginx) = ($response // '') =~ m{^X-Request-Time: ([\d.]+)}mi;
    return ($nginx // $elapsed, $status, $response);
}

# The block's background request: "--- background_status" checks its answer.
our $Background;
sub background_post { $Background = timed_post(@_) }

# A RESP bulk string.
sub bulk { '$' . length($_[0]) . "\r\n$_[0]\r\n" }

# fake_redis($port, $answer): a server on `port` that answers each command
# with $answer->(its connection's number, @args), one process per
# connection; returns its pid (kill it when done). For what a real Redis
# cannot be made to do on demand (a reply that crosses a demotion, or comes
# late at a given step), never in place of one that can.
sub fake_redis {
    my ($port, $answer) = @_;
    my $listen = IO::Socket::INET->new(LocalAddr => '127.0.0.1', LocalPort => $port, Listen => 16, ReuseAddr => 1)
        or die "cannot listen on $port: $!\n";
    my $pid = fork // die "fork: $!";
    if ($pid) { close $listen; return $pid }
    my $connections = 0;
    while (my $client = $listen->accept) {
        ++$connections;
        next if fork // POSIX::_exit(1);
        close $listen;
        $client->autoflush(1);
        while (my @args = read_command($client)) {
            print $client $answer->($connections, @args);
        }
        POSIX::_exit(0);
    }
    POSIX::_exit(0);
}

# read_command($client): the next command a client sends (a RESP array of
# bulk strings) as its arguments; empty at the end of the connection.
sub read_command {
    my ($client) = @_;
    my $line = <$client> // return;
    my ($count) = $line =~ /^\*(\d+)/ or return;
    my @args;
    for (1 .. $count) {
        my ($size) = (<$client> // '') =~ /^\$(\d+)/ or return;
        read $client, my $arg, $size + 2;
        push @args, substr($arg, 0, $size);
    }
    return @args;
}

# The entries of a stream (the Redis on `port`, by default the stream
# `resend_confirmation`), as [fields...] each, with each request once: a
# replay is at least once (a reply that came too late makes the command go
# again, and Redis may have run both), and a duplicate has its request's
# request_id. Returns (entries as first stored, how many duplicates).
sub stream_requests {
    my ($port, $stream) = @_;
    my $entries = redis({port => $port}, 'XRANGE', $stream // 'resend_confirmation', '-', '+');
    my %seen;
    my @once = grep { my %f = @$_; !$seen{$f{request_id}}++ } map { $_->[1] } @$entries;
    return (\@once, @$entries - @once);
}

# The module's metrics on the block's nginx (location /metrics), as
# {"name{labels}" => value}.
sub metrics {
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1',
                                     PeerPort => $ENV{TEST_NGINX_SERVER_PORT} || 1984)
        or die "cannot connect to nginx: $!\n";
    print $sock "GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    my $text = do { local $/; <$sock> } // '';
    return { $text =~ /^([a-z_]+(?:\{[^}]*\})?) (\S+)$/mg };
}

sub read_reply {
    my $sock = shift;
    my $line = <$sock>;
    die "redis closed the connection\n" unless defined $line;
    $line =~ s/\r\n\z//;
    my ($type, $rest) = (substr($line, 0, 1), substr($line, 1));
    return $rest if $type eq '+' or $type eq ':';
    return "ERR: $rest" if $type eq '-';
    if ($type eq '$') {
        return undef if $rest < 0;
        read($sock, my $data, $rest + 2) == $rest + 2 or die "short bulk reply\n";
        return substr($data, 0, $rest);
    }
    if ($type eq '*') {
        return undef if $rest < 0;
        return [map { read_reply($sock) } 1 .. $rest];
    }
    die "unexpected redis reply: $line\n";
}

# in_parallel($procs, $work): runs $work->($p) for $p = 0 .. $procs - 1 in
# as many processes at once; returns the sums of the counts they return
# (each returns one count, or a list of them summed position by position;
# in scalar context the first sum).
sub in_parallel {
    my ($procs, $work) = @_;
    my $dir = File::Temp::tempdir(CLEANUP => 1);
    my @pids;
    for my $p (0 .. $procs - 1) {
        my $pid = fork // die "fork: $!";
        if ($pid) { push @pids, $pid; next }
        my @counts = $work->($p);
        open my $out, '>', "$dir/$p";
        print $out "@counts";
        close $out;
        POSIX::_exit(0);
    }
    waitpid $_, 0 for @pids;
    my @sums = (0);
    for my $p (0 .. $procs - 1) {
        open my $in, '<', "$dir/$p" or next;
        my @counts = split ' ', <$in> // '';
        $sums[$_] += $counts[$_] for 0 .. $#counts;
        unlink "$dir/$p";
    }
    rmdir $dir;
    return wantarray ? @sums : $sums[0];
}

# post_once($port, $uri, $body [, $headers]): one JSON POST on a new
# connection ($headers: more header lines, each ending "\r\n"); true when
# it was answered 200.
sub post_once {
    my ($port, $uri, $body, $headers) = @_;
    my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port) or return 0;
    print $sock "POST $uri HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n" . ($headers // '')
              . "Content-Type: application/json\r\nContent-Length: " . length($body)
              . "\r\n\r\n$body";
    my $response = do { local $/; <$sock> } // '';
    return $response =~ m{\AHTTP/1\.1 200 } ? 1 : 0;
}

# load_posts($clients, $each, $uri [, $email]): $clients processes at once,
# each posting $each distinct valid emails (or all the same $email) on new
# connections; returns how many were answered 200 and how many were sent.
# $each may be a sub instead: each process posts for as long as it returns
# true (asked before every post, given the post's number), so that a test can drive load until what
# it waits for has happened, however fast the machine.
sub load_posts {
    my ($clients, $each, $uri, $email) = @_;
    my $more = ref $each eq 'CODE' ? $each : sub { $_[0] <= $each };
    my ($ok, $sent) = in_parallel($clients, sub {
        my $client = shift() + 1;
        my ($ok, $n) = (0, 0);
        while ($more->($n + 1)) {
            $n++;
            $ok += post_once($ENV{TEST_NGINX_SERVER_PORT} || 1984, $uri,
                             '{"email":"' . ($email // "load$client.$n\@example.com") . '"}');
        }
        return ($ok, $n);
    });
    return ($ok, ref $each ? $sent // 0 : $clients * $each);
}

# "--- stream_db": the stream is in that database; "--- stream_port": of
# the Redis on that port ("--- stream_host": and that address).
# "--- stream eval": the entries the stream must hold after the block's last
# request, oldest first, each as [field => value, ...] in record order; a
# value may be a qr// pattern. "--- stream_key" names another stream.
# "--- stream_len": only the number of entries ("--- stream_len_between: MIN MAX").
main::add_response_body_check(sub {
    my ($block, $body, $req_idx, $repeated_req_idx, $dry_run) = @_;
    return if $dry_run;
    my $requests = $block->pipelined_requests // $block->request;
    my $last = ref $requests eq 'ARRAY' ? $#$requests : 0;
    return unless $req_idx == $last;
    my $key = $block->stream_key // 'resend_confirmation';
    my $name = $block->name;
    my %at = (db => $block->stream_db // 0);
    $at{db} =~ s/\s+\z//;
    if (defined(my $port = $block->stream_port)) {
        ($at{port} = $port) =~ s/\s+\z//;
    }
    if (defined(my $host = $block->stream_host)) {
        ($at{host} = $host) =~ s/\s+\z//;
    }

    if (defined(my $want = $block->background_status)) {
        my ($elapsed, $status, $response) = timed_result($Background);
        Test::More::is($status, ($want =~ /(\d+)/)[0], "$name - background request status");
        if (my $range = $block->background_elapsed) {
            my ($min, $max) = split ' ', $range;
            Test::More::cmp_ok($elapsed, '>=', $min, "$name - background request waited >= $min s");
            Test::More::cmp_ok($elapsed, '<=', $max, "$name - background request answered <= $max s");
        }
        if (my $like = $block->background_like) {
            Test::More::like($response, qr/$like/, "$name - background response");
        }
    }

    if (defined(my $range = $block->stream_len_between)) {
        my ($min, $max) = split ' ', $range;
        my $len = redis(\%at, 'XLEN', $key);
        Test::More::ok($len >= $min && $len <= $max, "$name - stream $key holds $min..$max entries")
            or Test::More::diag("it holds $len");
    }
    if (defined(my $len = $block->stream_len)) {
        $len = $len->() if ref $len eq 'CODE';
        $len =~ s/\s+\z//;
        Test::More::is(redis(\%at, 'XLEN', $key), $len, "$name - stream $key holds $len entries");
    }
    my $expected = $block->stream or return;
    my $entries = redis(\%at, 'XRANGE', $key, '-', '+');
    Test::More::is(scalar @$entries, scalar @$expected, "$name - stream $key entry count");
    for my $i (0 .. $#$expected) {
        my @want = @{ $expected->[$i] };
        my @got = @{ $entries->[$i][1] // [] };
        my @want_names = @want[grep { $_ % 2 == 0 } 0 .. $#want];
        my @got_names = @got[grep { $_ % 2 == 0 } 0 .. $#got];
        Test::More::is("@got_names", "@want_names", "$name - entry $i field names");
        my %got = @got;
        for (my $f = 0; $f < @want; $f += 2) {
            my ($field, $value) = @want[$f, $f + 1];
            if (ref $value eq 'CODE') {
                Test::More::ok($value->($got{$field}, \%got), "$name - entry $i $field")
                    or Test::More::diag("got: " . ($got{$field} // 'undef'));
            } elsif (ref $value eq 'Regexp') {
                Test::More::like($got{$field}, $value, "$name - entry $i $field");
            } else {
                Test::More::is($got{$field}, $value, "$name - entry $i $field");
            }
        }
    }
});

1;
