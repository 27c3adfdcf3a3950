#!/usr/bin/perl
# A small deterministic HTTP/1.1 client for bench/run: sends exactly COUNT
# POST requests over CONNS keep-alive connections, each with up to DEPTH
# requests in flight (1: a request, then its answer; more: pipelined), and
# prints how many answers had each status. Used where the number and order
# of requests matter (the callgrind mode, the strace count, the zone
# capacity test), not for speed.
#
#   client.pl --port P --path /accepted --kind distinct --count N
#             [--prefix p] [--from 1] [--reverse] [--conns 1] [--depth 1]
#
# Bodies (--kind), as bench/post.lua:
#   distinct  {"email":"<prefix>-<i>@example.com"}, i = from .. from+count-1
#             (from+count-1 down to from with --reverse)
#   invalid   {"email":"<prefix>-<i>"}             (400 invalid_email)
#   same      {"email":"same-<prefix>@example.com"} (silenced after the first)
# With one connection the requests reach nginx in that order.
use strict;
use warnings;
use Getopt::Long;
use IO::Select;
use IO::Socket::INET;
use Socket qw(IPPROTO_TCP TCP_NODELAY);

my %o = (host => '127.0.0.1', path => '/accepted', kind => 'distinct', count => 1,
         prefix => 'p', from => 1, conns => 1, depth => 1, reverse => 0);
GetOptions(\%o, 'host=s', 'port=i', 'path=s', 'kind=s', 'count=i', 'prefix=s',
           'from=i', 'conns=i', 'depth=i', 'reverse!') or die "usage: see the head of $0\n";
die "--port is required\n" unless $o{port};
die "--kind: distinct, invalid or same\n" unless $o{kind} =~ /^(distinct|invalid|same)$/;

sub body {
    my ($i) = @_;
    return qq({"email":"same-$o{prefix}\@example.com"}) if $o{kind} eq 'same';
    return qq({"email":"$o{prefix}-$i"}) if $o{kind} eq 'invalid';
    return qq({"email":"$o{prefix}-$i\@example.com"});
}

sub request {
    my ($i) = @_;
    my $b = body($i);
    return "POST $o{path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
         . "Content-Length: " . length($b) . "\r\n\r\n$b";
}

my @order = map { $o{from} + $_ } 0 .. $o{count} - 1;
@order = reverse @order if $o{reverse};
my (%status, @conns);
my $select = IO::Select->new;
my $answered = 0;

sub open_conn {
    my $s = IO::Socket::INET->new(PeerAddr => $o{host}, PeerPort => $o{port}, Proto => 'tcp')
        or die "connect $o{host}:$o{port}: $!\n";
    setsockopt($s, IPPROTO_TCP, TCP_NODELAY, 1);
    $select->add($s);
    return { sock => $s, buf => '', inflight => 0 };
}

sub send_more {
    my ($c) = @_;
    my $out = '';
    while ($c->{inflight} < $o{depth} && @order) {
        $out .= request(shift @order);
        $c->{inflight}++;
    }
    while (length $out) {
        my $n = syswrite($c->{sock}, $out);
        die "write: $!\n" unless defined $n;
        substr($out, 0, $n, '');
    }
}

# Takes the complete answers off a connection's buffer; false once the
# server said it closes.
sub take_answers {
    my ($c) = @_;
    while ($c->{inflight} > 0) {
        my $end = index($c->{buf}, "\r\n\r\n");
        return 1 if $end < 0;
        my $head = substr($c->{buf}, 0, $end + 4);
        my ($status) = $head =~ m{^HTTP/1\.[01] (\d{3})} or die "bad status line\n";
        my ($length) = $head =~ m{\r\ncontent-length:\s*(\d+)}i;
        die "answer without Content-Length\n" unless defined $length;
        return 1 if length($c->{buf}) < $end + 4 + $length;
        substr($c->{buf}, 0, $end + 4 + $length, '');
        $status{$status}++;
        $answered++;
        $c->{inflight}--;
        if ($head =~ m{\r\nconnection:\s*close}i) {
            die "the server closed a connection with requests in flight\n" if $c->{inflight};
            return 0;
        }
    }
    return 1;
}

@conns = map { open_conn() } 1 .. ($o{conns} < $o{count} ? $o{conns} : ($o{count} || 1));
send_more($_) for @conns;
while ($answered < $o{count}) {
    my @ready = $select->can_read(30) or die "no answer in 30 s\n";
    for my $sock (@ready) {
        my ($c) = grep { $_->{sock} == $sock } @conns;
        my $n = sysread($sock, $c->{buf}, 65536, length $c->{buf});
        die "read: $!\n" unless defined $n;
        die "connection closed before an answer\n" if $n == 0 && $c->{inflight};
        my $open = take_answers($c);
        if (!$open) {
            $select->remove($sock);
            close $sock;
            my $fresh = open_conn();
            %$c = %$fresh;
        }
        send_more($c);
    }
}
close $_->{sock} for @conns;
print join(' ', map { "$_=$status{$_}" } sort keys %status), "\n";
