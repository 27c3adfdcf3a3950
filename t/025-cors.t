# CORS with nginx's own directives (map, add_header ... always, if), as the
# README and nginx.conf.example show it: the preflight answers 204 and is
# counted by no limit and no metric; every answer of the module carries
# Access-Control-Allow-Origin for the allowed origin and Vary: Origin, and
# none for another origin. (t/029-cors-browser.t: the same in Chromium.)
use Test::Nginx::Socket 'no_plan';
use t::Resend;

our $Origin = 'https://app.quiva.ai';

our $HttpConfig = "$t::Resend::Redis
    resend_confirmation_limit_zone \$binary_remote_addr zone=cors_client:1m rate=1r/m;
" . t::Resend::cors_http_config($Origin);

our $Config = <<"_EOC_";
    location = /r {
$t::Resend::CorsLocation
        resend_confirmation;
        resend_confirmation_max_body_size 64;
    }
    location = /small {
$t::Resend::CorsLocation
        resend_confirmation;
        client_max_body_size 16;
    }
    location = /limited {
$t::Resend::CorsLocation
        resend_confirmation;
        resend_confirmation_limit zone=cors_client;
    }
    location = /down {
$t::Resend::CorsLocation
        resend_confirmation;
        resend_confirmation_redis 127.0.0.1:1 connect_timeout=200ms;
    }
    location = /metrics {
        resend_confirmation_metrics;
    }
_EOC_

# One request of each answer the module gives, and its status.
our @Answers = (
    ["POST /r\n" . '{"email":"user@example.com"}', 200],
    ["POST /r\n{oops", 400],                                      # invalid_json
    ["POST /r\n[1]", 400],                                        # invalid_request
    ["POST /r\n" . '{"email":"not an address"}', 400],            # invalid_email
    ["GET /r", 405],
    ["OPTIONS /r", 405],                                          # not a preflight
    ["POST /r\n" . '{"email":"user@example.com"}', 415, 'text/plain'],
    ["POST /r\n" . '{"email":"' . ('a' x 80) . '@example.com"}', 413],  # the module's limit
    ["POST /small\n" . '{"email":"user@example.com"}', 413],     # nginx's client_max_body_size
    ["POST /limited\n" . '{"email":"user@example.com"}', 200],
    ["POST /limited\n" . '{"email":"user@example.com"}', 429],
    ["POST /down\n" . '{"email":"user@example.com"}', 503],
);

sub requests { [map { $_->[0] } @Answers] }
sub codes { [map { $_->[1] } @Answers] }
sub headers {
    my ($origin) = @_;
    [map { ($origin ? "Origin: $origin\n" : '') . 'Content-Type: ' . ($_->[2] // 'application/json') }
     @Answers]
}
sub each_answer { my ($headers) = @_; [map { $headers } @Answers] }

our $Allowed = "Access-Control-Allow-Origin: $Origin
Access-Control-Expose-Headers: Retry-After
Vary: Origin
!Access-Control-Allow-Methods
!Access-Control-Max-Age";

our $Preflight = "OPTIONS /r\n";
our $PreflightHeaders = "Origin: $Origin
Access-Control-Request-Method: POST
Access-Control-Request-Headers: content-type";

# Blocks without a config keep the previous block's nginx (TEST 4).
resend_defaults(http_config => $HttpConfig);

no_shuffle();
run_tests();

__DATA__

=== TEST 1: the preflight of the allowed origin: 204 with the method, the header and how long to keep it
--- config eval: $::Config
--- request eval: $::Preflight
--- more_headers eval: $::PreflightHeaders
--- error_code: 204
--- response_headers eval
"Access-Control-Allow-Origin: $::Origin
Access-Control-Allow-Methods: POST
Access-Control-Allow-Headers: Content-Type
Access-Control-Max-Age: 86400
Vary: Origin
!Allow
!Retry-After"
--- response_body:



=== TEST 2: the preflight of another origin: 204 without Access-Control-Allow-Origin (the browser refuses)
--- config eval: $::Config
--- request eval: $::Preflight
--- more_headers eval
$::PreflightHeaders =~ s/\Q$::Origin\E/https:\/\/evil.example/r
--- error_code: 204
--- response_headers
!Access-Control-Allow-Origin
Vary: Origin



=== TEST 3: preflights are counted by no limit: three of them, then the POST a 1r/m zone lets through
--- config eval: $::Config
--- request eval
[("OPTIONS /limited\n") x 3, "POST /limited\n" . '{"email":"user@example.com"}']
--- more_headers eval
[($::PreflightHeaders) x 3, "Origin: $::Origin\nContent-Type: application/json"]
--- error_code eval
[204, 204, 204, 200]
--- stream_len: 1



=== TEST 4: ... nor by the metrics: the POST alone, nothing refused
--- init
my $m = t::Resend::metrics();
my @counted = grep { /^resend_confirmation_requests_total\{/ && $m->{$_} != 0 } keys %$m;
die "counted: @counted\n"
    unless "@counted" eq 'resend_confirmation_requests_total{location="/limited",outcome="accepted"}'
           && $m->{$counted[0]} == 1;
die "a preflight was counted by the zone\n"
    unless $m->{'resend_confirmation_zone_refused_total{zone="cors_client"}'} == 0
           && $m->{'resend_confirmation_zone_keys{zone="cors_client"}'} == 1;
--- request
GET /metrics
--- error_code: 200



=== TEST 5: every answer of the module carries the allowed origin and Vary: Origin
--- config eval: $::Config
--- request eval: main::requests()
--- more_headers eval: main::headers($::Origin)
--- error_code eval: main::codes()
--- response_headers eval: main::each_answer($::Allowed)



=== TEST 6: ... and for another origin, no Access-Control-Allow-Origin (Vary: Origin still: the answer depends on it)
--- config eval: $::Config
--- request eval: main::requests()
--- more_headers eval: main::headers('https://evil.example')
--- error_code eval: main::codes()
--- response_headers eval
main::each_answer("!Access-Control-Allow-Origin\nVary: Origin")



=== TEST 7: ... and none without an Origin (not a browser's cross-origin request)
--- config eval: $::Config
--- request eval: main::requests()
--- more_headers eval: main::headers(undef)
--- error_code eval: main::codes()
--- response_headers eval
main::each_answer("!Access-Control-Allow-Origin\nVary: Origin")



=== TEST 8: an origin that only starts like the allowed one is another origin
--- config eval: $::Config
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- more_headers eval
"Origin: $::Origin.evil.example\nContent-Type: application/json"
--- error_code: 200
--- response_headers
!Access-Control-Allow-Origin



=== TEST 9: nginx.conf.example has these very lines (what the README shows is what is tested)
--- config eval: $::Config
--- init
my $example = do { local (@ARGV, $/) = ('nginx.conf.example'); <> };
$example =~ s/[ \t]+/ /g;
for my $line (split /\n/, t::Resend::cors_http_config($::Origin) . $t::Resend::CorsLocation) {
    (my $want = $line) =~ s/[ \t]+/ /g;
    next if $want =~ /^ ?$/;
    $example =~ /^\Q$want\E$/m or die "nginx.conf.example lacks: $line\n";
}
--- request eval: $::Preflight
--- more_headers eval: $::PreflightHeaders
--- error_code: 204
