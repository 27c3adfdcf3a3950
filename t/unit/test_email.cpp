// The email policy (the README's "Email policy"):
// email_is_valid at every boundary and for every rejected form the policy
// lists, and email_normalize.
#include <string>
#include <string_view>

#include "core/email.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;

namespace {

void check_email(std::string_view address, bool expected, const char *file, int line) {
    if (resend::email_is_valid(address) != expected) {
        print_error("email_is_valid(\"%s\") (%zu bytes) should be %s\n",
                    unit::printable(address).c_str(), address.size(), expected ? "true" : "false");
        unit::record_failure(file, line);
    }
}

#define check_valid(address) check_email((address), true, __FILE__, __LINE__)
#define check_invalid(address) check_email((address), false, __FILE__, __LINE__)

// The policy's atext specials, written out here independently of the code.
constexpr std::string_view atext_specials = "!#$%&'*+-/=?^_`{|}~";

bool is_alpha(unsigned c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool is_digit(unsigned c) {
    return c >= '0' && c <= '9';
}

// --- ordinary addresses -------------------------------------------------------

void test_ordinary_addresses_are_valid(void **) {
    check_valid("a@example.com");
    check_valid("user@example.com");
    check_valid("first.last@example.com");
    check_valid("a.b.c.d@example.com");
    check_valid("user+tag@example.com");
    check_valid("User.Name@Example.COM");
    check_valid("a@b.co");
    check_valid("a@a.b");  // one-character labels
    check_valid("a@mail.sub.example.co.uk");
    check_valid("a@ex-ample.com");
    check_valid("a@ex--ample.com");
    check_valid("a@xn--mnchen-3ya.de");  // IDN in its ASCII form
    check_valid("0123456789@example.com");
    check_valid("a@123.example.com");  // digits-only label, not the last
    check_valid("a@1.2.3.example");    // several of them
    check_valid("a@example.c0m");      // last label mixes digits and letters
    check_valid("a@example.1com");
    check_valid("a@example.com1");
}

// --- lengths --------------------------------------------------------------------

void test_local_part_of_64_octets_is_valid(void **) {
    std::string local(64, 'a');
    check_valid(local + "@example.com");
    // 64 octets with dots in it as well
    std::string dotted;
    while (dotted.size() < 62) dotted += "ab.";
    dotted += std::string(64 - dotted.size(), 'c');
    check_eq(dotted.size(), 64);
    check_valid(dotted + "@example.com");
}

void test_local_part_of_65_octets_is_invalid(void **) {
    std::string local(65, 'a');
    check_invalid(local + "@example.com");
    std::string dotted(65, 'a');
    dotted[10] = '.';
    dotted[40] = '.';
    check_invalid(dotted + "@example.com");
}

void test_label_of_63_octets_is_valid(void **) {
    std::string label(63, 'b');
    check_valid("a@" + label + ".com");    // first label
    check_valid("a@example." + label);     // last label
    check_valid("a@x." + label + ".com");  // middle label
    std::string hyphenated = "b" + std::string(61, '-') + "b";
    check_eq(hyphenated.size(), 63);
    check_valid("a@" + hyphenated + ".com");
}

void test_label_of_64_octets_is_invalid(void **) {
    std::string label(64, 'b');
    check_invalid("a@" + label + ".com");
    check_invalid("a@example." + label);
    check_invalid("a@x." + label + ".com");
}

// 254 octets in all, every part valid on its own: only the total matters.
void test_address_of_254_octets_is_valid(void **) {
    // 64 + 1 + (63 + 1 + 63 + 1 + 61) = 254
    std::string long_local = std::string(64, 'a') + "@" + std::string(63, 'b') + "." +
                             std::string(63, 'c') + "." + std::string(61, 'd');
    check_eq(long_local.size(), 254);
    check_valid(long_local);

    // 9 + 1 + (63 + 1 + 63 + 1 + 63 + 1 + 52) = 254
    std::string long_domain = std::string(9, 'a') + "@" + std::string(63, 'b') + "." +
                              std::string(63, 'c') + "." + std::string(63, 'd') + "." +
                              std::string(52, 'e');
    check_eq(long_domain.size(), 254);
    check_valid(long_domain);
}

void test_address_of_255_octets_is_invalid(void **) {
    // Each part is valid on its own (local 64, labels <= 63); the total is 255.
    std::string long_local = std::string(64, 'a') + "@" + std::string(63, 'b') + "." +
                             std::string(63, 'c') + "." + std::string(62, 'd');
    check_eq(long_local.size(), 255);
    check_invalid(long_local);

    std::string long_domain = std::string(10, 'a') + "@" + std::string(63, 'b') + "." +
                              std::string(63, 'c') + "." + std::string(63, 'd') + "." +
                              std::string(52, 'e');
    check_eq(long_domain.size(), 255);
    check_invalid(long_domain);

    // and far longer
    check_invalid(std::string(10, 'a') + "@" + std::string(1000, 'b') + ".com");
    std::string many_labels = "a@";
    for (int i = 0; i < 200; ++i) many_labels += "b.";
    many_labels += "com";
    check_invalid(many_labels);
}

// --- local part -------------------------------------------------------------------

void test_every_atext_special_is_accepted_in_the_local_part(void **) {
    for (char c : atext_specials) {
        std::string alone(1, c);
        check_valid(alone + "@example.com");
        check_valid("a" + alone + "b@example.com");
        check_valid(alone + "b@example.com");
        check_valid("a" + alone + "@example.com");
        check_valid("a." + alone + ".b@example.com");
        check_valid(alone + alone + "@example.com");
    }
    check_valid(std::string(atext_specials) + "@example.com");
}

// Every byte value in the middle of the local part: valid exactly when the
// policy's dot-atom allows it (letters, digits, atext specials, a single dot).
void test_every_byte_in_the_local_part(void **) {
    for (unsigned b = 0; b < 256; ++b) {
        std::string address = "a";
        address += static_cast<char>(b);
        address += "a@example.com";
        bool allowed = is_alpha(b) || is_digit(b) || b == '.' ||
                       atext_specials.find(static_cast<char>(b)) != std::string_view::npos;
        check_email(address, allowed, __FILE__, __LINE__);
    }
}

void test_dots_in_the_local_part(void **) {
    check_valid("a.b@example.com");
    check_invalid(".a@example.com");    // first
    check_invalid("a.@example.com");    // last
    check_invalid("a..b@example.com");  // doubled
    check_invalid("a...b@example.com");
    check_invalid(".@example.com");
    check_invalid("..@example.com");
    check_invalid(".a.b@example.com");
    check_invalid("a.b.@example.com");
}

void test_empty_parts_and_at_signs(void **) {
    check_invalid("");
    check_invalid("@");
    check_invalid("@example.com");  // empty local part
    check_invalid("a@");            // empty domain
    check_invalid("aexample.com");  // missing @
    check_invalid("a");
    check_invalid("a@b@example.com");  // two @
    check_invalid("a@@example.com");
    check_invalid("a@example.com@");
    check_invalid("@a@example.com");
    check_invalid("a@example.com@example.com");
}

void test_quoted_local_parts_are_rejected(void **) {
    check_invalid("\"a b\"@example.com");
    check_invalid("\"ab\"@example.com");
    check_invalid("\"a@b\"@example.com");
    check_invalid("\"\"@example.com");
    check_invalid("a.\"b\".c@example.com");
    check_invalid("\"a\\\"b\"@example.com");
}

void test_address_literals_are_rejected(void **) {
    check_invalid("user@[1.2.3.4]");
    check_invalid("user@[IPv6:::1]");
    check_invalid("user@[IPv6:2001:db8::1]");
    check_invalid("user@[example.com]");
    check_invalid("user@1.2.3.4");  // an IPv4 address without brackets
}

void test_comments_are_rejected(void **) {
    check_invalid("user(comment)@example.com");
    check_invalid("(comment)user@example.com");
    check_invalid("user@(c)example.com");
    check_invalid("user@example.com(c)");
    check_invalid("user@example(c).com");
}

// --- whitespace, control characters, non-ASCII: nothing is trimmed -----------

void test_whitespace_anywhere_is_rejected(void **) {
    check_invalid(" a@example.com");
    check_invalid("a@example.com ");
    check_invalid(" a@example.com ");
    check_invalid("a @example.com");
    check_invalid("a@ example.com");
    check_invalid("a b@example.com");
    check_invalid("a@exa mple.com");
    check_invalid("\ta@example.com");
    check_invalid("a@example.com\t");
    check_invalid("a\t@example.com");
    check_invalid("a@example.com\r\n");
    check_invalid("a@example.com\n");
    check_invalid("a@example.com\r");
    check_invalid("\r\na@example.com");
    check_invalid("a\r@example.com");
    check_invalid("a@exa\nmple.com");
    check_invalid("a@example.com\v");
    check_invalid("a@example.com\f");
}

void test_control_characters_anywhere_are_rejected(void **) {
    // NUL: the string_view carries the explicit length past it.
    check_invalid("a\0b@example.com"sv);
    check_invalid("\0a@example.com"sv);
    check_invalid("a@exa\0mple.com"sv);
    check_invalid("a@example.com\0"sv);
    check_invalid("a@example\0.com"sv);
    check_invalid("a\0@example.com"sv);
    check_invalid("a@\0example.com"sv);
    // DEL (octal escapes stop after three digits, so the next letter stays a letter)
    check_invalid("a\177b@example.com");
    check_invalid("a@exa\177mple.com");
    check_invalid("a@example.com\x7f");
    // other C0 controls
    check_invalid("a\001b@example.com");
    check_invalid("a\037b@example.com");
    check_invalid("a@example.co\033m");
}

void test_non_ascii_is_rejected(void **) {
    check_invalid("\303\274ser@example.com");  // "üser", UTF-8
    check_invalid("us\303\274r@example.com");
    check_invalid("user@m\303\274nchen.de");  // "münchen"
    check_invalid("user@example.\xc3\xbc");
    check_invalid("\xe7\x94\xa8\xe6\x88\xb7@example.com");  // CJK
    check_invalid("a@example.com\xc2\xa0");                 // NBSP
    check_invalid("a\200b@example.com");                    // stray bytes
    check_invalid("a@exa\377mple.com");
}

// --- domain -------------------------------------------------------------------

// Every byte value in the middle of a label: valid exactly for letters,
// digits, hyphen, and the dot (which splits the label in two valid ones).
void test_every_byte_in_the_domain(void **) {
    for (unsigned b = 0; b < 256; ++b) {
        std::string address = "a@ex";
        address += static_cast<char>(b);
        address += "ample.com";
        bool allowed = is_alpha(b) || is_digit(b) || b == '-' || b == '.';
        check_email(address, allowed, __FILE__, __LINE__);
    }
}

void test_trailing_and_misplaced_dots_in_the_domain(void **) {
    check_invalid("a@example.com.");
    check_invalid("a@example.co.uk.");
    check_invalid("a@.example.com");
    check_invalid("a@example..com");
    check_invalid("a@.");
    check_invalid("a@..");
    check_invalid("a@example.");
    check_invalid("a@.com");
}

void test_single_label_domains_are_rejected(void **) {
    check_invalid("a@localhost");
    check_invalid("a@com");
    check_invalid("a@b");
    check_invalid("a@localhost.");
}

void test_hyphens_at_label_ends_are_rejected(void **) {
    check_invalid("a@-example.com");
    check_invalid("a@example-.com");
    check_invalid("a@example.-com");
    check_invalid("a@example.com-");
    check_invalid("a@sub.-example.com");
    check_invalid("a@sub-.example.com");
    check_invalid("a@-.com");
    check_invalid("a@example.-");
}

void test_underscore_in_a_label_is_rejected(void **) {
    check_invalid("a@ex_ample.com");
    check_invalid("a@_dmarc.example.com");
    check_invalid("a@example.co_m");
    // while it is fine in the local part
    check_valid("a_b@example.com");
}

void test_all_digit_last_label_is_rejected(void **) {
    check_invalid("a@1.2.3.4");
    check_invalid("a@example.123");
    check_invalid("a@example.0");
    check_invalid("a@123.456");
    // mixing in letters makes it a name again
    check_valid("a@example.c0m");
    check_valid("a@1.2.3.4a");
    check_valid("a@123.example.com");
}

// --- email_normalize --------------------------------------------------------------

std::string normalized(std::string_view address) {
    // One sentinel byte past the end: normalize writes exactly size() bytes.
    std::string out(address.size() + 1, '#');
    resend::email_normalize(address, out.data());
    if (out.back() != '#') {
        print_error("email_normalize wrote past the end for \"%s\"\n",
                    unit::printable(address).c_str());
        unit::record_failure(__FILE__, __LINE__);
    }
    out.pop_back();
    return out;
}

void test_normalize_lowercases_ascii_letters(void **) {
    check_bytes_eq(normalized("User.Name+Tag@Example.COM"), "user.name+tag@example.com");
    check_bytes_eq(normalized("ABCDEFGHIJKLMNOPQRSTUVWXYZ@EXAMPLE.COM"),
                   "abcdefghijklmnopqrstuvwxyz@example.com");
    check_bytes_eq(normalized("already@lower.case"), "already@lower.case");
    check_bytes_eq(normalized(""), "");
}

void test_normalize_keeps_everything_else_byte_for_byte(void **) {
    std::string specials = "0123456789" + std::string(atext_specials) + ".@-";
    check_bytes_eq(normalized(specials), specials);
    // the characters next to the letter ranges
    check_bytes_eq(normalized("@[\\]^_`{|}~"), "@[\\]^_`{|}~");
    // Non-ASCII is not case-folded ("Ü" stays "Ü").
    check_bytes_eq(normalized("\xc3\x9c@X.DE"), "\xc3\x9c@x.de");
    check_bytes_eq(normalized("A\0B"sv), "a\0b"sv);
}

// All 256 byte values through normalize: only 'A'..'Z' change, each to its
// lowercase letter.
void test_normalize_every_byte(void **) {
    std::string input;
    std::string expected;
    for (unsigned b = 0; b < 256; ++b) {
        input += static_cast<char>(b);
        expected += static_cast<char>(b >= 'A' && b <= 'Z' ? b + ('a' - 'A') : b);
    }
    check_bytes_eq(normalized(input), expected);
}

void test_normalized_valid_address_stays_valid(void **) {
    std::string address = "First.Last+Tag@Mail.Example.COM";
    check_valid(address);
    std::string lower = normalized(address);
    check_valid(lower);
    check_bytes_eq(lower, "first.last+tag@mail.example.com");
    // and normalize is idempotent
    check_bytes_eq(normalized(lower), lower);
}

std::string mailbox(std::string_view address) {
    std::string out(address.size(), '?');
    out.resize(resend::email_mailbox(address, out.data()));
    return out;
}

void test_mailbox_lowercases_and_drops_the_tag(void **) {
    check_bytes_eq(mailbox("Victim@Example.COM"), "victim@example.com");
    check_bytes_eq(mailbox("victim+1@example.com"), "victim@example.com");
    check_bytes_eq(mailbox("Victim+Tag+More@example.com"), "victim@example.com");
    check_bytes_eq(mailbox("victim+@example.com"), "victim@example.com");
    // Dots stay outside gmail: first.last and firstlast are two mailboxes.
    check_bytes_eq(mailbox("First.Last+x@example.com"), "first.last@example.com");
    // A local part that starts with '+' is kept whole (as the README says):
    // nothing would be left of it, and no later '+' is taken for its tag.
    check_bytes_eq(mailbox("+tag@example.com"), "+tag@example.com");
    check_bytes_eq(mailbox("+a+b@example.com"), "+a+b@example.com");
    check_bytes_eq(mailbox("+A+B@Example.com"), "+a+b@example.com");
    check_bytes_eq(mailbox("++@example.com"), "++@example.com");
    check_bytes_eq(mailbox("+a.b+c@gmail.com"), "+ab+c@gmail.com");
    // Any other '+' starts the tag, the first one.
    check_bytes_eq(mailbox("a++b@example.com"), "a@example.com");
    // The tag ends at the '@': a '+' in the domain (not valid) is left alone.
    check_bytes_eq(mailbox("a@b+c.example"), "a@b+c.example");
}

void test_mailbox_of_gmail_drops_dots_and_names_gmail(void **) {
    check_bytes_eq(mailbox("V.i.c.t.i.m@gmail.com"), "victim@gmail.com");
    check_bytes_eq(mailbox("v.ictim+news@GMail.Com"), "victim@gmail.com");
    check_bytes_eq(mailbox("Vic.Tim@googlemail.com"), "victim@gmail.com");
    check_bytes_eq(mailbox("victim@GOOGLEMAIL.COM"), "victim@gmail.com");
    // Other domains of Google's or look-alikes are not gmail.
    check_bytes_eq(mailbox("v.ictim@gmail.co"), "v.ictim@gmail.co");
    check_bytes_eq(mailbox("v.ictim@mail.gmail.com"), "v.ictim@mail.gmail.com");
    check_bytes_eq(mailbox("v.ictim@xgmail.com"), "v.ictim@xgmail.com");
}

void test_mailbox_is_idempotent_and_valid(void **) {
    for (std::string_view address :
         {"A.B+c@GoogleMail.com"sv, "x+y@example.org"sv, "+z@example.org"sv, "plain@example.org"sv}) {
        std::string once = mailbox(address);
        check_valid(once);
        check_bytes_eq(mailbox(once), once);
        check(once.size() <= address.size());
    }
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_ordinary_addresses_are_valid),
        guarded_test(test_mailbox_lowercases_and_drops_the_tag),
        guarded_test(test_mailbox_of_gmail_drops_dots_and_names_gmail),
        guarded_test(test_mailbox_is_idempotent_and_valid),
        guarded_test(test_local_part_of_64_octets_is_valid),
        guarded_test(test_local_part_of_65_octets_is_invalid),
        guarded_test(test_label_of_63_octets_is_valid),
        guarded_test(test_label_of_64_octets_is_invalid),
        guarded_test(test_address_of_254_octets_is_valid),
        guarded_test(test_address_of_255_octets_is_invalid),
        guarded_test(test_every_atext_special_is_accepted_in_the_local_part),
        guarded_test(test_every_byte_in_the_local_part),
        guarded_test(test_dots_in_the_local_part),
        guarded_test(test_empty_parts_and_at_signs),
        guarded_test(test_quoted_local_parts_are_rejected),
        guarded_test(test_address_literals_are_rejected),
        guarded_test(test_comments_are_rejected),
        guarded_test(test_whitespace_anywhere_is_rejected),
        guarded_test(test_control_characters_anywhere_are_rejected),
        guarded_test(test_non_ascii_is_rejected),
        guarded_test(test_every_byte_in_the_domain),
        guarded_test(test_trailing_and_misplaced_dots_in_the_domain),
        guarded_test(test_single_label_domains_are_rejected),
        guarded_test(test_hyphens_at_label_ends_are_rejected),
        guarded_test(test_underscore_in_a_label_is_rejected),
        guarded_test(test_all_digit_last_label_is_rejected),
        guarded_test(test_normalize_lowercases_ascii_letters),
        guarded_test(test_normalize_keeps_everything_else_byte_for_byte),
        guarded_test(test_normalize_every_byte),
        guarded_test(test_normalized_valid_address_stays_valid),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
