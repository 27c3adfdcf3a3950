# Shared by the t/*.t files: the contract's fixed bodies, and defaults every
# block gets unless it sets its own. Loaded as `use t::Resend;` (prove -I .),
# after `use Test::Nginx::Socket`, so it works under upstream Test::Nginx too.
package t::Resend;

use strict;
use warnings;
use Exporter 'import';

our @EXPORT = qw($Accepted $TooLarge $InvalidJson $InvalidRequest $InvalidEmail
                 $NotAllowed $UnsupportedMediaType $Endpoint resend_defaults);

our $Accepted = '{"data":{"message":"Please check your inbox. If a root account is associated with this email and remains unconfirmed, a reconfirmation message should have been sent."}}';
our $TooLarge = '{"error":{"code":"payload_too_large","message":"The request body is too large."}}';
our $InvalidJson = '{"error":{"code":"invalid_json","message":"The request body is not valid JSON."}}';
our $InvalidRequest = '{"error":{"code":"invalid_request","message":"The request body must be a JSON object with one string member named email."}}';
our $InvalidEmail = '{"error":{"code":"invalid_email","message":"The email address is not valid."}}';
our $NotAllowed = '{"error":{"code":"method_not_allowed","message":"Only POST is allowed on this endpoint."}}';
our $UnsupportedMediaType = '{"error":{"code":"unsupported_media_type","message":"The request body must be sent as application/json."}}';

# The endpoint at /r, its outcome in a header for the tests to read.
our $Endpoint = <<'_EOC_';
    location = /r {
        resend_confirmation;
        add_header X-Outcome $resend_confirmation_outcome always;
    }
_EOC_

# resend_defaults(section => value, ...): each block gets these sections
# unless it has its own. Every block also checks that nginx logged no
# [alert], [crit] or [emerg] (bad input must never produce them).
sub resend_defaults {
    my %defaults = (no_error_log => "[alert]\n[crit]\n[emerg]", @_);
    main::add_block_preprocessor(sub {
        my $block = shift;
        for my $section (sort keys %defaults) {
            $block->set_value($section, $defaults{$section})
                unless defined $block->$section;
        }
    });
}

1;
