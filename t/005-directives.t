# Directive syntax: nginx refuses bad configurations at start (and `nginx -t`)
# with a message naming the problem and the file:line; values inherit.
use Test::Nginx::Socket 'no_plan';
use t::Resend;

# Not [emerg]: the blocks that must die log it on purpose.
resend_defaults(no_error_log => "[alert]\n[crit]");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: a body limit of 0 is refused, naming the file and line
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_max_body_size 0;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation_max_body_size" must be between 1 and 1048576 bytes in \S+nginx\.conf:\d+/



=== TEST 2: a body limit over 1m is refused
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_max_body_size 2m;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation_max_body_size" must be between 1 and 1048576 bytes/



=== TEST 3: a body limit that is not a size is refused
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_max_body_size lots;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation_max_body_size" directive invalid value in \S+nginx\.conf:\d+/



=== TEST 4: resend_confirmation takes no arguments
--- config
    location = /r {
        resend_confirmation on;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid number of arguments in "resend_confirmation" directive in \S+nginx\.conf:\d+/



=== TEST 5: resend_confirmation given twice
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation" directive is duplicate in \S+nginx\.conf:\d+/



=== TEST 6: resend_confirmation belongs in a location
--- config
    resend_confirmation;
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation" directive is not allowed here in \S+nginx\.conf:\d+/



=== TEST 7: the body limit is inherited from the server level
--- config
    resend_confirmation_max_body_size 40;
    location = /r {
        resend_confirmation;
    }
--- request eval
"POST /r\n" . '{"email":"user@example.com","pad":"xxxxxxxxxxxxxxxx"}'
--- more_headers
Content-Type: application/json
--- error_code: 413
--- response_body_like: "code":"payload_too_large"



=== TEST 8: a location overrides the inherited limit
--- config
    resend_confirmation_max_body_size 40;
    location = /r {
        resend_confirmation;
        resend_confirmation_max_body_size 100;
    }
--- request eval
"POST /r\n" . '{"email":"user@example.com","pad":"xxxxxxxxxxxxxxxx"}'
--- more_headers
Content-Type: application/json
--- error_code: 200



=== TEST 9: resend_confirmation is not inherited by nested locations
--- config
    location /r {
        resend_confirmation;
        location /r/static {
            return 204;
        }
    }
--- request
GET /r/static
--- error_code: 204
--- response_body



=== TEST 10: resend_confirmation without a Redis is refused, naming where
--- http_config
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"resend_confirmation" needs a Redis to record requests in: add "resend_confirmation_redis" in this location or above it in \S+nginx\.conf:\d+/



=== TEST 11: a bad redis address is refused
--- http_config
    resend_confirmation_redis 127.0.0.1:notaport;
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid redis address "127\.0\.0\.1:notaport": invalid port in \S+nginx\.conf:\d+/



=== TEST 12: an unknown redis parameter is refused
--- http_config
    resend_confirmation_redis 127.0.0.1 dbase=1;
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "dbase=1" in \S+nginx\.conf:\d+/



=== TEST 13: a user without a password is refused
--- http_config
    resend_confirmation_redis 127.0.0.1 user=mailer;
--- config
    location = /r {
        resend_confirmation;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*"user=" needs "password=" in \S+nginx\.conf:\d+/



=== TEST 14: the fixed record fields cannot be redefined
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_field email $http_x_email;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*field "email" is always recorded by the module in \S+nginx\.conf:\d+/



=== TEST 15: an unknown failure policy is refused
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_redis_failure maybe;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid value "maybe" in \S+nginx\.conf:\d+/



=== TEST 16: a bad maxlen is refused
--- config
    location = /r {
        resend_confirmation;
        resend_confirmation_stream s maxlen=0;
    }
--- must_die
--- error_log eval
qr/\[emerg\] .*invalid parameter "maxlen=0" in \S+nginx\.conf:\d+/
