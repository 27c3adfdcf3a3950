package Test::Nginx::Util;

# Project-local, minimal re-implementation of the parts of
# Test::Nginx::Util (openresty/test-nginx) that our tests use: settings,
# nginx.conf generation, starting/stopping nginx and the per-block loop.
# Written from scratch; behaviour follows upstream so the same .t files
# pass under both.  HTTP client and checks live in Test::Nginx::Socket.

use strict;
use warnings;

use Exporter 'import';
use File::Path qw(make_path remove_tree);
use File::Spec ();
use File::Temp ();
use IO::Socket::INET ();
use List::Util qw(shuffle);
use POSIX qw(WNOHANG);
use Scalar::Util qw(looks_like_number);
use Time::HiRes qw(sleep time);
use Test::More ();

our $VERSION = '0.01';

our @EXPORT = qw(
    env_to_nginx is_str no_long_string server_addr server_name
    server_port server_port_for_client timeout repeat_each workers
    worker_connections master_on master_off master_process_enabled
    log_level no_shuffle no_root_location check_accum_error_log
    config_preamble add_block_preprocessor add_cleanup_handler
    add_test_cleanup_handler html_dir server_root bail_out run_tests
    run_test expand_env_in_text parse_time parse_headers trim
    error_log_data access_log_data is_running use_http2 sleep_time
    verbose get_pid_from_pidfile
    $ServerAddr $ServerName $ServerPort $ServerPortForClient
    $NginxVersion $PidFile $ServRoot $ConfFile $RepeatEach $NoLongString
    $RunTestHelper $CheckErrorLog $CheckShutdownErrorLog
);

# ---------------------------------------------------------------------------
# Settings: same environment variables and defaults as upstream.

sub find_nginx {
    for my $dir (split(/:/, $ENV{PATH} // ''), '/usr/sbin', '/usr/local/sbin') {
        next if $dir eq '';
        return "$dir/nginx" if -f "$dir/nginx" && -x _;
    }
    return 'nginx';
}

our $NginxBinary = $ENV{TEST_NGINX_BINARY} || find_nginx();
our $ServerAddr = '127.0.0.1';
our $ServerName = 'localhost';
our $ServerPort = $ENV{TEST_NGINX_SERVER_PORT} || $ENV{TEST_NGINX_PORT} || 1984;
our $ServerPortForClient = $ENV{TEST_NGINX_CLIENT_PORT} || $ServerPort;
our $Timeout = $ENV{TEST_NGINX_TIMEOUT} || 3;
our $TestNginxSleep = $ENV{TEST_NGINX_SLEEP} || 0.015;
our $LogLevel = $ENV{TEST_NGINX_LOG_LEVEL} || 'debug';
our $MasterProcessEnabled = $ENV{TEST_NGINX_MASTER_PROCESS} || 'off';
our $NoShuffle = $ENV{TEST_NGINX_NO_SHUFFLE} || 0;
our $LoadModules = $ENV{TEST_NGINX_LOAD_MODULES};
our $WorkerUser = $ENV{TEST_NGINX_WORKER_USER};
our $CheckAccumErrLog = $ENV{TEST_NGINX_CHECK_ACCUM_ERR_LOG};
our $Verbose = $ENV{TEST_NGINX_VERBOSE};
our $Workers = 1;
our $WorkerConnections = 64;
our $RepeatEach = 1;
our $NoRootLocation = 0;
our $NoLongString;
our $ConfigPreamble = '';
our (@EnvToNginx, @BlockPreprocessors, @CleanupHandlers, @TestCleanupHandlers);

# Not in upstream (which reads error.log once, 45 ms after the response):
# how long we keep re-reading it while "--- error_log" patterns are missing.
our $ErrLogPollTime = 1;

our $ServRoot = $ENV{TEST_NGINX_SERVROOT} || File::Spec->rel2abs('t/servroot');
$ENV{TEST_NGINX_SERVER_ROOT} = $ServRoot;
our $LogDir = "$ServRoot/logs";
our $ErrLogFile = "$LogDir/error.log";
our $AccLogFile = "$LogDir/access.log";
our $HtmlDir = "$ServRoot/html";
our $ConfDir = "$ServRoot/conf";
our $ConfFile = "$ConfDir/nginx.conf";
our $PidFile = "$LogDir/nginx.pid";

# Hooks filled in by Test::Nginx::Socket.
our ($RunTestHelper, $CheckErrorLog, $CheckShutdownErrorLog);

# Run state.
our ($NginxVersion, $NginxV, $RandPorts, $PrevConfig, $PrevBlock);
our $ErrLogFilePos = 0;
our $NginxPid;          # pid of the nginx we started (from the pid file)

# ---------------------------------------------------------------------------
# Small setters/getters (called from the .t files).

sub env_to_nginx (@) {
    die "env_to_nginx: no arguments specified\n" unless @_;
    for my $v (@_) {
        die "env_to_nginx: bad argument value: $v\n"
            if $v !~ /^[A-Za-z_]/ || $v =~ /\n/;
        push @EnvToNginx, $v;
    }
}

sub _accessor {
    my $ref = shift;
    $$ref = shift if @_;
    return $$ref;
}

sub server_addr (@)            { _accessor(\$ServerAddr, @_) }
sub server_name (@)            { _accessor(\$ServerName, @_) }
sub server_port (@)            { _accessor(\$ServerPort, @_) }
sub server_port_for_client (@) { _accessor(\$ServerPortForClient, @_) }
sub timeout (@)                { _accessor(\$Timeout, @_) }
sub repeat_each (@)            { _accessor(\$RepeatEach, @_) }
sub workers (@)                { _accessor(\$Workers, @_) }
sub worker_connections (@)     { _accessor(\$WorkerConnections, @_) }
sub log_level (@)              { _accessor(\$LogLevel, @_) }
sub master_on ()               { $MasterProcessEnabled = 'on' }
sub master_off ()              { $MasterProcessEnabled = 'off' }
sub no_shuffle ()              { $NoShuffle = 1 }
sub no_root_location ()        { $NoRootLocation = 1 }
sub no_long_string ()          { $NoLongString = 1 }
sub check_accum_error_log ()   { $CheckAccumErrLog = 1 }
sub config_preamble ($)        { $ConfigPreamble = shift }
sub html_dir ()                { $HtmlDir }
sub server_root ()             { $ServRoot }
sub sleep_time ()              { $TestNginxSleep }
sub verbose ()                 { $Verbose }

sub master_process_enabled (@) {
    $MasterProcessEnabled = $_[0] ? 'on' : 'off' if @_;
    return $MasterProcessEnabled;
}

sub add_block_preprocessor (&) { unshift @BlockPreprocessors, shift }
sub add_cleanup_handler ($)    { unshift @CleanupHandlers, shift }
sub add_test_cleanup_handler ($) { unshift @TestCleanupHandlers, shift }

# is() for strings, like() when the expectation is a qr//.
sub is_str (@) {
    my ($got, $expected, $desc) = @_;
    local $Test::Builder::Level = $Test::Builder::Level + 1;
    return Test::More::like($got, $expected, $desc)
        if ref $expected && ref $expected eq 'Regexp';
    return Test::More::is($got, $expected, $desc);
}

# ---------------------------------------------------------------------------
# Helpers shared with Test::Nginx::Socket.

sub bail_out (@) {
    cleanup();
    Test::More::BAIL_OUT(join '', @_);
}

# "1.5", "1.5s" and "300ms" -> seconds.
sub parse_time ($) {
    my $t = shift;
    return $t unless defined $t;
    if ($t =~ s/([^_a-zA-Z])ms$/$1/) {
        $t /= 1000;
    } else {
        $t =~ s/([^_a-zA-Z])s$/$1/;
    }
    return $t;
}

sub trim ($) {
    my $s = shift;
    return undef unless defined $s;
    $s =~ s/^\s+|\s+$//g;
    $s =~ s/\n/ /g;
    $s =~ s/\s{2,}/ /g;
    return $s;
}

# "Name: value" lines -> ordered [name, value] pairs; "!Name" (or a line
# without a colon) gives value undef, meaning "must be absent".
sub parse_headers ($) {
    my $text = shift;
    my (@pairs, %seen);
    for my $line (split /\n/, $text) {
        $line =~ s/^\s+|\s+$//g;
        my ($key, $val);
        if ($line =~ s/^!\s*//) {
            $key = $line;
        } else {
            ($key, $val) = split /\s*:\s*/, $line, 2;
        }
        $key //= '';
        if (exists $seen{$key}) {
            $pairs[$seen{$key}][1] = $val;
        } else {
            $seen{$key} = @pairs;
            push @pairs, [$key, $val];
        }
    }
    return \@pairs;
}

# Replace $TEST_NGINX_FOO by $ENV{TEST_NGINX_FOO}; $TEST_NGINX_RAND_PORT_N
# by a free port that stays the same within one block.
sub expand_env_in_text ($$$) {
    my ($text, $name, $rand_ports) = @_;
    return $text if !defined $text || ref $text;
    $text =~ s{\$(TEST_NGINX_[_A-Z0-9]+)}{
        my $var = $1;
        if ($var =~ /^TEST_NGINX_RAND_PORT_[0-9]+$/) {
            $rand_ports->{$var} //= free_port($name, $rand_ports);
        } elsif (!defined $ENV{$var}) {
            bail_out("$name - No environment $var defined.\n");
        } else {
            $ENV{$var};
        }
    }ge;
    return $text;
}

sub free_port {
    my ($name, $rand_ports) = @_;
    my %used = ($ServerPort => 1, map { $_ => 1 } values %$rand_ports);
    for (1 .. 1000) {
        my $port = 1988 + int rand 63547;
        next if $used{$port};
        my $s = IO::Socket::INET->new(LocalAddr => $ServerAddr,
            LocalPort => $port, Proto => 'tcp', Listen => 1, ReuseAddr => 1);
        next unless $s;
        close $s;
        return $port;
    }
    bail_out("$name - cannot find a free port");
}

sub use_http2 ($) {
    my $block = shift;
    return undef if defined $block->no_http2 || !defined $block->http2;
    bail_out("cannot use --- http2 with --- raw_request") if defined $block->raw_request;
    bail_out("cannot use --- http2 with --- pipelined_requests")
        if defined $block->pipelined_requests;
    return 1;
}

sub canon_version { sprintf "%d.%03d%03d", @_ }

# The version of the nginx core in the output of `nginx -V`, canonical, or
# undef: its line "nginx version: NAME/X.Y.Z..." names it in nginx
# ("nginx/1.22.1", "nginx/1.22.1 (Debian)"), freenginx and OpenResty
# ("openresty/1.25.3.1": the core's numbers are the first three). Angie and
# Tengine print their own version first ("Angie version: Angie/1.13.0") and
# the core's on that line: the core's is what a block's skip_nginx compares,
# as in upstream Test::Nginx.
sub parse_nginx_version ($) {
    my $text = shift;
    return $text =~ m{^nginx version: [^/\s]+/(\d+)\.(\d+)\.(\d+)}m ? canon_version($1, $2, $3) : undef;
}

sub get_nginx_version () {
    $NginxV //= `$NginxBinary -V 2>&1`;
    if ($? != 0 || !defined $NginxV) {
        bail_out("Failed to run \"$NginxBinary -V\": " . ($NginxV // ''));
    }
    return parse_nginx_version($NginxV)
        // bail_out("Failed to parse the output of \"nginx -V\": $NginxV");
}

sub read_log_from {
    my ($file, $pos) = @_;
    open my $in, '<', $file or return (undef, $pos);
    seek $in, $pos, 0 if $pos;
    my @lines = <$in>;
    my $end = tell $in;
    close $in;
    return (\@lines, $end);
}

# Lines of error.log written since the previous call within this block
# (all of them with check_accum_error_log).
sub error_log_data () {
    sleep $TestNginxSleep * 3;
    my ($lines, $end) = read_log_from($ErrLogFile, $CheckAccumErrLog ? 0 : $ErrLogFilePos);
    $ErrLogFilePos = $end unless $CheckAccumErrLog;
    return $lines;
}

sub access_log_data () {
    sleep $TestNginxSleep * 3;
    my ($lines) = read_log_from($AccLogFile, 0);
    die "open $AccLogFile failed: $!\n" unless $lines;
    return $lines;
}

# ---------------------------------------------------------------------------
# nginx processes.

sub is_running ($) {
    my $pid = shift;
    return 0 unless $pid && kill 0, $pid;
    # a zombie is dead for our purposes (its parent may reap it late);
    # reaped between kill() and open() or readline(): gone (if /proc works)
    open my $st, '<', "/proc/$pid/stat" or return -e "/proc/$$/stat" ? 0 : 1;
    my $line = <$st>;
    return defined $line && $line !~ /^\d+ \(.*\) [ZX]/s ? 1 : 0;
}

sub get_pid_from_pidfile ($) {
    open my $in, '<', $PidFile or return undef;
    my $pid = <$in>;
    close $in;
    return undef unless defined $pid && $pid =~ /(\d+)/;
    return $1;
}

sub wait_for_pid_file {
    my $deadline = time + $Timeout;
    while (time < $deadline) {
        my $pid = get_pid_from_pidfile('');
        return $pid if $pid;
        sleep 0.005;
    }
    return undef;
}

# Stop the nginx started for a previous block (or left over from an
# earlier run) and wait until it is gone.
sub stop_nginx {
    my $name = shift // '';
    my $pid = $NginxPid // get_pid_from_pidfile($name);
    undef $NginxPid;
    if ($pid && is_running($pid)) {
        kill($ENV{TEST_NGINX_FAST_SHUTDOWN} ? 'TERM' : 'QUIT', $pid);
        my $deadline = time + $Timeout;
        sleep 0.002 while is_running($pid) && time < $deadline;
        if (is_running($pid)) {
            warn "$name - WARNING: nginx $pid did not exit in time, killing it\n";
            kill 'KILL', -$pid;    # daemonized nginx leads its own group
            kill 'KILL', $pid;
            $deadline = time + $Timeout;
            sleep 0.01 while is_running($pid) && time < $deadline;
        }
        waitpid($pid, WNOHANG);    # in case it is our child after all
    }
    unlink $PidFile if -f $PidFile;

    if (my $prev = $PrevBlock) {
        undef $PrevBlock;
        $CheckShutdownErrorLog->($prev)
            if $CheckShutdownErrorLog && (defined $prev->shutdown_error_log
                                          || defined $prev->no_shutdown_error_log);
    }
}

# Runs nginx (it daemonizes); returns (exit status, stderr text).
sub run_nginx {
    my @cmd = ($NginxBinary, '-p', "$ServRoot/", '-c', $ConfFile);
    splice @cmd, 1, 0, '-e', $ErrLogFile if $NginxVersion >= canon_version(1, 19, 5);
    my $err = File::Temp->new;
    my $pid = fork;
    bail_out("fork() failed: $!") unless defined $pid;
    if ($pid == 0) {
        open STDOUT, '>', '/dev/null';
        open STDERR, '>', $err->filename;
        exec @cmd or POSIX::_exit(127);
    }
    waitpid($pid, 0);
    my $status = $?;
    my $stderr = do { local $/; open my $in, '<', $err->filename; <$in> } // '';
    print STDERR $stderr if length $stderr && !$_[0];    # like upstream: show it
    return ($status, $stderr);
}

# ---------------------------------------------------------------------------
# Server root and nginx.conf.

sub setup_server_root () {
    if (-d $ServRoot) {
        # only remove what we create ourselves, never a whole directory
        # (TEST_NGINX_SERVROOT could point somewhere precious)
        remove_tree($ConfDir, $LogDir, $HtmlDir, "$ServRoot/cache",
                    glob("$ServRoot/*_cache"), glob("$ServRoot/*_temp"));
        rmdir $ServRoot
            or bail_out("Can't remove $ServRoot (not empty?): $!");
    }
    make_path($ServRoot, $LogDir, $HtmlDir, $ConfDir);
    open my $out, '>', "$HtmlDir/index.html"
        or bail_out("Can't write $HtmlDir/index.html: $!");
    print $out '<html><head><title>It works!</title></head><body>It works!</body></html>';
    close $out;
}

# --- user_files: ">>> name [touch-date]" followed by the content, or an
# eval'd array of [name, content, date].
sub write_user_files ($$) {
    my ($block, $rand_ports) = @_;
    my $name = $block->name;
    my $files = $block->user_files;
    return unless $files;
    if (!ref $files) {
        my @list;
        for my $line (split /^/, $files) {
            if ($line =~ /^>>> (\S+)(?:\s+(.+))?/) {
                push @list, [$1, undef, $2];
            } elsif (@list) {
                $list[-1][1] .= $line;
            }
        }
        $files = \@list;
    }
    bail_out("$name - bad --- user_files value") unless ref $files eq 'ARRAY';
    for my $f (@$files) {
        my ($fname, $body, $date) = @$f;
        my $path = $fname =~ m{^/} ? $fname : "$HtmlDir/$fname";
        make_path($1) if $path =~ m{(.*)/} && !-d $1;
        open my $out, '>', $path or bail_out("$name - Cannot open $path for writing: $!");
        binmode $out;
        print $out expand_env_in_text($body // '', $name, $rand_ports);
        close $out;
        if ($date) {
            system('touch', '-t', $date, $path) == 0
                or bail_out("$name - touch -t $date $path failed");
        }
    }
}

sub write_config_file ($$$) {
    my ($block, $config, $rand_ports) = @_;
    my $name = $block->name;
    my $expand = sub { expand_env_in_text($_[0], $name, $rand_ports) // '' };

    my $http_config = $expand->(scalar($block->http_config));
    my $main_config = $block->main_config // '';
    if ($LoadModules) {
        my @mods = map { "load_module $_;" } grep { length } split /\s+/, $LoadModules;
        $main_config = join ' ', @mods, $main_config if @mods;
    }
    $main_config = $expand->($main_config);
    my $post_main_config = $expand->(scalar($block->post_main_config));
    my $err_log = $expand->($block->error_log_file || $ErrLogFile);
    my $server_name = $block->server_name // $ServerName;
    $config //= '';

    # HTTP/2 without TLS: "listen ... http2" before nginx 1.25.1,
    # the separate "http2 on;" directive from 1.25.1 on.
    my ($listen_opts, $http2_on) = ('', '');
    if (use_http2($block)) {
        if ($NginxVersion >= canon_version(1, 25, 1)) {
            $http2_on = 'http2 on;';
        } else {
            $listen_opts = ' http2';
        }
    }

    my @temp;
    push @temp, "client_body_temp_path $ServRoot/client_body_temp;"
        unless $http_config =~ /\bclient_body_temp_path\b/;
    push @temp, "proxy_temp_path $ServRoot/proxy_temp;"
        unless $http_config =~ /\bproxy_temp_path\b/;
    for my $m (qw(fastcgi scgi uwsgi)) {
        push @temp, "${m}_temp_path $ServRoot/${m}_temp;"
            unless $NginxV =~ /--without-http_${m}_module/;
    }

    my $env = join '', map { my $v = /\s/ ? "'$_'" : $_; "env $v;\n" } @EnvToNginx;
    my $root_location = $NoRootLocation ? '' : <<"EOC";
        location / {
            root $HtmlDir;
            index index.html index.htm;
        }
EOC
    my $user = defined $WorkerUser ? "user $WorkerUser;\n"
             : $> == 0             ? "user root;\n"
             :                       '';

    open my $out, '>', $ConfFile or bail_out("Can't open $ConfFile for writing: $!");
    print $out <<"EOC";
worker_processes  $Workers;
daemon on;
master_process $MasterProcessEnabled;
error_log $err_log $LogLevel;
pid       $PidFile;
$env
$main_config

http {
    access_log $AccLogFile; @temp

    default_type text/plain;
    keepalive_timeout  68000ms;

$http_config
    server {
        listen          $ServerPort$listen_opts;$http2_on
        server_name     '$server_name';
        client_max_body_size 30M;

$ConfigPreamble
        # ---- test case config ----
$config
        # ---- end of test case config ----

$root_location    }
}

$post_main_config

events {
    accept_mutex off;
    worker_connections  $WorkerConnections;
}
$user
EOC
    close $out;
}

# ---------------------------------------------------------------------------
# The per-file and per-block loops.

sub run_tests () {
    $NginxVersion = get_nginx_version();
    $ENV{TEST_NGINX_SERVER_PORT} = $ServerPort unless defined $ENV{TEST_NGINX_SERVER_PORT};

    my @blocks = Test::Base::blocks();
    @blocks = shuffle @blocks unless $NoShuffle;
    for my $block (@blocks) {
        $_->($block) for @BlockPreprocessors;
        $block->set_value(name => "$0 " . $block->name);
        run_test($block);
        $_->($block) for @TestCleanupHandlers;
        $PrevBlock = $block;
    }
    # the last block's nginx is stopped here (kept with TEST_NGINX_NO_CLEAN)
    stop_nginx('end') unless $ENV{TEST_NGINX_NO_CLEAN};
    cleanup();
}

# "--- skip_nginx: 3: < 1.21.0 [: reason]" and "--- skip_eval: 3: perl".
sub skip_spec {
    my $block = shift;
    my $name = $block->name;
    if (defined(my $spec = $block->skip_eval)) {
        $spec =~ /^\s*(\d+)\s*:\s*(.*)/s
            or bail_out("$name - Invalid --- skip_eval spec: $spec");
        my ($n, $code) = ($1, $2);
        my $skip = eval $code;
        bail_out("$name - skip_eval - failed to eval \"$code\": $@") if $@;
        return ($n, 'skip_eval') if $skip;
    }
    if (defined(my $spec = $block->skip_nginx)) {
        $spec =~ /^\s*(\d+)\s*:\s*([<>]=?)\s*(\d+)\.(\d+)\.(\d+)(?:\s*:\s*(.*))?\s*$/
            or bail_out("$name - Invalid --- skip_nginx spec: $spec");
        my ($n, $op, $reason) = ($1, $2, $6);
        my $ver = canon_version($3, $4, $5);
        return ($n, $reason || "nginx version $op $3.$4.$5")
            if eval "$NginxVersion $op $ver";
    }
    return;
}

sub run_test ($) {
    my $block = shift;
    return if defined $block->SKIP;
    my $name = $block->name;
    my $rand_ports = $RandPorts = {};
    my $config = expand_env_in_text(scalar($block->config), $name, $rand_ports);
    local $LogLevel = $block->log_level || $LogLevel;
    my ($skip_count, $skip_reason) = skip_spec($block);

    if (!$skip_count) {
        if (defined $config) {
            $PrevConfig = $config;
            stop_nginx($name);
            setup_server_root();
            if (my $code = $block->post_setup_server_root) {
                eval $code;
                bail_out("$name - post_setup_server_root failed: $@") if $@;
            }
            write_user_files($block, $rand_ports);
            write_config_file($block, $config, $rand_ports);
            return run_must_die($block) if defined $block->must_die;
            start_nginx($block) or return;
        } elsif (!defined $PrevConfig) {
            bail_out("$name - No '--- config' section specified and could not get previous one.");
        }
        # else: no --- config: keep using the previous block's nginx, as upstream
    }

    if (my $code = $block->init) {
        eval $code;
        bail_out("$name - init failed: $@") if $@;
    }

    $ErrLogFilePos = 0;
    for my $i (0 .. $RepeatEach - 1) {
        write_user_files($block, $rand_ports) if $i > 0;    # rewritten per repetition
        if ($skip_count) {
            SKIP: { Test::More::skip("$name - $skip_reason", $skip_count) }
            next;
        }
        $RunTestHelper->($block, 0, $i);
    }
}

sub start_nginx {
    my $block = shift;
    my $name = $block->name;
    $ErrLogFilePos = 0;
    my $waited = 0;
    while (1) {
        my ($status, $stderr) = run_nginx(1);
        if ($status == 0) {
            $NginxPid = wait_for_pid_file();
            return 1 if $NginxPid;
            Test::More::fail("$name - nginx started but wrote no pid file $PidFile");
            return 0;
        }
        # a previous nginx may still be holding the port: retry a little
        if ($stderr =~ /Address already in use/ && $waited < 5) {
            sleep 0.1;
            $waited += 0.1;
            next;
        }
        my $code = $status == -1 ? 'exec failed' : 'exit code ' . ($status >> 8);
        Test::More::fail("$name - failed to start nginx ($code)");
        Test::More::diag("$NginxBinary stderr:\n$stderr") if length $stderr;
        return 0;
    }
}

# "--- must_die [exit code]": nginx has to fail to start.
sub run_must_die {
    my $block = shift;
    my $name = $block->name;
    my $must_die = $block->must_die;
    $ErrLogFilePos = 0;
    for my $i (0 .. $RepeatEach - 1) {
        my ($status) = run_nginx(defined $block->suppress_stderr);
        if ($status == -1) {
            Test::More::fail("$name - failed to execute the nginx command line");
        } elsif ($status & 128) {
            Test::More::fail("$name - nginx core dumped");
        } elsif (looks_like_number($must_die)) {
            Test::More::is($must_die, $status >> 8, "$name - die with the expected exit code");
        } else {
            Test::More::isnt($status, 0, "$name - die as expected");
        }
        $CheckErrorLog->($block, undef, 0, $i, 0);
        if ($status == 0) {
            warn "WARNING: $name - nginx must die but it does not; killing it\n";
            $NginxPid = wait_for_pid_file();
            stop_nginx($name);
        }
    }
}

sub cleanup () {
    $_->() for @CleanupHandlers;
}

END {
    local $?;
    # e.g. the test died half-way: do not leave nginx behind
    stop_nginx('END') if !$ENV{TEST_NGINX_NO_CLEAN} && ($NginxPid || -f $PidFile);
}

1;
