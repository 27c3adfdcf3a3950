# CORS in a real browser: headless Chromium loads a page from one origin
# (http://127.0.0.2:PORT) whose script fetch()es the module on another
# (http://127.0.0.3:PORT), with the configuration of the README
# (t::Resend::cors_http_config, $CorsLocation), and reads the JSON of a 200
# and of a 429; the same page from an origin not allowed (127.0.0.4) is
# refused by the browser. Skipped where Chromium cannot run, except in CI
# (CI=true, set by .ci/run), where that is a failure.
use Test::Nginx::Socket;    # the plan below: skip_all where Chromium cannot run
use t::Resend;
use t::Browser;

if (my $why = t::Browser::start()) {
    if (($ENV{CI} // '') eq 'true') {
        Test::More::plan(tests => 1);
        Test::More::fail("Chromium must run in CI: $why");
        exit 1;
    }
    Test::More::plan(skip_all => "Chromium cannot run here: $why");
}
Test::More::plan('no_plan');

our $Port = $ENV{TEST_NGINX_SERVER_PORT} || 1984;
our $App = "http://127.0.0.2:$Port";
our $Api = "http://127.0.0.3:$Port";
our $Other = "http://127.0.0.4:$Port";

# The app's page, served by the same nginx (an origin is scheme, address
# and port: these three addresses are three origins).
our $Config = <<"_EOC_";
    location = /app.html {
        default_type text/html;
    }
    location = /accounts/resend-confirmation {
$t::Resend::CorsLocation
        resend_confirmation;
        resend_confirmation_limit zone=browser_client;
    }
    location = /metrics {
        resend_confirmation_metrics;
    }
_EOC_

# What the web app does: POST the address as JSON to the API and read the
# answer's JSON (and Retry-After); a refused request is a rejected fetch.
our $Page = <<'_EOC_';
>>> app.html
<!doctype html>
<meta charset="utf-8">
<title>Resend the confirmation</title>
<script>
async function resendConfirmation(api, email) {
  try {
    const response = await fetch(api + "/accounts/resend-confirmation", {
      method: "POST",
      headers: {"Content-Type": "application/json"},
      body: JSON.stringify({email: email})
    });
    return {status: response.status, retryAfter: response.headers.get("Retry-After"),
            json: await response.json()};
  } catch (e) {
    return {error: e.name, message: e.message};
  }
}
</script>
_EOC_

# The page at `origin` calls the API with `email`: what its script got.
sub from_page {
    my ($origin, $email) = @_;
    t::Browser::visit("$origin/app.html");
    return t::Browser::run_async(
        'const done = arguments[arguments.length - 1];'
        . 'resendConfirmation(arguments[0], arguments[1]).then(done);', $Api, $email);
}

# A client zone that refuses the second request of a minute: the page's
# 429. Its preflight must not count, or the first POST would be refused.
resend_defaults(
    http_config => "$t::Resend::Redis
    resend_confirmation_limit_zone \$binary_remote_addr zone=browser_client:1m rate=1r/m;
" . t::Resend::cors_http_config('http://127.0.0.2:$TEST_NGINX_SERVER_PORT'),
    user_files => $Page,
);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the page of the allowed origin reads the JSON of a 200, then of a 429 with its Retry-After
--- config eval: $::Config
--- init
t::Resend::redis('FLUSHALL');
my $first = main::from_page($::App, 'browser@example.com');
Test::More::is_deeply($first, { status => 200, retryAfter => undef,
                                json => JSON::PP::decode_json($t::Resend::Accepted) },
                      'the page read the 200') or Test::More::diag(Test::More::explain($first));
my $second = main::from_page($::App, 'browser2@example.com');
Test::More::is_deeply($second, { status => 429, retryAfter => $second->{retryAfter},
                                 json => { error => { code => 'rate_limited',
                                                      message => $second->{json}{error}{message} } } },
                      'the page read the 429') or Test::More::diag(Test::More::explain($second));
Test::More::like($second->{retryAfter} // '', qr/^[1-9][0-9]*$/, 'the page read Retry-After');
--- request
GET /metrics
--- response_body_like
(?m)^resend_confirmation_requests_total\{location="/accounts/resend-confirmation",outcome="accepted"\} 1$
(?s:.*)^resend_confirmation_requests_total\{location="/accounts/resend-confirmation",outcome="client_limited"\} 1$
--- access_log
"OPTIONS /accounts/resend-confirmation HTTP/1.1" 204
"POST /accounts/resend-confirmation HTTP/1.1" 200
"POST /accounts/resend-confirmation HTTP/1.1" 429
--- stream_len: 1



=== TEST 2: the same page from another origin: the browser refuses (fetch rejects with a TypeError), nothing is recorded
--- config eval: $::Config
--- init
t::Resend::redis('FLUSHALL');
my $got = main::from_page($::Other, 'refused@example.com');
Test::More::is($got->{error}, 'TypeError', 'fetch rejected with a TypeError')
    or Test::More::diag(Test::More::explain($got));
--- request
GET /metrics
--- response_body_like
(?m)^resend_confirmation_requests_total\{location="/accounts/resend-confirmation",outcome="accepted"\} 0$
--- access_log
"OPTIONS /accounts/resend-confirmation HTTP/1.1" 204
--- no_access_log
"POST /accounts/resend-confirmation
--- stream_len: 0
