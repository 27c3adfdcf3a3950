# A real browser for the tests: headless Chromium (Debian's `chromium`)
# driven by `chromedriver` (Debian's `chromium-driver`) through the W3C
# WebDriver HTTP API, with HTTP::Tiny and JSON::PP (both in Perl's core).
#
#   my $why = t::Browser::start();      # undef once a session is up, else why not
#   t::Browser::visit($url);
#   my $value = t::Browser::run_async($script, @args);   # the script calls its last argument
#   t::Browser::stop();                 # also at exit
package t::Browser;

use strict;
use warnings;
use File::Temp ();
use HTTP::Tiny;
use JSON::PP ();
use POSIX ();
use Time::HiRes ();
use t::Resend ();

our $Chromium = $ENV{CHROMIUM} // '/usr/bin/chromium';
our $Driver = $ENV{CHROMEDRIVER} // '/usr/bin/chromedriver';

# Without the background-networking flags Chromium opens connections of its
# own (updates, sync, field trials) that a closed network refuses; a fresh
# profile each run, so that nothing (a cached preflight) is carried over.
our @Flags = qw(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run
                --disable-background-networking --disable-component-update --disable-sync);

my ($pid, $base, $session, $dir, $log, $owner);
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;

# One WebDriver command: (its value) or dies with WebDriver's error.
sub command {
    my ($method, $path, $body) = @_;
    my $res = $http->request($method, "$base$path", {
        headers => { 'Content-Type' => 'application/json' },
        defined $body ? (content => $json->encode($body)) : (),
    });
    my $reply = eval { $json->decode($res->{content}) };
    die "webdriver $method $path: $res->{status} " . substr($res->{content} // '', 0, 500) . "\n"
        unless $res->{success} && $reply;
    return $reply->{value};
}

sub driver_log {
    return '' unless $log && open my $in, '<', $log;
    local $/;
    my $text = <$in> // '';
    return length $text > 2000 ? substr($text, -2000) : $text;
}

sub start {
    for ($Chromium, $Driver) {
        return "$_ is not installed (Debian packages chromium, chromium-driver)" unless -x $_;
    }
    $dir = File::Temp::tempdir('resend-browser.XXXXXX', TMPDIR => 1, CLEANUP => 1);
    $log = "$dir/chromedriver.log";
    my $port = t::Resend::free_port();
    $owner = $$;
    $pid = t::Resend::spawn_logged($log, $Driver, "--port=$port");    # the browser in its group
    $base = "http://127.0.0.1:$port";
    my $deadline = Time::HiRes::time() + 15;
    until (eval { command('GET', '/status')->{ready} }) {
        return "chromedriver did not answer on port $port within 15 s\n" . driver_log()
            if Time::HiRes::time() > $deadline || waitpid($pid, POSIX::WNOHANG()) == $pid;
        Time::HiRes::sleep(0.05);
    }
    my $value = eval {
        command('POST', '/session', { capabilities => { alwaysMatch => {
            browserName => 'chrome',
            'goog:chromeOptions' => { binary => $Chromium,
                                      args => [@Flags, "--user-data-dir=$dir/profile"] },
            timeouts => { script => 10_000, pageLoad => 10_000 },
        } } });
    };
    return "Chromium did not start: $@" . driver_log() unless $value && $value->{sessionId};
    $session = $value->{sessionId};
    return undef;
}

sub visit {
    my ($url) = @_;
    command('POST', "/session/$session/url", { url => $url });
}

sub run_async {
    my ($script, @args) = @_;
    return command('POST', "/session/$session/execute/async", { script => $script, args => \@args });
}

sub stop {
    return unless $owner && $owner == $$;    # not in a forked child
    eval { command('DELETE', "/session/$session") } if $session;
    undef $session;
    t::Resend::stop_group($pid) if $pid;
    undef $pid;
}

END { my $status = $?; stop(); $? = $status }

1;
