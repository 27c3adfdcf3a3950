package Test::Nginx::Socket;

# Project-local, minimal re-implementation of Test::Nginx::Socket
# (openresty/test-nginx): builds the requests of a block, sends them over a
# raw socket (or with curl for "--- http2"), parses the responses and runs
# the checks.  Written from scratch; names of the subtests and the meaning
# of every section follow upstream so the same .t files pass under both.
#
#   use Test::Nginx::Socket 'no_plan';    # or: tests => N
#   run_tests();
#   __DATA__
#   === TEST 1: name
#   --- config
#   ...

use strict;
use warnings;

use base 'Test::Base';    # blocks(), plan(), is(), like(), ... and the plan args

use Digest::MD5 ();
use Digest::SHA ();
use IO::Socket::INET ();
use IPC::Open3 ();
use List::Util qw(min);
use POSIX qw(EAGAIN EINTR);
use Symbol ();
use Time::HiRes qw(sleep time);
use Test::More ();
use Test::Nginx::Util;

our $VERSION = '0.01';

# Exported to the .t file in addition to Test::Base's own exports.
our @EXPORT = qw(
    env_to_nginx is_str run_tests run_test repeat_each config_preamble
    worker_connections master_process_enabled no_long_string workers
    master_on master_off log_level no_shuffle no_root_location server_name
    server_addr server_root html_dir server_port server_port_for_client
    timeout check_accum_error_log add_block_preprocessor bail_out
    add_test_cleanup_handler add_cleanup_handler add_response_body_check
);

our @ResponseBodyChecks;
sub add_response_body_check ($) { push @ResponseBodyChecks, shift }

$Test::Nginx::Util::RunTestHelper = \&run_test_helper;
$Test::Nginx::Util::CheckErrorLog = \&check_error_log;
$Test::Nginx::Util::CheckShutdownErrorLog = \&check_shutdown_error_log;

# ---------------------------------------------------------------------------
# Building requests.

# --- more_headers text -> ("Key: val\r\n..." , is_chunked)
sub parse_more_headers {
    my $text = shift;
    my ($out, $chunked) = ('', 0);
    for my $line (split /\n+/, $text) {
        next if $line =~ /^\s*#/;
        my ($key, $val) = split /:\s*/, $line, 2;
        $val //= '';
        $chunked = 1 if lc $key eq 'transfer-encoding' && $val eq 'chunked';
        $out .= "$key: $val\r\n";
    }
    return ($out, $chunked);
}

# Turns "METH [URI [VERSION]]\n[body]" (possibly split into packets) into
# a full HTTP request: request line completed, Host / Connection /
# Content-Length added.  Packet boundaries stay where they were in the
# original text.  Returns the new list of packet strings.
sub build_request {
    my ($name, $more, $chunked, $conn, $packets) = @_;
    my $text = join '', @$packets;
    my ($line, $body) = $text =~ /\A([^\n]*\n?)(.*)\z/s;
    bail_out("$name - Request line should be non-empty") unless length $line;
    $line =~ /^(\s*)(\S+)( *)(?:(\S+)( *))?(?:(\S+)( *))?(\s*)$/
        or bail_out("$name - Request line is not valid. Should be 'meth [url [version]]' but got \"$line\".");
    my ($ws0, $meth, $ws1, $uri, $ws2, $ver, $ws3, $eol) = ($1, $2, $3, $4, $5, $6, $7, $8);

    my $orig_len = length $body;
    my $len_header = '';
    if (!$chunked && $body ne '' && $more !~ /(?:^|\n)Content-Length:/) {
        $body =~ s/^\s+|\s+$//gs;    # the body is trimmed only in this case
        $len_header = 'Content-Length: ' . length($body) . "\r\n";
    }
    $more =~ s/(?<!\r)\n/\r\n/g;
    my $headers = '';
    $headers .= "Host: $ServerName\r\n" if $more !~ /(?:^|\n)Host:/i;
    $headers .= "Connection: $conn\r\n" if $more !~ /(?:^|\n)Connection/i;
    $headers .= "$more$len_header\r\n";

    # [length in the original text, replacement text]
    my @edits = (
        [length $ws0, ''],
        [length $meth, "$meth "],
        [length $ws1, ''],
        [defined $uri ? length $uri : 0, ($uri // '/') . ' '],
        [length($ws2 // ''), ''],
        [defined $ver ? length $ver : 0, ($ver // 'HTTP/1.1') . "\r\n"],
        [length($ws3 // '') + length $eol, ''],
        [0, $headers],
        [$orig_len, $body],
    );
    my $new = join '', map { $_->[1] } @edits;
    return [$new] if @$packets == 1;

    # map each packet boundary of the original text into the new text:
    # inside an edited span at the same offset (clamped), at the start of a
    # span before its replacement (insertions stay with the earlier packet)
    my (@cuts, $pos);
    for my $p (@$packets[0 .. $#$packets - 1]) {
        $pos += length $p;
        my ($o, $n, $cut) = (0, 0, length $new);
        for my $e (@edits) {
            my ($olen, $rep) = @$e;
            if ($olen > 0 && $pos >= $o && $pos < $o + $olen) {
                $cut = $n + min($pos - $o, length $rep);
                last;
            }
            $o += $olen;
            $n += length $rep;
        }
        push @cuts, $cut;
    }
    my ($from, @out) = (0);
    for my $cut (@cuts, length $new) {
        $cut = $from if $cut < $from;
        push @out, substr($new, $from, $cut - $from);
        $from = $cut;
    }
    return \@out;
}

sub headers_for {
    my ($more, $i, $name) = @_;
    if (ref $more eq 'ARRAY') {
        my $h = $more->[$i];
        bail_out("$name - --- more_headers lacks data for request $i") unless defined $h;
        return parse_more_headers($h);
    }
    return parse_more_headers($more);
}

# -> [ request, ... ]; a request is [ {value => bytes, delay_before => s}, ... ]
sub get_req_from_block {
    my $block = shift;
    my $name = $block->name;

    if (defined(my $raw = $block->raw_request)) {
        return [[ map { { value => $_ } } ref $raw eq 'ARRAY' ? @$raw : $raw ]];
    }

    my $more = $block->more_headers || '';

    if (my $reqs = $block->pipelined_requests) {
        bail_out("$name - invalid entries in --- pipelined_requests") unless ref $reqs eq 'ARRAY';
        my $all = '';
        for my $i (0 .. $#$reqs) {
            my $r = expand_env_in_text($reqs->[$i], $name, $Test::Nginx::Util::RandPorts);
            my ($hdr, $chunked) = headers_for($more, $i, $name);
            $all .= build_request($name, $hdr, $chunked,
                                  $i == $#$reqs ? 'close' : 'keep-alive', [$r])->[0];
        }
        return [[{ value => $all }]];
    }

    my $request = $block->request;
    if (defined $request && !ref $request) {
        1 while $request =~ s/^\s*#[^\n]+\s+|^\s+//gs;    # leading comments
    }

    if (!ref $request) {
        my ($hdr, $chunked) = headers_for($more, 0, $name);
        return [[{ value => build_request($name, $hdr, $chunked, 'close', [$request // ''])->[0] }]];
    }
    bail_out("$name - invalid --- request: MUST be string or array of requests")
        unless ref $request eq 'ARRAY';

    my @list;
    for my $i (0 .. $#$request) {
        my $one = $request->[$i];
        my ($hdr, $chunked) = headers_for($more, $i, $name);
        if (!ref $one) {
            push @list, [{ value => build_request($name, $hdr, $chunked, 'close', [$one])->[0] }];
            next;
        }
        bail_out("$name - Invalid syntax. $one should be a string or an array of packets.")
            unless ref $one eq 'ARRAY';
        my @pkts = map {
            !ref $_ ? { value => $_ }
            : ref $_ eq 'HASH' ? { %$_ }
            : bail_out("$name - Invalid syntax. $_ should be a string or hash with value.")
        } @$one;
        my $new = build_request($name, $hdr, $chunked, 'close', [map { $_->{value} } @pkts]);
        $pkts[$_]{value} = $new->[$_] for 0 .. $#pkts;
        push @list, \@pkts;
    }
    return \@list;
}

# ---------------------------------------------------------------------------
# Sending.

# -> (raw response bytes, is_head_request)
sub send_request {
    my ($req, $middle_delay, $timeout, $block) = @_;
    my $name = $block->name;
    my @bits = @$req;
    my $head_req = (join '', map { $_->{value} } @bits) =~ /^\s*HEAD\s+/ ? 1 : 0;

    return (send_http_req_by_curl($block, $req, $timeout), $head_req) if use_http2($block);

    my $addr = $block->server_addr_for_client // $ServerAddr;
    my $sock;
    for my $try (1 .. 50) {
        $sock = IO::Socket::INET->new(PeerAddr => $addr, PeerPort => $ServerPortForClient,
                                      Proto => 'tcp', Timeout => $timeout);
        last if $sock;
        my $err = $!;
        my $pid = $Test::Nginx::Util::NginxPid;
        if ($pid && !is_running($pid)) {
            Test::More::fail("$name - Can't connect to $addr:$ServerPortForClient: $err (nginx $pid is gone)");
            return (undef, $head_req);
        }
        sleep min(1, $try * $try * sleep_time() / 2);
    }
    if (!$sock) {
        Test::More::fail("$name - Can't connect to $addr:$ServerPortForClient: $! (aborted)");
        return (undef, $head_req);
    }
    $sock->blocking(0);
    local $SIG{PIPE} = 'IGNORE';

    my $resp = '';
    my $fd = fileno $sock;
    my $wbuf = (shift @bits)->{value};
    my ($writing, $done) = (1, 0);
    while (!$done) {
        my $rin = '';
        vec($rin, $fd, 1) = 1;
        my ($rout, $wout) = ($rin, $writing ? $rin : '');
        my $n = select($rout, $wout, undef, $timeout);
        if ($n < 0) {
            next if $! == EINTR;
            last;
        }
        if ($n == 0) {
            Test::More::fail("ERROR: client socket timed out - $name\n") unless defined $block->abort;
            last;
        }
        if (vec($rout, $fd, 1)) {
            my $eof;
            while (1) {
                my $got = sysread($sock, my $buf, 16384);
                if (!defined $got) {
                    last if $! == EAGAIN;
                    warn "WARNING: $name - HTTP response read failure: $!\n";
                    $eof = 1;
                    last;
                }
                if ($got == 0) { $eof = 1; last }
                $resp .= $buf;
            }
            last if $eof;
        }
        if ($writing && vec($wout, $fd, 1)) {
            while (1) {
                if (length $wbuf) {
                    my $sent = syswrite($sock, $wbuf);
                    if (!defined $sent) {
                        last if $! == EAGAIN;
                        # like upstream: give up on the connection
                        warn "write failed: $!\n";
                        $resp = "write failed: $!" unless length $resp;
                        $done = 1;
                        last;
                    }
                    substr($wbuf, 0, $sent, '');
                    next;
                }
                my $next = shift @bits;
                if (!$next) {
                    undef $writing;
                    if (defined(my $how = $block->shutdown)) {
                        shutdown($sock, $how =~ /^\s*$/ ? 1 : $how);
                    }
                    last;
                }
                my $delay = $next->{delay_before} // $middle_delay;
                sleep $delay if $delay;
                $wbuf = $next->{value};
            }
        }
    }
    close $sock;
    return ($resp, $head_req);
}

# Builds the curl command line for a request (used for "--- http2").
sub gen_curl_cmd_from_req {
    my ($block, $req) = @_;
    my $name = $block->name;
    my $text = join '', map { $_->{value} } @$req;

    my ($meth, $uri, $ver);
    if ($text =~ m{^\s*(\w+)\s+(\S+)\s+HTTP/(\S+)\r?\n}gc) {
        ($meth, $uri, $ver) = ($1, $2, $3);
    } elsif ($text =~ m{^\s*(\w+)\s+(.*\S)\s*\r?\n}gc) {
        ($meth, $uri, $ver) = ($1, $2, '0.9');
    } else {
        bail_out("$name - cannot parse the status line in the request: $text");
    }

    my @args = ('curl', '-i', '-H', 'User-Agent:', '-H', 'Accept:', '-H', 'Host:',
                verbose() ? '-vv' : '-sS');
    push @args, '--http2-prior-knowledge' if use_http2($block);
    if ($meth eq 'HEAD') {
        push @args, '-I';
    } elsif ($meth ne 'GET') {
        push @args, '-X', $meth;
    }
    push @args, '-0' if $ver ne '1.1';

    my $has_ctype;
    if ($ver ge '1.0') {
        $text =~ m{\G(.*?)\r?\n\r?\n}gcs
            or bail_out("$name - cannot parse the header entries in the request: $text");
        for my $h (grep { !/^Connection\s*:/i } split /\r\n/, $1) {
            $has_ctype = 1 if $h =~ /^\s*Content-Type\s*:/i;
            push @args, '-H', $h;
        }
    }
    if ($text =~ m{\G(.+)}gcs) {
        my $file = html_dir() . '/curl.data.bin';
        open my $out, '>', $file or die "cannot write $file: $!\n";
        binmode $out;
        print $out $1;
        close $out;
        push @args, '-H', 'Content-Type: ' unless $has_ctype;
        push @args, '--data-binary', "\@$file";
    }
    my $timeout = $block->timeout || timeout();
    push @args, '--connect-timeout', $timeout, '--max-time', $timeout;
    push @args, $block->curl_options if defined $block->curl_options;
    my $proto = $block->curl_protocol // 'http';
    my $addr = $block->server_addr_for_client // $ServerAddr;
    push @args, "$proto://$addr:$ServerPortForClient$uri";
    return \@args;
}

# Runs a command; -> (exit status, stdout, stderr); kills it after $timeout.
sub run_cmd {
    my ($cmd, $timeout) = @_;
    my ($out, $err) = (Symbol::gensym(), Symbol::gensym());
    my $pid = IPC::Open3::open3(my $in, $out, $err, @$cmd);
    close $in;
    my %buf = (out => '', err => '');
    my %fh = (out => $out, err => $err);
    my $deadline = time + $timeout;
    while (%fh) {
        my $rin = '';
        vec($rin, fileno $_, 1) = 1 for values %fh;
        my $left = $deadline - time;
        last if $left <= 0;
        next unless select(my $rout = $rin, undef, undef, $left) > 0;
        for my $k (keys %fh) {
            next unless vec($rout, fileno $fh{$k}, 1);
            my $got = sysread($fh{$k}, my $chunk, 65536);
            if ($got) { $buf{$k} .= $chunk } else { delete $fh{$k} }
        }
    }
    kill 'KILL', $pid if %fh;
    waitpid($pid, 0);
    return ($?, $buf{out}, $buf{err});
}

sub send_http_req_by_curl {
    my ($block, $req, $timeout) = @_;
    my $name = $block->name;
    my $cmd = gen_curl_cmd_from_req($block, $req);
    my ($status, $out, $err) = run_cmd($cmd, $timeout + 2);
    if (!length $out) {
        if (length $err) {
            if (defined(my $want = $block->curl_error)) {
                return undef if ref $want ? $err =~ $want : index($err, $want) >= 0;
            }
            Test::More::fail("$name - command \"@$cmd\" generates stderr output: $err");
            return undef;
        }
        Test::More::fail("$name - curl command \"@$cmd\" generates no stdout output");
        return undef;
    }
    warn "WARNING: $name - command \"@$cmd\" generates stderr output: $err" if length $err;
    return $out;
}

# ---------------------------------------------------------------------------
# Responses.

{
    # The little we need of HTTP::Response.
    package Test::Nginx::Socket::Response;

    # status line, "Name: value" lines (with continuation lines) up to the
    # first line that is not a header, which is dropped if it is empty.
    # Everything after is the content (an interim "100 Continue" response
    # is therefore NOT skipped: its code is the code, the rest the body).
    sub parse {
        my ($class, $str) = @_;
        $str //= '';
        my $self = bless { headers => [], content => '' }, $class;
        my $status = $str =~ /\G(.*)\n/gc ? $1 : do { pos($str) = length $str; $str };
        $status =~ s/\r\z//;
        my @f = $status =~ /^\d{3} / ? (undef, split(' ', $status, 2))
                                     : split(' ', $status, 3);
        @$self{qw(protocol code message)} = @f;
        my $h = $self->{headers};
        while (1) {
            if ($str =~ /\G([^\s:]+)[ \t]*: ?(.*)\n?/gc) {
                push @$h, [$1, $2];
            } elsif (@$h && $str =~ /\G([ \t].*)\n?/gc) {
                $h->[-1][1] .= "\n$1";
            } else {
                $str =~ /\G\r?\n/gc;
                last;
            }
            $h->[-1][1] =~ s/\r\z//;
        }
        $self->{content} = substr($str, pos($str) // 0);
        return $self;
    }

    sub code { my $s = shift; $s->{code} = shift if @_; $s->{code} }
    sub content { my $s = shift; $s->{content} = shift if @_; $s->{content} }

    # case-insensitive, "_" in the asked name means "-"; several values are
    # joined with ", " in scalar context
    sub header {
        my ($self, $key) = @_;
        (my $want = lc $key) =~ tr/_/-/;
        my @v = map { $_->[1] } grep { lc $_->[0] eq $want } @{ $self->{headers} };
        return wantarray ? @v : @v ? join(', ', @v) : undef;
    }
}

# -> (response, raw header text, bytes left over after this response)
sub parse_response {
    my ($name, $raw, $head_req) = @_;
    my $raw_headers = $raw =~ /(.*?\r\n)\r\n/s ? $1 : '';
    my $res = Test::Nginx::Socket::Response->parse($raw);
    my $code = $res->code;
    if (defined $code && $code !~ /^\d+$/) {
        $res->code(undef);
        undef $code;
    }
    return ($res, $raw_headers) if $code && ($code == 304 || $code == 101);

    my $enc = $res->header('Transfer-Encoding');
    my $len = $res->header('Content-Length');
    my @trailers = $res->header('Trailer');
    my $left;

    if (defined $enc && $enc eq 'chunked') {
        my $body = $res->content;
        my $decoded = '';
        pos($body) = 0;
        while (1) {
            if ($body =~ /\G0[ \t]*\r\n/gc) {
                for my $t (@trailers) {
                    next if $body =~ /\G$t: [^\n]*\r\n/gc;
                    Test::More::fail("$name - invalid trailer data received (expected $t).");
                    return;
                }
                if ($body !~ /\G\r\n/gc) {
                    Test::More::fail("$name - invalid chunked data received (expected CRLF).");
                    return;
                }
                $left = $1 if $body =~ /\G(.+)/gcs;
                last;
            }
            if ($body =~ /\G[ \t]*([A-Fa-f0-9]+)[ \t]*\r\n/gc) {
                my $size = hex $1;
                my $at = pos $body;
                if (length($body) - $at < $size) {
                    Test::More::fail("$name - invalid chunked data received (not enough octets for the data section)");
                    return;
                }
                $decoded .= substr($body, $at, $size);
                pos($body) = $at + $size;
                if ($body !~ /\G\r\n/gc) {
                    Test::More::fail("$name - invalid chunked data received (expected CRLF).");
                    return;
                }
                next;
            }
            if ($body =~ /\G(.+)/gcs) {
                Test::More::fail("$name - invalid chunked body received: $1");
            } else {
                Test::More::fail("$name - no last chunk found - $body");
            }
            return;
        }
        $res->content($decoded);

    } elsif (defined $len && $len =~ /^\s*\d+\s*$/) {
        my $body = $res->content;
        if (length $body < $len) {
            warn "WARNING: $name - response body truncated: $len expected, but got ",
                 length $body, "\n" unless $head_req;
        } elsif (length $body > $len) {
            $left = substr($body, $len);
            $res->content(substr($body, 0, $len));
        }
    }
    return ($res, $raw_headers, $left);
}

# ---------------------------------------------------------------------------
# Checks.

# value of a check section for request $idx: arrays are indexed when there
# are several requests (and required then), otherwise their first element.
sub get_indexed_value {
    my ($name, $value, $idx, $need_array) = @_;
    if ($need_array) {
        return $value->[$idx] if ref $value eq 'ARRAY';
        bail_out("$name - You asked for many requests, the expected results should be arrays as well.");
    }
    return ref $value eq 'ARRAY' ? $value->[0] : $value;
}

sub skip_if_dry {
    my ($dry_run, $what) = @_;
    return 0 unless $dry_run;
    Test::More::skip("$what - tests skipped due to $dry_run", 1);
    return 1;
}

sub check_error_code {
    my ($block, $res, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;
    my $got = ($res && $res->code) || '';
    SKIP: {
        skip_if_dry($dry_run, $name);
        if (defined $block->error_code_like) {
            my $want = get_indexed_value($name, scalar($block->error_code_like), $idx, $need_array);
            Test::More::like($got, qr/$want/sm, "$name - status code ok");
        } elsif (defined $block->error_code) {
            Test::More::is($got, get_indexed_value($name, scalar($block->error_code), $idx, $need_array),
                           "$name - status code ok");
        } else {
            Test::More::is($got, 200, "$name - status code ok");
        }
    }
}

sub check_raw_response_headers {
    my ($block, $raw_headers, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;
    for my $kind (qw(like unlike)) {
        my $spec = $block->${\"raw_response_headers_$kind"};
        next unless defined $spec;
        my $want = get_indexed_value($name, $spec, $idx, $need_array);
        SKIP: {
            skip_if_dry($dry_run, "$name - raw_response_headers_$kind");
            no strict 'refs';
            &{"Test::More::$kind"}($raw_headers, qr/$want/s, "$name - raw resp headers $kind");
        }
    }
}

sub check_response_headers {
    my ($block, $res, $raw_headers, $dry_run, $idx, $need_array) = @_;
    my $name = $block->name;
    if (defined $block->response_headers) {
        my $pairs = parse_headers(get_indexed_value($name, scalar($block->response_headers), $idx, $need_array));
        for my $p (@$pairs) {
            my ($key, $val) = @$p;
            SKIP: {
                skip_if_dry($dry_run, "$name - response_headers");
                if (!defined $val) {    # "!Name": must not be there at all
                    Test::More::unlike($raw_headers, qr/^\s*\Q$key\E\s*:/m,
                                       "$name - header $key not present in the raw headers");
                } else {
                    $val =~ s/\$ServerPort\b/$ServerPort/g;
                    $val =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
                    my $got = ($res ? $res->header($key) : undef) // '';
                    Test::More::is($got, $val, "$name - header $key ok");
                }
            }
        }
    } elsif (defined $block->response_headers_like) {
        my $pairs = parse_headers(get_indexed_value($name, scalar($block->response_headers_like), $idx, $need_array));
        for my $p (@$pairs) {
            my ($key, $val) = @$p;
            $val //= '';
            my $got = ($res ? $res->header($key) : undef) // '';
            SKIP: {
                skip_if_dry($dry_run, "$name - response_headers_like");
                Test::More::like($got, qr/^$val$/, "$name - header $key like ok");
            }
        }
    }
}

# --- response_body_filters: names (md5_hex sha1_hex uc lc ucfirst lcfirst
# length) or code refs, a list, or one list per request.
sub transform_response_body {
    my ($block, $res, $idx) = @_;
    my $filters = $block->response_body_filters;
    return unless defined $filters && $res && defined $res->content;
    my $name = $block->name;
    if (!ref $filters) {
        $filters = [split ' ', $filters];
    } elsif (ref $filters ne 'ARRAY') {
        $filters = [$filters];
    }
    if (@$filters && ref $filters->[0] eq 'ARRAY') {
        $filters = $filters->[$idx]
            // bail_out("$name - no --- response_body_filters for request $idx");
    }
    my %named = (
        md5_hex => \&Digest::MD5::md5_hex, sha1_hex => \&Digest::SHA::sha1_hex,
        uc => sub { uc $_[0] }, lc => sub { lc $_[0] },
        ucfirst => sub { ucfirst $_[0] }, lcfirst => sub { lcfirst $_[0] },
        length => sub { length $_[0] },
    );
    my $content = $res->content;
    for my $f (@$filters) {
        my $code = ref $f eq 'CODE' ? $f : $named{$f}
            // bail_out("$name - unknown filter, \"$f\", specified in the --- response_body_filters section");
        $content = $code->($content);
    }
    $res->content($content);
}

sub check_response_body {
    my ($block, $res, $dry_run, $idx, $rep, $need_array) = @_;
    my $name = $block->name;
    my $content = $res ? $res->content : undef;
    if (defined $content) {
        $content =~ s/^TE: deflate,gzip;q=0\.3\r\n//gm;
        $content =~ s/^Connection: TE, close\r\n//gm;
    }

    if (defined $block->response_body) {
        my $want = get_indexed_value($name, scalar($block->response_body), $idx, $need_array);
        if (defined $want && !ref $want) {
            $want =~ s/\$ServerPort\b/$ServerPort/g;
            $want =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
            $want = expand_env_in_text($want, $name, $Test::Nginx::Util::RandPorts);
        }
        SKIP: {
            skip_if_dry($dry_run, "$name - response_body");
            if (ref $want) {
                Test::More::like($content, $want,
                    "$name - response_body - like (repeated req $rep, req $idx)");
            } else {
                Test::More::is($content, $want,
                    "$name - response_body - response is expected (repeated req $rep, req $idx)");
            }
        }
    } elsif (defined $block->response_body_like || defined $block->response_body_unlike) {
        my $kind = defined $block->response_body_like ? 'like' : 'unlike';
        my $spec = $kind eq 'like' ? $block->response_body_like : $block->response_body_unlike;
        my $pat = get_indexed_value($name, $spec, $idx, $need_array);
        $pat =~ s/\$ServerPort\b/$ServerPort/g;
        $pat =~ s/\$ServerPortForClient\b/$ServerPortForClient/g;
        my $summary = trim($content) // '';
        SKIP: {
            skip_if_dry($dry_run, "$name - response_body_$kind");
            my $desc = "$name - response_body_$kind - response is expected ($summary)";
            $kind eq 'like' ? Test::More::like($content, qr/$pat/s, $desc)
                            : Test::More::unlike($content, qr/$pat/s, $desc);
        }
    }

    $_->($block, $res ? $res->content : undef, $idx, $rep, $dry_run) for @ResponseBodyChecks;
}

sub fmt_str {
    my $s = shift;
    chomp $s;
    $s =~ s/"/\\"/g;
    $s =~ s/\r/\\r/g;
    $s =~ s/\n/\\n/g;
    return $s;
}

# a section of patterns -> list: one substring per line, or qr// / array
sub pattern_list {
    my $pats = shift;
    return [$pats] if ref $pats eq 'Regexp';
    return [@$pats] if ref $pats eq 'ARRAY';
    chomp $pats;
    return [split /\n+/, $pats];
}

sub line_matches {
    my ($line, $pat) = @_;
    return (ref $pat && $line =~ $pat) || index($line, "$pat") >= 0;
}

# "--- error_log" (each pattern must match some line), "--- no_error_log"
# (no pattern may match any line) and the same for other log files.
sub match_log {
    my ($name, $what, $file, $lines, $want, $dont_want, $dry_run, $suffix) = @_;
    if (defined $want) {
        my @pats = @{ pattern_list($want) };
        for my $line (@$lines) {
            for my $pat (@pats) {
                next unless defined $pat && line_matches($line, $pat);
                SKIP: {
                    skip_if_dry($dry_run, "$name - $what");
                    Test::More::pass("$name - pattern \"$pat\" matches a line in $file$suffix");
                }
                undef $pat;
            }
        }
        for my $pat (grep { defined } @pats) {
            SKIP: {
                skip_if_dry($dry_run, "$name - $what");
                Test::More::fail("$name - pattern \"$pat\" should match a line in $file$suffix");
            }
        }
    }
    if (defined $dont_want) {
        my @pats = @{ pattern_list($dont_want) };
        my %found;
        for my $i (0 .. $#$lines) {
            my $line = $lines->[$i];
            for my $pat (@pats) {
                next unless defined $pat && line_matches($line, $pat);
                $found{$pat} = 1;
                SKIP: {
                    skip_if_dry($dry_run, "$name - no_$what");
                    my @more = @$lines[$i + 1 .. min($i + 9, $#$lines)];
                    Test::More::fail("$name - pattern \"" . fmt_str($pat)
                        . "\" should not match any line in $file but matches line \""
                        . fmt_str($line) . "\"$suffix\n" . join('', @more));
                }
            }
        }
        for my $pat (grep { defined && !$found{$_} } @pats) {
            SKIP: {
                skip_if_dry($dry_run, "$name - no_$what");
                Test::More::pass("$name - pattern \"" . fmt_str($pat)
                                 . "\" does not match a line in $file$suffix");
            }
        }
    }
}

sub check_error_log {
    my ($block, $res, $dry_run, $rep, $need_array) = @_;
    my $name = $block->name;
    my $lines;

    # Upstream reads error.log once, a moment after the response.  We also
    # re-read it for a short while as long as "--- error_log" patterns are
    # missing (log-phase lines may come after the response is complete).
    my $want = $block->error_log;
    $lines = error_log_data() // [];
    {
        if (defined $want && !$dry_run) {
            my $deadline = time + $Test::Nginx::Util::ErrLogPollTime;
            my @pats = @{ pattern_list($want) };
            while (time < $deadline) {
                my @missing = grep {
                    my $p = $_;
                    defined $p && !grep { line_matches($_, $p) } @$lines
                } @pats;
                last unless @missing;
                sleep 0.02;
                my ($more, $end) = Test::Nginx::Util::read_log_from(
                    $Test::Nginx::Util::ErrLogFile, $Test::Nginx::Util::ErrLogFilePos);
                next unless $more && @$more;
                if ($Test::Nginx::Util::CheckAccumErrLog) {
                    $lines = $more;
                } else {
                    push @$lines, @$more;
                    $Test::Nginx::Util::ErrLogFilePos = $end;
                }
            }
        }
    }

    my $grep = $block->grep_error_log;
    $grep = $grep->[$rep] if ref $grep eq 'ARRAY';
    if (defined $grep) {
        my $expected = $block->grep_error_log_out;
        bail_out("$name - No --- grep_error_log_out defined but --- grep_error_log is defined")
            unless defined $expected;
        $expected = expand_env_in_text($expected, $name, $Test::Nginx::Util::RandPorts);
        $expected = $expected->[$rep] if ref $expected eq 'ARRAY';
        SKIP: {
            skip_if_dry($dry_run, "$name - error_log");
            my $out = '';
            for my $line (@$lines) {
                my $m = ref $grep && $line =~ $grep ? $&
                      : $line =~ /\Q$grep\E/        ? $&
                      :                               undef;
                $out .= "$m\n" if defined $m && $m !~ /\n/;
            }
            ref $expected eq 'Regexp'
                ? Test::More::like($out, $expected, "$name - grep_error_log_out (req $rep)")
                : Test::More::is($out, $expected, "$name - grep_error_log_out (req $rep)");
        }
    } elsif (!defined $block->grep_error_log && defined $block->grep_error_log_out) {
        bail_out("$name - No --- grep_error_log defined but --- grep_error_log_out is defined");
    }

    match_log($name, 'error_log', 'error.log', $lines, $want, scalar($block->no_error_log),
              $dry_run, " (req $rep)");

    return if $dry_run;
    # like upstream: point out unexpected serious messages, fail on assertions
    my %checked = map { $_ => 1 } grep {
        my $lvl = $_;
        grep { index($_, "[$lvl") >= 0 }
            map { @{ pattern_list($_) } } grep { defined } $want, $block->no_error_log
    } qw(alert crit emerg);
    for my $line (@$lines) {
        for my $lvl (qw(alert crit emerg)) {
            warn "WARNING: $name - " . fmt_str($line) . "\n"
                if !$checked{$lvl} && $line =~ /\[$lvl\]/;
        }
        Test::More::fail("$name - $line") if $line =~ /\bAssertion .*?failed\b/;
    }
}

sub check_access_log {
    my ($block, $dry_run, $rep) = @_;
    return unless defined $block->access_log || defined $block->no_access_log;
    match_log($block->name, 'access_log', 'access.log', access_log_data(),
              scalar($block->access_log), scalar($block->no_access_log), $dry_run, " (req $rep)");
}

# "--- shutdown_error_log" / "--- no_shutdown_error_log": checked once the
# block's nginx has been stopped.
sub check_shutdown_error_log {
    my ($block) = @_;
    my $dry_run = $ENV{TEST_NGINX_NO_CLEAN} ? 'TEST_NGINX_NO_CLEAN' : 0;
    match_log($block->name, 'shutdown_error_log', 'error.log', error_log_data() // [],
              scalar($block->shutdown_error_log), scalar($block->no_shutdown_error_log), $dry_run, '');
}

# ---------------------------------------------------------------------------
# One repetition of one block.

sub run_test_helper {
    my ($block, $dry_run, $rep) = @_;
    my $name = $block->name;
    my $reqs = get_req_from_block($block);
    bail_out("$name - request empty") unless @$reqs;

    my $timeout = parse_time($block->timeout) // timeout();
    my $pipelined = $block->pipelined_requests;
    my ($res, $need_array);
    my $idx = 0;

    for my $i (0 .. $#$reqs) {
        my ($raw, $head_req) = send_request($reqs->[$i], scalar($block->raw_request_middle_delay),
                                            $timeout, $block);
        my $n = $pipelined ? scalar @$pipelined : 0;
        $need_array = $pipelined ? 1 : @$reqs > 1;

        while (1) {    # once per response (several for pipelined requests)
            $raw //= '';
            my ($raw_headers, $left);
            if (!defined $block->ignore_response) {
                if (defined $block->http09) {
                    $res = Test::Nginx::Socket::Response->parse('');
                    $res->code(200);
                    $res->content($raw);
                    $raw_headers = '';
                } else {
                    ($res, $raw_headers, $left) = parse_response($name, $raw, $head_req);
                }
            }
            if ($n) {
                $raw = $left;
                $n--;
            } elsif (defined $left && length $left) {
                (my $shown = $left) =~ s/([\0-\037\200-\377])/sprintf('\x{%02x}', ord $1)/eg;
                warn "WARNING: $name - unexpected extra bytes after last chunk in response: \"$shown\"\n";
            }

            if (!defined $block->ignore_response) {
                check_error_code($block, $res, $dry_run, $idx, $need_array);
                check_raw_response_headers($block, $raw_headers, $dry_run, $idx, $need_array);
                check_response_headers($block, $res, $raw_headers, $dry_run, $idx, $need_array);
                transform_response_body($block, $res, $idx);
                check_response_body($block, $res, $dry_run, $idx, $rep, $need_array);
            }

            # between responses: the log checks run after each one, too
            if ($n || $i < $#$reqs) {
                sleep $block->wait if $block->wait;
                check_error_log($block, $res, $dry_run, $rep, $need_array);
                check_access_log($block, $dry_run, $rep) unless defined $block->ignore_response;
            }
            $idx++;
            last unless $n;
        }
    }

    sleep $block->wait if $block->wait;
    check_error_log($block, $res, $dry_run, $rep, $need_array);
    check_access_log($block, $dry_run, $rep) unless defined $block->ignore_response;
}

1;
