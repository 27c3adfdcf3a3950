# Several nginx nodes sharing one Redis, for the shared-limit tests
# (t/016-shared-limit.t): the harness runs one nginx per block (node 0, on
# TEST_NGINX_SERVER_PORT); start_node() runs more, each a plain
# `nginx -p DIR` with the module loaded, on the next ports, with the same
# http configuration; fleet_posts() spreads requests over all of them.
package t::Fleet;

use strict;
use warnings;
use Exporter 'import';
use File::Temp ();
use IO::Socket::INET;

our @EXPORT = qw(start_node stop_node stop_nodes node_port fleet_posts);

our $Dir = File::Temp::tempdir(CLEANUP => 1);
our %Nodes;  # n => prefix

sub node_port { ($ENV{TEST_NGINX_SERVER_PORT} || 1984) + shift }

# start_node($n, $http_config, $locations): node $n on node_port($n).
sub start_node {
    my ($n, $http, $locations) = @_;
    stop_node($n);
    my $prefix = "$Dir/node$n";
    mkdir $prefix;
    mkdir "$prefix/$_" for qw(logs conf tmp);
    my $modules = join "\n", map { "load_module $_;" } grep { length }
                  split /\s+/, $ENV{TEST_NGINX_LOAD_MODULES} // '';
    my $user = $> == 0 ? 'user root;' : '';
    my $port = node_port($n);
    open my $out, '>', "$prefix/conf/nginx.conf" or die "$prefix: $!";
    print $out <<"_EOC_";
$modules
$user
worker_processes 1;
daemon on;
master_process on;
pid $prefix/logs/nginx.pid;
error_log $prefix/logs/error.log info;
events { worker_connections 1024; }
http {
    access_log off;
    client_body_temp_path $prefix/tmp/body;
    proxy_temp_path $prefix/tmp/proxy;
    fastcgi_temp_path $prefix/tmp/fastcgi;
    uwsgi_temp_path $prefix/tmp/uwsgi;
    scgi_temp_path $prefix/tmp/scgi;
$http
    server {
        listen 127.0.0.1:$port;
$locations
    }
}
_EOC_
    close $out;
    my $rc = system $Test::Nginx::Util::NginxBinary, '-p', $prefix, '-c', "$prefix/conf/nginx.conf";
    die "node $n did not start (exit $rc): " . `cat $prefix/logs/error.log` if $rc != 0;
    for (1 .. 100) {
        last if IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port);
        select undef, undef, undef, 0.05;
    }
    $Nodes{$n} = $prefix;
}

sub stop_node {
    my $n = shift;
    my $prefix = delete $Nodes{$n} or return;
    open my $in, '<', "$prefix/logs/nginx.pid" or return;
    chomp(my $pid = <$in>);
    kill 'TERM', $pid;
    for (1 .. 100) {
        last unless kill 0, $pid;
        select undef, undef, undef, 0.05;
    }
}

sub stop_nodes { stop_node($_) for keys %Nodes }

END { stop_nodes() }

# fleet_posts(\@nodes, $requests, $email_of, $uri): $requests POSTs spread
# round-robin over the nodes, from 10 processes at once, each with an
# X-Forwarded-For of 1,000 client addresses (10.0.x.y, or an IPv6 one when
# $email_of returns a second value); $email_of->($i) gives request $i's
# email. Returns how many were answered 200.
sub fleet_posts {
    my ($nodes, $requests, $email_of, $uri) = @_;
    my $procs = 10;
    return t::Resend::in_parallel($procs, sub {
        my $p = shift;
        my $ok = 0;
        for (my $i = $p; $i < $requests; $i += $procs) {
            my ($email, $client) = $email_of->($i);
            $client //= sprintf '10.0.%d.%d', int(($i % 1000) / 250), $i % 250 + 1;
            $ok += t::Resend::post_once(node_port($nodes->[$i % @$nodes]), $uri // '/r',
                                        qq({"email":"$email"}), "X-Forwarded-For: $client\r\n");
        }
        return $ok;
    });
}

1;
