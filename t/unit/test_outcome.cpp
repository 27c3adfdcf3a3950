// The contract's answers: status, outcome word and body for every outcome.
#include <cstddef>
#include <string>
#include <string_view>

#define SIMDJSON_EXCEPTIONS 0  // as in src/core/request.cpp
#include <simdjson.h>

#include "core/outcome.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

namespace {

using resend::outcome;

// The spec's 200 body, copied here from the README's contract, not from the
// code under test.
constexpr std::string_view spec_accepted_body =
    "{\"data\":{\"message\":\"Please check your inbox. If a root account is associated "
    "with this email and remains unconfirmed, a reconfirmation message should have "
    "been sent.\"}}";

// Every row of the README's contract table: the outcome, its status, its
// $resend_confirmation_outcome word, and the body's error.code (empty: the
// body is the spec's 200 body).
struct contract_row {
    outcome result;
    unsigned status;
    std::string_view word;
    std::string_view code;
};

constexpr contract_row contract[] = {
    {outcome::accepted, 200, "accepted", ""},
    {outcome::client_limited, 429, "client_limited", "rate_limited"},
    {outcome::email_limited, 429, "email_limited", "rate_limited"},
    {outcome::silenced, 200, "silenced", ""},
    {outcome::dry_run_limited, 200, "dry_run_limited", ""},
    {outcome::redis_error, 503, "redis_error", "unavailable"},
    {outcome::lost, 200, "lost", ""},
    {outcome::redis_timeout, 503, "redis_timeout", "unavailable"},
    {outcome::client_closed, 499, "client_closed", "client_closed"},
    {outcome::spooled, 200, "spooled", ""},
    {outcome::method_not_allowed, 405, "method_not_allowed", "method_not_allowed"},
    {outcome::unsupported_media_type, 415, "unsupported_media_type", "unsupported_media_type"},
    {outcome::payload_too_large, 413, "payload_too_large", "payload_too_large"},
    {outcome::invalid_json, 400, "invalid_json", "invalid_json"},
    {outcome::invalid_request, 400, "invalid_request", "invalid_request"},
    {outcome::invalid_email, 400, "invalid_email", "invalid_email"},
};

// Checks that `body` is valid JSON of exactly the form
// {"error":{"code":<code>,"message":<non-empty string>}} and returns the code
// ("" after a failure has been reported).
std::string error_code_of(std::string_view body, const char *file, int line) {
    simdjson::dom::parser parser;
    simdjson::padded_string json(body);
    simdjson::dom::element root;
    auto error = parser.parse(json).get(root);
    if (error != simdjson::SUCCESS) {
        print_error("not valid JSON (%s): %s\n", simdjson::error_message(error),
                    unit::printable(body).c_str());
        unit::record_failure(file, line);
        return "";
    }
    simdjson::dom::object top;
    simdjson::dom::object inner;
    std::string_view code;
    std::string_view message;
    if (root.get_object().get(top) != simdjson::SUCCESS || top.size() != 1 ||
        top["error"].get_object().get(inner) != simdjson::SUCCESS || inner.size() != 2 ||
        inner["code"].get_string().get(code) != simdjson::SUCCESS ||
        inner["message"].get_string().get(message) != simdjson::SUCCESS || message.empty()) {
        print_error("not of the form {\"error\":{\"code\":...,\"message\":...}}: %s\n",
                    unit::printable(body).c_str());
        unit::record_failure(file, line);
        return "";
    }
    return std::string(code);
}

void test_accepted_is_200_with_the_spec_body(void **) {
    const resend::answer &answer = resend::answer_for(outcome::accepted);
    check_eq(answer.status, 200);
    check_bytes_eq(answer.word, "accepted");
    check_bytes_eq(answer.body, spec_accepted_body);
    check_bytes_eq(resend::accepted_body, spec_accepted_body);
    check_eq(answer.body.size(), spec_accepted_body.size());
}

void test_accepted_body_is_json_with_the_message(void **) {
    simdjson::dom::parser parser;
    simdjson::padded_string json(resend::answer_for(outcome::accepted).body);
    simdjson::dom::element root;
    if (!check_eq(parser.parse(json).get(root), simdjson::SUCCESS)) return;
    simdjson::dom::object top;
    if (!check_eq(root.get_object().get(top), simdjson::SUCCESS)) return;
    check_eq(top.size(), 1);
    std::string_view message;
    check_eq(root["data"]["message"].get_string().get(message), simdjson::SUCCESS);
    check_bytes_eq(message,
                   "Please check your inbox. If a root account is associated with this "
                   "email and remains unconfirmed, a reconfirmation message should have "
                   "been sent.");
}

// The table has one row for each outcome but `none`, each outcome once.
void test_the_table_covers_every_outcome(void **) {
    constexpr std::size_t n = sizeof contract / sizeof contract[0];
    check_eq(n, static_cast<std::size_t>(outcome::count_) - 1);
    for (unsigned i = 1; i < static_cast<unsigned>(outcome::count_); ++i) {
        std::size_t rows = 0;
        for (const contract_row &row : contract) rows += row.result == static_cast<outcome>(i);
        if (rows != 1) {
            print_error("outcome %u: %zu rows\n", i, rows);
            unit::record_failure(__FILE__, __LINE__);
        }
    }
}

void test_statuses_and_words_follow_the_contract(void **) {
    for (const contract_row &row : contract) {
        const resend::answer &answer = resend::answer_for(row.result);
        if (answer.status != row.status) {
            print_error("%.*s: status %u, expected %u\n", static_cast<int>(row.word.size()),
                        row.word.data(), answer.status, row.status);
            unit::record_failure(__FILE__, __LINE__);
        }
        check_bytes_eq(answer.word, row.word);
    }
}

// The 200 rows answer the spec's body byte for byte: the answer never tells
// accepted, silenced, dry run and lost apart.
void test_200_rows_have_the_spec_body(void **) {
    for (const contract_row &row : contract) {
        if (!row.code.empty()) continue;
        check_bytes_eq(resend::answer_for(row.result).body, spec_accepted_body);
    }
}

void test_error_bodies_are_json_with_the_contract_code(void **) {
    for (const contract_row &row : contract) {
        if (row.code.empty()) continue;
        std::string_view body = resend::answer_for(row.result).body;
        std::string code = error_code_of(body, __FILE__, __LINE__);
        check_bytes_eq(code, row.code);
    }
}

// The body text itself has the contract's shape, members in this order.
void test_error_bodies_have_the_contract_layout(void **) {
    for (const contract_row &row : contract) {
        if (row.code.empty()) continue;
        std::string_view body = resend::answer_for(row.result).body;
        std::string prefix =
            "{\"error\":{\"code\":\"" + std::string(row.code) + "\",\"message\":\"";
        if (body.substr(0, prefix.size()) != prefix || body.size() < prefix.size() + 4 ||
            body.substr(body.size() - 3) != "\"}}") {
            print_error("unexpected layout: %s\n", unit::printable(body).c_str());
            unit::record_failure(__FILE__, __LINE__);
        }
    }
}

// Error bodies differ from the 200 body, and from each other unless they
// share their code (client_limited and email_limited: the answer does not
// say which limit refused); every outcome has its own word.
void test_bodies_differ_unless_the_code_is_shared(void **) {
    constexpr std::size_t n = sizeof contract / sizeof contract[0];
    for (std::size_t i = 0; i < n; ++i) {
        std::string_view body = resend::answer_for(contract[i].result).body;
        if (!contract[i].code.empty()) {
            check(body != resend::accepted_body);
            check(body.find("\"data\"") == std::string_view::npos);
        }
        for (std::size_t j = i + 1; j < n; ++j) {
            std::string_view other = resend::answer_for(contract[j].result).body;
            check((body == other) == (contract[i].code == contract[j].code));
            check(resend::answer_for(contract[i].result).word !=
                  resend::answer_for(contract[j].result).word);
        }
    }
}

// Bodies are sent as they are: printable ASCII, no newline, no NUL.
void test_bodies_are_printable_ascii(void **) {
    for (unsigned i = 0; i < static_cast<unsigned>(outcome::count_); ++i) {
        std::string_view body = resend::answer_for(static_cast<outcome>(i)).body;
        check(!(body.empty()));
        for (unsigned char c : body) {
            if (c < 0x20 || c >= 0x7f) {
                print_error("outcome %u: byte 0x%02x in body\n", i, c);
                unit::record_failure(__FILE__, __LINE__);
            }
        }
    }
}

// Redis failures: 503 with the code "unavailable" under policy reject (the
// variable says redis_error); the very 200 body under policy accept ("lost").
void test_redis_failures_follow_the_contract(void **) {
    const resend::answer &unavailable = resend::answer_for(outcome::redis_error);
    check_eq(unavailable.status, 503);
    check_bytes_eq(unavailable.word, "redis_error");
    check_bytes_eq(error_code_of(unavailable.body, __FILE__, __LINE__), "unavailable");

    const resend::answer &lost = resend::answer_for(outcome::lost);
    check_eq(lost.status, 200);
    check_bytes_eq(lost.word, "lost");
    check_bytes_eq(lost.body, spec_accepted_body);

    // Written, never answered: the same 503 body, its own word.
    const resend::answer &timeout = resend::answer_for(outcome::redis_timeout);
    check_eq(timeout.status, 503);
    check_bytes_eq(timeout.word, "redis_timeout");
    check_bytes_eq(timeout.body, unavailable.body);
}

// Not a contract row: an undecided or out-of-range outcome still gets a
// server-error JSON answer (and answer_for reads nothing out of bounds, which
// the sanitized build checks).
void test_undecided_and_out_of_range_outcomes_are_server_errors(void **) {
    const outcome odd[] = {outcome::none, outcome::count_, static_cast<outcome>(200),
                           static_cast<outcome>(255)};
    for (outcome result : odd) {
        const resend::answer &answer = resend::answer_for(result);
        check(answer.status >= 500 && answer.status <= 599);
        std::string code = error_code_of(answer.body, __FILE__, __LINE__);
        check(!(code.empty()));
        check(answer.body != resend::accepted_body);
    }
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_accepted_is_200_with_the_spec_body),
        guarded_test(test_accepted_body_is_json_with_the_message),
        guarded_test(test_the_table_covers_every_outcome),
        guarded_test(test_statuses_and_words_follow_the_contract),
        guarded_test(test_200_rows_have_the_spec_body),
        guarded_test(test_error_bodies_are_json_with_the_contract_code),
        guarded_test(test_error_bodies_have_the_contract_layout),
        guarded_test(test_bodies_differ_unless_the_code_is_shared),
        guarded_test(test_bodies_are_printable_ascii),
        guarded_test(test_redis_failures_follow_the_contract),
        guarded_test(test_undecided_and_out_of_range_outcomes_are_server_errors),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
