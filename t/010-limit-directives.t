# Limit directives: syntax errors name the problem and the file:line;
# invalid requests count against client zones; a secret from a file.
use Test::Nginx::Socket 'no_plan';
use t::Resend;
use POSIX ();

resend_defaults(no_error_log => "[alert]\n[crit]", more_headers => "Content-Type: application/json");

sub zone_config { "$t::Resend::Redis\n" . shift }

# secret_file($name, $mode): creates html/$name with that mode (its
# content comes from the block's user_files, which keep the mode).
sub secret_file {
    my ($name, $mode) = @_;
    my $path = "$ENV{TEST_NGINX_SERVER_ROOT}/html/$name";
    open my $out, '>', $path or die "cannot create $path: $!\n";
    close $out;
    chmod $mode, $path or die "chmod $path: $!\n";
}

no_shuffle();
run_tests();

__DATA__

=== TEST 1: invalid requests count against a client zone
--- http_config eval
main::zone_config('resend_confirmation_limit_zone $binary_remote_addr zone=c:1m rate=1r/m;')
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=c;
    }
--- request eval
["POST /r\nnot json", "POST /r\n" . '{"email":"user@example.com"}']
--- error_code eval
[400, 429]
--- stream_len: 0



=== TEST 2: a secret from a file keys the email zone; a file only its owner can read draws no [warn]
--- post_setup_server_root
main::secret_file('secret.key', 0600);
--- user_files
>>> secret.key
0123456789abcdef0123456789abcdef
--- http_config eval
main::zone_config("resend_confirmation_limit_secret $ENV{TEST_NGINX_SERVER_ROOT}/html/secret.key;\n"
  . 'resend_confirmation_limit_zone $resend_confirmation_email zone=e:1m rate=1r/h;')
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=e silent;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
["POST /r\n" . '{"email":"user@example.com"}', "POST /r\n" . '{"email":"USER@example.com"}']
--- error_code eval
[200, 200]
--- response_headers eval
["X-Outcome: accepted", "X-Outcome: silenced"]
--- stream_len: 1
--- no_error_log
[warn]
[alert]
[crit]



=== TEST 3: a secret shorter than 16 bytes is refused
--- user_files
>>> short.key
tooshort
--- http_config eval
main::zone_config("resend_confirmation_limit_secret $ENV{TEST_NGINX_SERVER_ROOT}/html/short.key;")
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*the secret in "\S+short\.key" is shorter than 16 bytes in \S+nginx\.conf:\d+/



=== TEST 3b: a secret file that is a directory is refused as such (not "shorter than 16 bytes")
--- http_config eval
main::zone_config("resend_confirmation_limit_secret $ENV{TEST_NGINX_SERVER_ROOT}/html;")
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*the secret file "\S+\/html" is a directory in \S+nginx\.conf:\d+/



=== TEST 3c: a secret file that cannot be opened for reading (write-only even for root) is refused, with the reason
--- http_config eval
main::zone_config("resend_confirmation_limit_secret /proc/sys/vm/drop_caches;")
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*cannot open the secret file "\/proc\/sys\/vm\/drop_caches" \(13: Permission denied\) in \S+nginx\.conf:\d+/



=== TEST 3d: a secret file whose read fails is refused, with the reason
--- http_config eval
main::zone_config("resend_confirmation_limit_secret /proc/self/mem;")
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*cannot read the secret file "\/proc\/self\/mem" \(5: Input\/output error\) in \S+nginx\.conf:\d+/



=== TEST 3e: a FIFO named as the secret file is refused at once (nginx -t does not wait for a writer)
--- post_setup_server_root
POSIX::mkfifo("$ENV{TEST_NGINX_SERVER_ROOT}/html/fifo.key", 0600) or die "mkfifo: $!\n";
--- http_config eval
main::zone_config("resend_confirmation_limit_secret $ENV{TEST_NGINX_SERVER_ROOT}/html/fifo.key;")
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*the secret file "\S+fifo\.key" is not a regular file in \S+nginx\.conf:\d+/



=== TEST 3f: a secret file its group or others can read is taken, with a [warn]
--- post_setup_server_root
main::secret_file('shared.key', 0644);
--- user_files
>>> shared.key
0123456789abcdef0123456789abcdef
--- http_config eval
main::zone_config("resend_confirmation_limit_secret $ENV{TEST_NGINX_SERVER_ROOT}/html/shared.key;")
--- config
    location = /r {
        resend_confirmation;
    }
--- request eval
"POST /r\n" . '{"email":"user@example.com"}'
--- error_code: 200
--- error_log eval
qr/\[warn\] .*the secret file "\S+shared\.key" is open to others than its owner \(mode 0644\): make it 0600 or 0400 in \S+nginx\.conf:\d+/



=== TEST 4: a bad rate is refused
--- http_config eval
main::zone_config('resend_confirmation_limit_zone $binary_remote_addr zone=c:1m rate=10r/w;')
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid rate "rate=10r\/w": use Nr\/s, Nr\/m, Nr\/h or Nr\/d in \S+nginx\.conf:\d+/



=== TEST 5: a zone too small is refused
--- http_config eval
main::zone_config('resend_confirmation_limit_zone $binary_remote_addr zone=c:8k rate=1r/s;')
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*zone "c" is too small: at least \d+ bytes in \S+nginx\.conf:\d+/



=== TEST 6: a zone without rate is refused
--- http_config eval
main::zone_config('resend_confirmation_limit_zone $binary_remote_addr zone=c:1m;')
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "resend_confirmation_limit_zone" directive in \S+nginx\.conf:\d+/



=== TEST 7: a limit on an undefined zone is refused
--- http_config eval
main::zone_config('')
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=nowhere;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*zero size shared memory zone "nowhere"/



=== TEST 8: the same zone twice in one place is refused
--- http_config eval
main::zone_config('resend_confirmation_limit_zone $binary_remote_addr zone=c:1m rate=1r/s;')
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=c;
        resend_confirmation_limit zone=c burst=5;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation_limit" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 9: a zone name defined twice is refused
--- http_config eval
main::zone_config("resend_confirmation_limit_zone \$binary_remote_addr zone=c:1m rate=1r/s;\n"
  . "resend_confirmation_limit_zone \$http_x zone=c:1m rate=1r/s;")
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*duplicate zone "c" in \S+nginx\.conf:\d+/



=== TEST 10: limit_zone belongs to the http level
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit_zone $binary_remote_addr zone=c:1m rate=1r/s;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation_limit_zone" directive is not allowed here in \S+nginx\.conf:\d+/



=== TEST 11: a bad burst is refused
--- http_config eval
main::zone_config('resend_confirmation_limit_zone $binary_remote_addr zone=c:1m rate=1r/s;')
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=c burst=lots;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "burst=lots" in \S+nginx\.conf:\d+/



=== TEST 12: a key that reaches the email through map: after_validation checks it after the body
--- http_config eval
main::zone_config(q{
    map $resend_confirmation_email $email_domain { ~@(?<domain>.+)$ $domain; }
    resend_confirmation_limit_zone $email_domain zone=domain:1m rate=1r/h after_validation;
})
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=domain;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- request eval
["POST /r\n" . '{"email":"one@example.com"}', "POST /r\n" . '{"email":"two@example.com"}',
 "POST /r\n" . '{"email":"one@example.org"}']
--- error_code eval
[200, 429, 200]
--- response_headers eval
["X-Outcome: accepted", "X-Outcome: email_limited", "X-Outcome: accepted"]
--- stream_len: 2



=== TEST 13: the same key without after_validation: nginx says the zone cannot work
--- http_config eval
main::zone_config(q{
    map $resend_confirmation_email $email_domain { ~@(?<domain>.+)$ $domain; }
    resend_confirmation_limit_zone $email_domain zone=domain:1m rate=1r/h;
})
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=domain;
    }
--- request eval
"POST /r\n" . '{"email":"one@example.com"}'
--- error_code: 200
--- error_log eval
qr/\[warn\] .*resend_confirmation: the key of zone "domain" reads \$resend_confirmation_email before the body is read; add "after_validation" to its resend_confirmation_limit_zone/



=== TEST 14: a silent client limit does not tell: an invalid body still gets its 400, a valid one the silent 200
--- http_config eval
main::zone_config('resend_confirmation_limit_zone $http_x_client zone=k:1m rate=1r/h;')
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=k silent;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- more_headers
Content-Type: application/json
X-Client: one
--- request eval
["POST /r\n" . '{"email":"a@example.com"}', "POST /r\nnot json", "POST /r\n" . '{"email":"b@example.com"}']
--- error_code eval
[200, 400, 200]
--- response_headers eval
["X-Outcome: accepted", "X-Outcome: invalid_json", "X-Outcome: silenced"]
--- response_body eval
[$::Accepted, $::InvalidJson, $::Accepted]
--- stream_len: 1



=== TEST 15: a variable whose name only begins like the email's is a client key, checked before the body
--- http_config eval
main::zone_config(q{
    map $http_x_tenant $resend_confirmation_email_domain { default $http_x_tenant; }
    resend_confirmation_limit_zone $resend_confirmation_email_domain zone=tenant:1m rate=1r/h;
})
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_limit zone=tenant;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
--- more_headers
Content-Type: application/json
X-Tenant: acme
--- request eval
["POST /r\nnot json", "POST /r\n" . '{"email":"one@example.com"}']
--- error_code eval
[400, 429]
--- response_headers eval
["X-Outcome: invalid_json", "X-Outcome: client_limited"]
--- stream_len: 0
