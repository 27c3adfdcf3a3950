#!/usr/bin/perl
# Summarizes bench/run's callgrind runs:
#   cgreport.pl DIR N CONNS PATH-cC=STATUSES|SYSCALLS ...
# DIR holds, for baseline and each run NAME (PATH-cC: C client connections),
# NAME.self and NAME.incl:
# callgrind_annotate --inclusive=no|yes --threshold=100 --auto=no output. Every
# run did the same warm-up; NAME's run then sent N more requests, so
# (NAME - baseline) / N is the cost of one request of that kind, program
# totals and function by function. Function tables are of the runs with
# CONNS connections.
use strict;
use warnings;

my ($dir, $n, $first, @runs) = @ARGV;
die "usage: $0 DIR N CONNS PATH-cCONNS=STATUSES|SYSCALLS...\n" unless $dir && $n && $first && @runs;

# { total => Ir, fn => { "function\tobject" => Ir } }
# callgrind_annotate names the object of a function's own lines; lines of
# a function that come from another file (inlined headers) have none: they
# get the object that the same function name has elsewhere in the file.
# Inclusive costs ($max): a function listed under several file names (the
# same lines seen through two paths) counts once, at its largest.
sub load {
    my ($file, $max) = @_;
    open my $fh, '<', $file or die "$file: $!\n";
    my %r = (total => 0, fn => {});
    my $in_table = 0;
    my (@rows, %obj_of);
    while (<$fh>) {
        if (/^\s*([\d,]+) \(\s*[\d.]+%\)\s+PROGRAM TOTALS/) { ($r{total} = $1) =~ tr/,//d; next }
        if (/^Ir\s+file:function/) { $in_table = 1; next }
        next unless $in_table;
        next if /^-+$/;
        last if /^\s*$/ && @rows;
        next unless /^\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*?)\s*$/;
        my ($ir, $where) = ($1, $2);
        $ir =~ tr/,//d;
        my $obj = $where =~ s/\s+\[([^\]]+)\]$// ? $1 : undef;
        (my $fn = $where) =~ s/^[^:]*://;   # drop "file:" (paths hold no ':')
        $obj_of{$fn} //= $obj if defined $obj;
        push @rows, [$fn, $obj, $ir];
    }
    for (@rows) {
        my ($fn, $obj, $ir) = @$_;
        $obj //= $obj_of{$fn} // '?';
        my $k = "$fn\t$obj";
        if ($max) { $r{fn}{$k} = $ir if $ir > ($r{fn}{$k} // 0) } else { $r{fn}{$k} += $ir }
    }
    return \%r;
}

sub short_obj {
    my ($o) = @_;
    return 'module' if $o =~ /module\.so$/;
    return 'nginx' if $o =~ m{/nginx$};
    (my $s = $o) =~ s{.*/}{};
    $s =~ s/\.so.*$//;
    return $s;
}

sub per_request {
    my ($run, $base, $key) = @_;
    return (($run->{fn}{$key} // 0) - ($base->{fn}{$key} // 0)) / $n;
}

my %self = (baseline => load("$dir/baseline.self"));
my %incl = (baseline => load("$dir/baseline.incl", 1));
my (@names, %status, %sys, @paths, @conns, %seen_path, %seen_conns);
for (@runs) {
    my ($name, $rest) = split /=/, $_, 2;
    my ($st, $sc) = split /\|/, $rest // '', 2;
    my ($path, $c) = $name =~ /^(.*)-c(\d+)$/ or die "run name $name: want PATH-cCONNS\n";
    push @names, $name;
    push @paths, $path unless $seen_path{$path}++;
    push @conns, $c unless $seen_conns{$c}++;
    $status{$name} = $st // '';
    $sys{$name} = $sc // '';
    $self{$name} = load("$dir/$name.self");
    $incl{$name} = load("$dir/$name.incl", 1) if $c == $first;
}
my $base = $self{baseline};
my %ipr = map { $_ => ($self{$_}{total} - $base->{total}) / $n } @names;

print "instructions per request: callgrind, user space of the nginx process (kernel not counted);\n",
      "$n requests of each kind after the same warm-up, over C keep-alive connections, one request in flight on each:\n";
printf "%-14s" . ("  %10s %8s" x @conns) . "\n", 'path', map { ("C=$_ instr", 'x static') } @conns;
for my $p (@paths) {
    printf "%-14s" . ("  %10.0f %8.2f" x @conns) . "\n", $p,
        map { ($ipr{"$p-c$_"}, $ipr{"$p-c$_"} / $ipr{"static-c$_"}) } @conns;
}
print "\nanswers, and syscalls per request of a normal worker (strace -c, same clients):\n";
for my $name (@names) {
    printf "%-17s %-22s %s\n", $name, $status{$name}, $sys{$name};
}

my @labels = map { "$_-c$first" } @paths;
# By object (binary or library), per request.
print "\ninstructions per request by object ($first connection(s)):\n";
my %objs;
for my $l (@labels) {
    for my $k (keys %{ $self{$l}{fn} }) { $objs{ short_obj((split /\t/, $k)[1]) } = 1 }
}
my @objs = sort keys %objs;
my %by;
for my $l (@labels) {
    my %sum;
    my %keys = map { $_ => 1 } keys %{ $self{$l}{fn} }, keys %{ $base->{fn} };
    $sum{ short_obj((split /\t/, $_)[1]) } += per_request($self{$l}, $base, $_) for keys %keys;
    $by{$l} = \%sum;
}
@objs = grep { my $o = $_; grep { abs($by{$_}{$o} // 0) >= 5 } @labels } @objs;
printf "%-17s" . (" %10s" x @objs) . "\n", 'path', @objs;
for my $l (@labels) {
    printf "%-17s" . (" %10.0f" x @objs) . "\n", $l, map { $by{$l}{$_} // 0 } @objs;
}

sub top_self {
    my ($title, $run, $minus, $count, $filter) = @_;
    my %keys = map { $_ => 1 } keys %{ $run->{fn} }, keys %{ $minus->{fn} };
    my @rows = map { [$_, per_request($run, $base, $_) - ($minus == $base ? 0 : per_request($minus, $base, $_))] } keys %keys;
    @rows = grep { $filter->($_->[0]) } @rows if $filter;
    @rows = sort { $b->[1] <=> $a->[1] } @rows;
    print "\n$title\n";
    for my $r (@rows[0 .. ($count < @rows ? $count : @rows) - 1]) {
        my ($fn, $obj) = split /\t/, $r->[0];
        printf "%9.0f  %-8s %s\n", $r->[1], short_obj($obj), $fn;
    }
}

my $accepted = $self{"accepted-c$first"};
my $static = $self{"static-c$first"};
top_self('accepted path: instructions per request by function (self cost), top 30:', $accepted, $base, 30);
top_self('accepted minus static: what one accepted request costs more than the ceiling, by function (self), top 30:',
         $accepted, $static, 30);
top_self('accepted path, outside nginx and libc (the module and the libraries it calls), self cost, top 25:',
         $accepted, $base, 25, sub { short_obj((split /\t/, $_[0])[1]) !~ /^(nginx|libc|ld-linux-x86-64)$/ });

# Inclusive costs of the module's functions (includes what they call).
my ($ia, $ib) = ($incl{"accepted-c$first"}, $incl{baseline});
my @rows = map { [$_, (($ia->{fn}{$_} // 0) - ($ib->{fn}{$_} // 0)) / $n] }
           grep { (split /\t/)[1] =~ /module\.so$/ } keys %{ $ia->{fn} };
@rows = sort { $b->[1] <=> $a->[1] } @rows;
print "\naccepted path: the module's functions, inclusive (with their callees), per request, top 25:\n";
for my $r (@rows[0 .. (25 < @rows ? 25 : @rows) - 1]) {
    printf "%9.0f  %s\n", $r->[1], (split /\t/, $r->[0])[0];
}

# Selected entry points, inclusive, per request, for every path.
my @points = (
    ['RAND_bytes (nginx $request_id)',         qr/^RAND_bytes$/],
    ['keyed_hash::digest (HMAC-SHA256)',       qr/^resend::keyed_hash::digest\(/],
    ['limit_check (both phases, with HMAC)',   qr/^ngx_http_resend_confirmation_limit_check\(/],
    ['body_parser::parse (JSON + email)',      qr/^resend::body_parser::parse\(/],
    ['read_client_request_body (nginx)',       qr/^ngx_http_read_client_request_body$/],
    ['record (XADD args, $request_id, send)',  qr/^ngx_http_resend_confirmation_record\(/],
    ['link_send (RESP encoding, queueing)',    qr/^ngx_http_resend_confirmation_link_send\(/],
    ['link_write (the write to Redis)',        qr/^ngx_http_resend_confirmation_link_write\(/],
    ['link_read (Redis reply, then answer)',   qr/^ngx_http_resend_confirmation_link_read\(/],
    ['answer (headers, body, output filters)', qr/^ngx_http_resend_confirmation_(?:reply|answer)\(/],
    ['ngx_log_error_core (error log lines)',   qr/^ngx_log_error_core$/],
);
my @first_labels = grep { $incl{$_} } map { "$_-c$first" } @paths;
print "\ninclusive instructions per request of selected functions ($first connection(s)):\n";
printf "%-40s" . (" %13s" x @first_labels) . "\n", 'function', map { (my $x = $_) =~ s/-c\d+$//; $x } @first_labels;
for my $pt (@points) {
    my ($title, $re) = @$pt;
    my @v;
    for my $l (@first_labels) {
        my $sum = 0;
        for my $k (keys %{ $incl{$l}{fn} }) {
            my ($fn) = split /\t/, $k;
            next unless $fn =~ $re;
            $sum += ($incl{$l}{fn}{$k} - ($ib->{fn}{$k} // 0)) / $n;
        }
        push @v, $sum;
    }
    printf "%-40s" . (" %13.0f" x @v) . "\n", $title, @v;
}
