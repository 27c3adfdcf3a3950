// Content-Type check of the contract: `application/json`, parameters such as
// `; charset=utf-8` allowed, case-insensitive; nothing else is JSON here.
#include <cstddef>
#include <string>
#include <string_view>

#include "core/media_type.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;

namespace {

void check_media_type(std::string_view content_type, bool expected, const char *file, int line) {
    if (resend::media_type_is_json(content_type) != expected) {
        print_error("media_type_is_json(\"%s\") should be %s\n",
                    unit::printable(content_type).c_str(), expected ? "true" : "false");
        unit::record_failure(file, line);
    }
}

#define check_json(content_type) check_media_type((content_type), true, __FILE__, __LINE__)
#define check_not_json(content_type) check_media_type((content_type), false, __FILE__, __LINE__)

void test_application_json_is_json(void **) {
    check_json("application/json");
}

void test_any_letter_case_is_json(void **) {
    check_json("APPLICATION/JSON");
    check_json("Application/Json");
    check_json("application/JSON");
    check_json("APPLICATION/json");
    check_json("aPpLiCaTiOn/JsOn");
    check_json("Application/JSON; Charset=UTF-8");
}

void test_parameters_are_allowed(void **) {
    check_json("application/json; charset=utf-8");
    check_json("application/json;charset=utf-8");
    check_json("application/json; charset=UTF-8");
    check_json("application/json; charset=\"utf-8\"");
    check_json("application/json; charset=utf-8; foo=bar");
    check_json("application/json;");
}

void test_whitespace_before_parameters_is_allowed(void **) {
    check_json("application/json ; charset=utf-8");
    check_json("application/json   ;charset=utf-8");
    check_json("application/json\t; charset=utf-8");
    check_json("application/json \t ; charset=utf-8");
}

void test_other_media_types_are_not_json(void **) {
    check_not_json("application/jsonx");
    check_not_json("application/json-patch+json");
    check_not_json("application/json-seq");
    check_not_json("application/ld+json");
    check_not_json("application/problem+json");
    check_not_json("text/json");
    check_not_json("text/plain");
    check_not_json("application/x-www-form-urlencoded");
    check_not_json("multipart/form-data; boundary=x");
    check_not_json("application/javascript");
    check_not_json("application/octet-stream");
    check_not_json("application/xml");
    check_not_json("json");
    check_not_json("application/");
    check_not_json("*/*");
    check_not_json("application/*");
}

void test_truncated_or_extended_forms_are_not_json(void **) {
    check_not_json("");
    check_not_json("application/jso");
    check_not_json("application/json x");
    check_not_json("application/json x; charset=utf-8");
    check_not_json("application/json,");
    check_not_json("application/json, text/plain");
    check_not_json("application/json/x");
    check_not_json("application/json=");
    check_not_json("application/json\0"sv);
    check_not_json("application/json\0; charset=utf-8"sv);
    check_not_json("applicationjson");
    check_not_json("application json");
    check_not_json("application\\json");
    check_not_json("application/jsoN\x80");
}

void test_near_misses_are_not_json(void **) {
    // one character off at every position
    constexpr std::string_view json = "application/json";
    for (std::size_t i = 0; i < json.size(); ++i) {
        std::string changed(json);
        changed[i] = changed[i] == 'x' ? 'y' : 'x';
        check_media_type(changed, false, __FILE__, __LINE__);
        std::string removed(json);
        removed.erase(i, 1);
        check_media_type(removed, false, __FILE__, __LINE__);
    }
    // case folding is ASCII letters only: '/' is not '\x0f', 'j' is not '\x0a'
    check_not_json("application\017json");
    check_not_json("APPLICATION\x0fJSON");
}

// Only the bytes of the view count, not what follows it in memory.
void test_only_the_view_is_read(void **) {
    constexpr std::string_view header = "application/json; charset=utf-8";
    check_not_json(header.substr(0, 15));  // "application/jso"
    check_json(header.substr(0, 16));
    check_json(header.substr(0, 17));  // "application/json;"
    check_not_json(header.substr(1));
    std::string exact = "application/json";
    check_json(std::string_view(exact.data(), exact.size()));
    check_not_json(std::string_view(exact.data(), exact.size() - 1));
    check_not_json(std::string_view(exact.data(), 0));
}

void test_nothing_before_the_type(void **) {
    check_not_json("xapplication/json");
    check_not_json(";application/json");
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_application_json_is_json),
        guarded_test(test_any_letter_case_is_json),
        guarded_test(test_parameters_are_allowed),
        guarded_test(test_whitespace_before_parameters_is_allowed),
        guarded_test(test_other_media_types_are_not_json),
        guarded_test(test_truncated_or_extended_forms_are_not_json),
        guarded_test(test_near_misses_are_not_json),
        guarded_test(test_only_the_view_is_read),
        guarded_test(test_nothing_before_the_type),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
