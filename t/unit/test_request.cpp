// Body -> request (the README's contract and "JSON"): strict JSON (RFC 8259, UTF-8
// validated, no trailing bytes, depth-limited) -> invalid_json; not an object,
// `email` missing, not a string or given twice -> invalid_request; `email`
// failing the policy -> invalid_email; otherwise accepted, email as sent.
#include <cstddef>
#include <string>
#include <string_view>

#include "core/outcome.hpp"
#include "core/request.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;
using resend::outcome;

namespace {

constexpr std::size_t max_body = 4096;

struct fixture {
    resend::body_parser parser;
    std::string buffer;  // the body followed by body_padding bytes
};

int setup(void **state) {
    auto *f = new fixture;
    if (!f->parser.reserve(max_body)) {
        delete f;
        return -1;
    }
    *state = f;
    return 0;
}

int teardown(void **state) {
    delete static_cast<fixture *>(*state);
    return 0;
}

// Parses `body` as nginx hands it over: followed by body_padding readable
// bytes (here `pad`), with the unpadded length.
resend::parsed_request parse(void **state, std::string_view body, char pad = '\0') {
    auto *f = static_cast<fixture *>(*state);
    f->buffer.assign(body);
    f->buffer.append(resend::body_padding, pad);
    return f->parser.parse(f->buffer.data(), body.size());
}

const char *name(outcome result) {
    switch (result) {
    case outcome::none: return "none";
    case outcome::accepted: return "accepted";
    case outcome::method_not_allowed: return "method_not_allowed";
    case outcome::unsupported_media_type: return "unsupported_media_type";
    case outcome::payload_too_large: return "payload_too_large";
    case outcome::invalid_json: return "invalid_json";
    case outcome::invalid_request: return "invalid_request";
    case outcome::invalid_email: return "invalid_email";
    case outcome::redis_error: return "redis_error";
    case outcome::lost: return "lost";
    case outcome::client_limited: return "client_limited";
    case outcome::email_limited: return "email_limited";
    case outcome::silenced: return "silenced";
    case outcome::dry_run_limited: return "dry_run_limited";
    case outcome::redis_timeout: return "redis_timeout";
    case outcome::client_closed: return "client_closed";
    case outcome::spooled: return "spooled";
    case outcome::count_: break;
    }
    return "?";
}

resend::parsed_request check_outcome(void **state, std::string_view body, outcome expected,
                                     const char *file, int line) {
    resend::parsed_request got = parse(state, body);
    if (got.result != expected) {
        std::string shown =
            body.size() > 200 ? std::string(body.substr(0, 200)) + "..." : std::string(body);
        print_error("parse(\"%s\") (%zu bytes): %s, expected %s\n", unit::printable(shown).c_str(),
                    body.size(), name(got.result), name(expected));
        unit::record_failure(file, line);
    }
    return got;
}

#define check_parse(body, expected) check_outcome(state, (body), (expected), __FILE__, __LINE__)

// Asserts `body` is accepted and its email equals `email`, byte for byte.
#define check_accepted(body, expected_email) \
    check_bytes_eq(check_parse((body), outcome::accepted).email, (expected_email))

// `{"email":"a@example.com","x":<value>}`: a valid request but for `value`.
std::string with_member(std::string_view value) {
    return "{\"email\":\"a@example.com\",\"x\":" + std::string(value) + "}";
}

// --- accepted -------------------------------------------------------------------------

void test_accepts_an_email_as_sent(void **state) {
    check_accepted("{\"email\":\"user@example.com\"}", "user@example.com");
    // case preserved: the record keeps the address as sent
    check_accepted("{\"email\":\"User.Name+Tag@Example.COM\"}", "User.Name+Tag@Example.COM");
    // JSON whitespace around every token
    check_accepted(" \t\r\n{ \t\r\n\"email\" \t\r\n: \t\r\n\"a@example.com\" \t\r\n} \t\r\n",
                   "a@example.com");
}

void test_decodes_escapes_in_the_email(void **state) {
    check_accepted("{\"email\":\"user\\u0040example.com\"}", "user@example.com");
    check_accepted("{\"email\":\"\\u0055ser@example.com\"}", "User@example.com");
    check_accepted("{\"email\":\"a\\/b@example.com\"}", "a/b@example.com");
    check_accepted("{\"email\":\"a\\u002Eb@example.com\"}", "a.b@example.com");
}

void test_ignores_members_other_than_email(void **state) {
    check_accepted("{\"name\":\"x\",\"email\":\"a@example.com\",\"n\":1}", "a@example.com");
    check_accepted("{\"a\":{\"b\":[1,2,{\"c\":null}]},\"email\":\"a@example.com\"}",
                   "a@example.com");
    check_accepted("{\"email\":\"a@example.com\",\"list\":[true,false,null,-1.5e3,\"s\"]}",
                   "a@example.com");
    check_accepted("{\"email\":\"a@example.com\",\"Email\":1,\"EMAIL\":[],\"emails\":{}}",
                   "a@example.com");
    // an `email` nested in another member is not the request's email
    check_accepted("{\"x\":{\"email\":\"b@example.com\"},\"email\":\"a@example.com\"}",
                   "a@example.com");
    check_accepted("{\"x\":{\"email\":1},\"email\":\"a@example.com\",\"y\":[{\"email\":null}]}",
                   "a@example.com");
    check_accepted(with_member("\"\\ud83d\\ude00 \xc3\xbc \\u0000\""), "a@example.com");
}

void test_numbers_within_the_documented_limits_are_accepted(void **state) {
    check_parse(with_member("0"), outcome::accepted);
    check_parse(with_member("-0"), outcome::accepted);
    check_parse(with_member("18446744073709551615"), outcome::accepted);  // UINT64_MAX
    check_parse(with_member("-9223372036854775808"), outcome::accepted);  // INT64_MIN
    check_parse(with_member("1.7976931348623157e308"), outcome::accepted);
    check_parse(with_member("1e-400"), outcome::accepted);  // underflows to 0, finite
    check_parse(with_member("12.5E+2"), outcome::accepted);
    // Written with a fraction or an exponent, a number only has to be a
    // finite double: the 64-bit bound is for integers.
    check_parse(with_member("123456789012345678901234567890.0"), outcome::accepted);
    check_parse(with_member("1e30"), outcome::accepted);
    check_parse(with_member("18446744073709551616e0"), outcome::accepted);
}

// The padding bytes after the body are never read as part of it.
void test_padding_content_does_not_matter(void **state) {
    const std::string_view bodies[] = {
        "{\"email\":\"a@example.com\"}", "{\"email\":\"a@example.com\"}  ",
        "{\"email\":\"a@example.com\",\"n\":12", "{\"email\":\"a@example.com\",\"s\":\"abc"};
    const outcome expected[] = {outcome::accepted, outcome::accepted, outcome::invalid_json,
                                outcome::invalid_json};
    for (char pad : {'\0', ' ', '}', '"', '1', ',', '\xff'}) {
        for (std::size_t i = 0; i < 4; ++i) {
            resend::parsed_request got = parse(state, bodies[i], pad);
            if (got.result != expected[i]) {
                print_error("padding 0x%02x, body \"%s\": %s, expected %s\n",
                            static_cast<unsigned char>(pad), unit::printable(bodies[i]).c_str(),
                            name(got.result), name(expected[i]));
                unit::record_failure(__FILE__, __LINE__);
            }
        }
    }
}

// --- invalid_json -----------------------------------------------------------------------

void test_empty_and_whitespace_bodies_are_invalid_json(void **state) {
    check_parse("", outcome::invalid_json);
    check_parse(" ", outcome::invalid_json);
    check_parse(" \t\r\n ", outcome::invalid_json);
    check_parse("\n", outcome::invalid_json);
}

void test_trailing_bytes_are_invalid_json(void **state) {
    check_parse("{\"email\":\"a@example.com\"}x", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"}}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"},", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"}\0"sv, outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"} 1", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"}{\"email\":\"a@example.com\"}",
                outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"} {}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"}\n{}", outcome::invalid_json);
    check_parse("{}{}", outcome::invalid_json);
}

void test_truncated_bodies_are_invalid_json(void **state) {
    std::string_view full = "{\"email\":\"a@example.com\",\"a\":[1,{\"b\":true}]}";
    for (std::size_t n = 1; n < full.size(); ++n) {
        check_outcome(state, full.substr(0, n), outcome::invalid_json, __FILE__, __LINE__);
    }
}

void test_malformed_utf8_is_invalid_json(void **state) {
    // invalid continuation byte
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\xc3\x28\"}", outcome::invalid_json);
    // continuation byte without a lead byte
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\x80\"}", outcome::invalid_json);
    // overlong encodings of '/' and of '@'
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\xc0\xaf\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\xe0\x80\xaf\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a\301\200example.com\"}", outcome::invalid_json);
    // a surrogate encoded directly in UTF-8
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\xed\xa0\x80\"}", outcome::invalid_json);
    // beyond U+10FFFF
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\xf4\x90\x80\x80\"}", outcome::invalid_json);
    // truncated sequence, at the end of a string and of the body
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\xc3\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"}\xc3", outcome::invalid_json);
    // bytes that never appear in UTF-8
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\xff\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\xfe\"}", outcome::invalid_json);
    // in a key, and in the email itself
    check_parse("{\"\xc3\x28\":1,\"email\":\"a@example.com\"}", outcome::invalid_json);
    check_parse("{\"email\":\"\xc3\x28@example.com\"}", outcome::invalid_json);
}

void test_lone_surrogate_escapes_are_invalid_json(void **state) {
    check_parse(with_member("\"\\ud800\""), outcome::invalid_json);
    check_parse(with_member("\"\\ud800x\""), outcome::invalid_json);
    check_parse(with_member("\"\\ud800\\u0041\""), outcome::invalid_json);
    check_parse(with_member("\"\\udbff\""), outcome::invalid_json);
    check_parse(with_member("\"\\udc00\""), outcome::invalid_json);
    check_parse("{\"email\":\"a\\ud800@example.com\"}", outcome::invalid_json);
    // a proper pair is fine
    check_parse(with_member("\"\\ud83d\\ude00\""), outcome::accepted);
}

void test_raw_control_bytes_in_strings_are_invalid_json(void **state) {
    check_parse("{\"email\":\"a\0b@example.com\"}"sv, outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\0\"}"sv, outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\x01\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\x1f\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\t\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",\"x\":\"\n\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\\n\"}", outcome::invalid_email);  // escaped: JSON ok
    check_parse("{\"email\":\"a@example.com\n\"}", outcome::invalid_json);
    check_parse("{\"e\x01mail\":1,\"email\":\"a@example.com\"}", outcome::invalid_json);
    // a raw NUL outside a string
    check_parse("{\"email\":\"a@example.com\",\0\"x\":1}"sv, outcome::invalid_json);
}

void test_non_json_syntax_is_invalid_json(void **state) {
    check_parse("{'email':'a@example.com'}", outcome::invalid_json);
    check_parse("{\"email\":'a@example.com'}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",}", outcome::invalid_json);
    check_parse(with_member("[1,2,]"), outcome::invalid_json);
    check_parse(with_member("[,]"), outcome::invalid_json);
    check_parse("{,\"email\":\"a@example.com\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",,\"x\":1}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"/* c */}", outcome::invalid_json);
    check_parse("/* c */{\"email\":\"a@example.com\"}", outcome::invalid_json);
    check_parse("// c\n{\"email\":\"a@example.com\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"} // c", outcome::invalid_json);
    check_parse("# c\n{\"email\":\"a@example.com\"}", outcome::invalid_json);
    check_parse("{email:\"a@example.com\"}", outcome::invalid_json);
    check_parse("{\"email\"=\"a@example.com\"}", outcome::invalid_json);
    check_parse("{\"email\" \"a@example.com\"}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\" \"x\":1}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\"]", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com}", outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\\x\"}", outcome::invalid_json);    // bad escape
    check_parse("{\"email\":\"a@example.com\\u12\"}", outcome::invalid_json);  // short \u
    check_parse("{\"email\":\"a@example.com\\\"}", outcome::invalid_json);
    // values JSON does not have
    check_parse(with_member("NaN"), outcome::invalid_json);
    check_parse(with_member("Infinity"), outcome::invalid_json);
    check_parse(with_member("-Infinity"), outcome::invalid_json);
    check_parse(with_member("undefined"), outcome::invalid_json);
    check_parse(with_member("True"), outcome::invalid_json);
    check_parse(with_member("nul"), outcome::invalid_json);
    check_parse(with_member("01"), outcome::invalid_json);
    check_parse(with_member("+1"), outcome::invalid_json);
    check_parse(with_member("1."), outcome::invalid_json);
    check_parse(with_member(".5"), outcome::invalid_json);
    check_parse(with_member("0x10"), outcome::invalid_json);
    check_parse(with_member("1e"), outcome::invalid_json);
    // whitespace JSON does not have
    check_parse("\v{\"email\":\"a@example.com\"}", outcome::invalid_json);
    check_parse("{\"email\":\f\"a@example.com\"}", outcome::invalid_json);
    check_parse("{\"email\":\xc2\xa0\"a@example.com\"}", outcome::invalid_json);
}

// Numbers must fit a 64-bit integer or a finite double (request.hpp); beyond
// that the body is invalid_json (RFC 8259 section 9 lets a parser set limits).
void test_numbers_beyond_the_documented_limits_are_invalid_json(void **state) {
    check_parse(with_member("1e400"), outcome::invalid_json);
    check_parse(with_member("-1e400"), outcome::invalid_json);
    check_parse(with_member("1.8e308"), outcome::invalid_json);  // > DBL_MAX
    check_parse(with_member("123456789012345678901234567890"), outcome::invalid_json);
    check_parse(with_member("-123456789012345678901234567890"), outcome::invalid_json);
    check_parse(with_member("18446744073709551616"), outcome::invalid_json);  // UINT64_MAX + 1
    check_parse(with_member("-9223372036854775809"), outcome::invalid_json);  // INT64_MIN - 1
    check_parse("{\"email\":\"a@example.com\",\"x\":[1,2,1e999]}", outcome::invalid_json);
}

// Depth: the root object is level 1. `levels` non-empty containers in all.
std::string nested_objects(std::size_t levels) {
    std::string body = "{\"email\":\"a@example.com\",\"n\":";
    for (std::size_t i = 1; i < levels; ++i) body += "{\"n\":";
    body += "1";
    for (std::size_t i = 1; i < levels; ++i) body += "}";
    body += "}";
    return body;
}

std::string nested_arrays(std::size_t levels) {
    std::string body = "{\"email\":\"a@example.com\",\"n\":";
    for (std::size_t i = 1; i < levels; ++i) body += "[";
    body += "1";
    for (std::size_t i = 1; i < levels; ++i) body += "]";
    body += "}";
    return body;
}

void test_nesting_below_the_depth_limit_is_accepted(void **state) {
    for (std::size_t levels = 1; levels < resend::json_max_depth; ++levels) {
        check_outcome(state, nested_objects(levels), outcome::accepted, __FILE__, __LINE__);
        check_outcome(state, nested_arrays(levels), outcome::accepted, __FILE__, __LINE__);
    }
}

// json_max_depth levels, the root object included: "Deeper nesting is
// invalid_json" (request.hpp), so exactly this deep is still valid.
void test_nesting_exactly_at_the_depth_limit_is_accepted(void **state) {
    check_parse(nested_objects(resend::json_max_depth), outcome::accepted);
    check_parse(nested_arrays(resend::json_max_depth), outcome::accepted);
}

void test_nesting_deeper_than_the_limit_is_invalid_json(void **state) {
    check_parse(nested_objects(resend::json_max_depth + 1), outcome::invalid_json);
    check_parse(nested_arrays(resend::json_max_depth + 1), outcome::invalid_json);
    check_parse(nested_objects(resend::json_max_depth + 2), outcome::invalid_json);
    check_parse(nested_arrays(1000), outcome::invalid_json);
    check_parse(nested_objects(300), outcome::invalid_json);
    // deep, and unbalanced as well
    check_parse(std::string(2000, '['), outcome::invalid_json);
    check_parse("{\"email\":\"a@example.com\",\"n\":" + std::string(2000, '[') +
                    std::string(2000, ']') + "}",
                outcome::invalid_json);
}

// --- invalid_request --------------------------------------------------------------------

void test_root_other_than_an_object_is_invalid_request(void **state) {
    check_parse("[]", outcome::invalid_request);
    check_parse("[{\"email\":\"a@example.com\"}]", outcome::invalid_request);
    check_parse("[\"email\",\"a@example.com\"]", outcome::invalid_request);
    check_parse("\"a@example.com\"", outcome::invalid_request);
    check_parse("\"email\"", outcome::invalid_request);
    check_parse("1", outcome::invalid_request);
    check_parse("-1.5", outcome::invalid_request);
    check_parse("null", outcome::invalid_request);
    check_parse("true", outcome::invalid_request);
    check_parse("false", outcome::invalid_request);
    check_parse(" null ", outcome::invalid_request);
}

void test_missing_email_is_invalid_request(void **state) {
    check_parse("{}", outcome::invalid_request);
    check_parse("{ }", outcome::invalid_request);
    check_parse("{\"name\":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\"Email\":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\"EMAIL\":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\"email \":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\" email\":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\"emai\":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\"emails\":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\"email\\u0000\":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\"x\":{\"email\":\"a@example.com\"}}", outcome::invalid_request);
    check_parse("{\"x\":[{\"email\":\"a@example.com\"}]}", outcome::invalid_request);
}

void test_email_not_a_string_is_invalid_request(void **state) {
    check_parse("{\"email\":1}", outcome::invalid_request);
    check_parse("{\"email\":-1.5e3}", outcome::invalid_request);
    check_parse("{\"email\":null}", outcome::invalid_request);
    check_parse("{\"email\":true}", outcome::invalid_request);
    check_parse("{\"email\":false}", outcome::invalid_request);
    check_parse("{\"email\":{}}", outcome::invalid_request);
    check_parse("{\"email\":{\"email\":\"a@example.com\"}}", outcome::invalid_request);
    check_parse("{\"email\":[]}", outcome::invalid_request);
    check_parse("{\"email\":[\"a@example.com\"]}", outcome::invalid_request);
}

void test_email_given_twice_is_invalid_request(void **state) {
    check_parse("{\"email\":\"a@example.com\",\"email\":\"a@example.com\"}",
                outcome::invalid_request);
    check_parse("{\"email\":\"a@example.com\",\"email\":\"b@example.com\"}",
                outcome::invalid_request);
    check_parse("{\"email\":\"a@example.com\",\"x\":1,\"email\":\"b@example.com\"}",
                outcome::invalid_request);
    // whatever the second one is
    check_parse("{\"email\":\"a@example.com\",\"email\":null}", outcome::invalid_request);
    check_parse("{\"email\":null,\"email\":\"a@example.com\"}", outcome::invalid_request);
    check_parse("{\"email\":\"a@example.com\",\"email\":\"\"}", outcome::invalid_request);
    check_parse("{\"email\":\"not an email\",\"email\":\"a@example.com\"}",
                outcome::invalid_request);
    // also when one of them spells the key with escapes
    check_parse("{\"email\":\"a@example.com\",\"em\\u0061il\":\"a@example.com\"}",
                outcome::invalid_request);
    check_parse("{\"\\u0065mail\":\"b@example.com\",\"email\":\"a@example.com\"}",
                outcome::invalid_request);
    check_parse(
        "{\"em\\u0061il\":\"a@example.com\",\"\\u0065\\u006d\\u0061\\u0069\\u006c\":"
        "\"a@example.com\"}",
        outcome::invalid_request);
    // a single escaped spelling is simply the email member
    check_accepted("{\"em\\u0061il\":\"a@example.com\"}", "a@example.com");
    // three times
    check_parse(
        "{\"email\":\"a@example.com\",\"email\":\"a@example.com\",\"email\":"
        "\"a@example.com\"}",
        outcome::invalid_request);
}

// --- invalid_email ----------------------------------------------------------------------

void test_email_failing_the_policy_is_invalid_email(void **state) {
    check_parse("{\"email\":\"\"}", outcome::invalid_email);
    check_parse("{\"email\":\"a\\u0000b@example.com\"}", outcome::invalid_email);
    check_parse("{\"email\":\"a@example.com\\u0000\"}", outcome::invalid_email);
    check_parse("{\"email\":\"\\u0000\"}", outcome::invalid_email);
    check_parse("{\"email\":\"not an email\"}", outcome::invalid_email);
    check_parse("{\"email\":\"a@localhost\"}", outcome::invalid_email);
    check_parse("{\"email\":\"a@example.com.\"}", outcome::invalid_email);
    // nothing is trimmed
    check_parse("{\"email\":\" a@example.com\"}", outcome::invalid_email);
    check_parse("{\"email\":\"a@example.com \"}", outcome::invalid_email);
    check_parse("{\"email\":\"a@example.com\\t\"}", outcome::invalid_email);
    check_parse("{\"email\":\"\\r\\na@example.com\"}", outcome::invalid_email);
    // quoted local part, address literal (escapes decoded first)
    check_parse("{\"email\":\"\\\"a b\\\"@example.com\"}", outcome::invalid_email);
    check_parse("{\"email\":\"user@[1.2.3.4]\"}", outcome::invalid_email);
    // non-ASCII, raw UTF-8 or escaped; DEL is valid JSON but not a valid email
    check_parse("{\"email\":\"\xc3\xbc@example.com\"}", outcome::invalid_email);
    check_parse("{\"email\":\"\\u00fc@example.com\"}", outcome::invalid_email);
    check_parse("{\"email\":\"a\x7f@example.com\"}", outcome::invalid_email);
    check_parse("{\"email\":\"a\\u007f@example.com\"}", outcome::invalid_email);
    // escaped '@' twice
    check_parse("{\"email\":\"a\\u0040b@example.com\"}", outcome::invalid_email);
    // too long: a 65-octet local part
    check_parse("{\"email\":\"" + std::string(65, 'a') + "@example.com\"}", outcome::invalid_email);
}

// --- sizes and reuse --------------------------------------------------------------------

// `{"email":"a@example.com","pad":"xxx…"}` of exactly `size` bytes.
std::string body_of_size(std::size_t size) {
    std::string head = "{\"email\":\"a@example.com\",\"pad\":\"";
    std::string tail = "\"}";
    return head + std::string(size - head.size() - tail.size(), 'x') + tail;
}

void test_body_at_the_reserved_capacity_parses(void **state) {
    std::string body = body_of_size(max_body);
    check_eq(body.size(), max_body);
    check_accepted(body, "a@example.com");
    // and one that is just an email with whitespace up to the capacity
    std::string spaced = "{\"email\":\"b@example.com\"}";
    spaced += std::string(max_body - spaced.size(), ' ');
    check_eq(spaced.size(), max_body);
    check_accepted(spaced, "b@example.com");
    // and still after that, a small one
    check_accepted("{\"email\":\"c@example.com\"}", "c@example.com");
}

void test_small_reservation_at_capacity(void **) {
    resend::body_parser parser;
    check(parser.reserve(64));
    std::string body = body_of_size(64);
    std::string buffer = body + std::string(resend::body_padding, '\0');
    resend::parsed_request got = parser.parse(buffer.data(), body.size());
    check_eq(got.result, outcome::accepted);
    check_bytes_eq(got.email, "a@example.com");
}

// One parser, many requests: nothing from one parse shows in the next.
void test_parser_is_reusable(void **state) {
    for (int round = 0; round < 200; ++round) {
        std::string email = "user" + std::to_string(round) + "@Example.com";
        check_accepted("{\"email\":\"" + email + "\"}", email);
        // an object without email right after one with it
        resend::parsed_request got = check_parse("{\"x\":1}", outcome::invalid_request);
        check(got.email.empty());
        got = check_parse("{\"email\":\"\"}", outcome::invalid_email);
        check(got.email.empty());
        got = check_parse("{\"email\":\"nope\"}", outcome::invalid_email);
        check(got.email.empty());
        got = check_parse("{\"email\":", outcome::invalid_json);
        check(got.email.empty());
        got = check_parse("[\"" + email + "\"]", outcome::invalid_request);
        check(got.email.empty());
        // a different, shorter email after a longer one: no stale tail
        check_accepted("{\"email\":\"a@b.co\"}", "a@b.co");
        // a body at capacity, then a small one again
        if (round % 50 == 0) check_accepted(body_of_size(max_body), "a@example.com");
        // a failure halfway through a string must not leave its bytes behind
        check_parse("{\"x\":\"long string long string\",\"email\":\"a@b.co\",\"y\":\xc3\x28}",
                    outcome::invalid_json);
        check_accepted("{\"email\":\"z@y.xy\"}", "z@y.xy");
    }
}

// Two parsers do not share state.
void test_parsers_are_independent(void **state) {
    resend::body_parser other;
    check(other.reserve(max_body));
    std::string body = "{\"email\":\"other@example.com\"}";
    std::string buffer = body + std::string(resend::body_padding, '\0');
    resend::parsed_request mine =
        check_parse("{\"email\":\"mine@example.com\"}", outcome::accepted);
    resend::parsed_request theirs = other.parse(buffer.data(), body.size());
    check_eq(theirs.result, outcome::accepted);
    check_bytes_eq(theirs.email, "other@example.com");
    check_bytes_eq(mine.email, "mine@example.com");
}

}  // namespace

#define with_parser(f) guarded_test_setup_teardown(f, setup, teardown)

int main(void) {
    const struct CMUnitTest tests[] = {
        with_parser(test_accepts_an_email_as_sent),
        with_parser(test_decodes_escapes_in_the_email),
        with_parser(test_ignores_members_other_than_email),
        with_parser(test_numbers_within_the_documented_limits_are_accepted),
        with_parser(test_padding_content_does_not_matter),
        with_parser(test_empty_and_whitespace_bodies_are_invalid_json),
        with_parser(test_trailing_bytes_are_invalid_json),
        with_parser(test_truncated_bodies_are_invalid_json),
        with_parser(test_malformed_utf8_is_invalid_json),
        with_parser(test_lone_surrogate_escapes_are_invalid_json),
        with_parser(test_raw_control_bytes_in_strings_are_invalid_json),
        with_parser(test_non_json_syntax_is_invalid_json),
        with_parser(test_numbers_beyond_the_documented_limits_are_invalid_json),
        with_parser(test_nesting_below_the_depth_limit_is_accepted),
        with_parser(test_nesting_exactly_at_the_depth_limit_is_accepted),
        with_parser(test_nesting_deeper_than_the_limit_is_invalid_json),
        with_parser(test_root_other_than_an_object_is_invalid_request),
        with_parser(test_missing_email_is_invalid_request),
        with_parser(test_email_not_a_string_is_invalid_request),
        with_parser(test_email_given_twice_is_invalid_request),
        with_parser(test_email_failing_the_policy_is_invalid_email),
        with_parser(test_body_at_the_reserved_capacity_parses),
        guarded_test(test_small_reservation_at_capacity),
        with_parser(test_parser_is_reusable),
        with_parser(test_parsers_are_independent),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
