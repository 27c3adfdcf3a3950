# The email policy end to end (its boundaries are unit-tested in t/unit).
use Test::Nginx::Socket 'no_plan';
use t::Resend;


sub post_email { "POST /r\n" . '{"email":"' . shift() . '"}' }
sub local64 { 'a' x 64 }
# Three labels, two of the maximum 63 characters: 128 + $last octets.
sub domain_with_last_label { CORE::join '.', 'b' x 63, 'c' x 63, 'd' x shift() }

resend_defaults(config => $Endpoint, more_headers => "Content-Type: application/json");

no_shuffle();
run_tests();

__DATA__

=== TEST 1: every atext special in the local part
--- request eval
main::post_email(q{!#$%&'*+-/=?^_`{|}~.x@example.com})
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 2: 64-octet local part
--- request eval
main::post_email(main::local64() . '@example.com')
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 3: 65-octet local part
--- request eval
main::post_email(main::local64() . 'a@example.com')
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 4: 254-octet address (64 + 1 + 189)
--- request eval
main::post_email(main::local64() . '@' . main::domain_with_last_label(61))
--- error_code: 200
--- response_body eval
$::Accepted



=== TEST 5: 255-octet address, every part otherwise valid
--- request eval
main::post_email(main::local64() . '@' . main::domain_with_last_label(62))
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 6: quoted local part
--- request eval
main::post_email('\"john doe\"@example.com')
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 7: address literal
--- request eval
main::post_email('user@[192.0.2.1]')
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 8: leading whitespace is not trimmed
--- request eval
main::post_email(' user@example.com')
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 9: non-ASCII domain
--- request eval
main::post_email("user\@b\xc3\xbccher.example")
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 10: single-label domain
--- request eval
main::post_email('root@localhost')
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 11: trailing dot
--- request eval
main::post_email('user@example.com.')
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 12: numeric last label
--- request eval
main::post_email('user@192.0.2.1')
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 13: comment
--- request eval
main::post_email('user(comment)@example.com')
--- error_code: 400
--- response_body eval
$::InvalidEmail



=== TEST 14: doubled dot in the local part
--- request eval
main::post_email('first..last@example.com')
--- error_code: 400
--- response_body eval
$::InvalidEmail
