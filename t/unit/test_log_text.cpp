// Redis's error text in nginx's log: printable ASCII only, nothing that ends
// a line or forges another, cut to the room there is.
#include <cstddef>
#include <string>
#include <string_view>

#include "core/log_text.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;

namespace {

std::string escaped(std::string_view text, std::size_t capacity = 256) {
    std::string out(capacity, '\0');
    out.resize(resend::escape_for_log(text, out.data(), capacity));
    return out;
}

void test_printable_text_is_kept(void **) {
    check_bytes_eq(escaped("OOM command not allowed when used memory > 'maxmemory'."),
                   "OOM command not allowed when used memory > 'maxmemory'.");
    check_bytes_eq(escaped(""), "");
    check_bytes_eq(escaped(" ~"), " ~");
}

void test_line_breaks_cannot_forge_a_line(void **) {
    std::string out = escaped("ERR x\n2026/12/01 10:00:00 [emerg] 1#1: forged\r\n");
    check_bytes_eq(out, "ERR x\\x0a2026/12/01 10:00:00 [emerg] 1#1: forged\\x0d\\x0a");
    check(out.find('\n') == std::string::npos);
    check(out.find('\r') == std::string::npos);
}

void test_control_high_and_backslash_bytes_are_escaped(void **) {
    check_bytes_eq(escaped("\x00\x1f\x7f\x80\xff\\"sv), "\\x00\\x1f\\x7f\\x80\\xff\\x5c");
    check_bytes_eq(escaped("\x1b[31mred"sv), "\\x1b[31mred");
    check_bytes_eq(escaped("caf\xc3\xa9"sv), "caf\\xc3\\xa9");
}

void test_every_byte_comes_out_printable(void **) {
    std::string all;
    for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
    std::string out = escaped(all, 2048);
    check_eq(out.size(), 94 + 4 * 162);  // 94 printable but the backslash, 162 escaped
    for (unsigned char c : out) check(c >= 0x20 && c <= 0x7e);
}

void test_cut_to_the_room_with_dots(void **) {
    check_bytes_eq(escaped("abcdefgh", 8), "abcdefgh");
    check_bytes_eq(escaped("abcdefghi", 8), "abcde...");
    // An escape is never cut in the middle.
    check_bytes_eq(escaped("abc\ndefgh", 8), "abc...");
    check_bytes_eq(escaped("ab\n", 6), "ab\\x0a");
    check_bytes_eq(escaped("abcd", 2), "..");
    check_bytes_eq(escaped("abcd", 0), "");
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_printable_text_is_kept),
        guarded_test(test_line_breaks_cannot_forge_a_line),
        guarded_test(test_control_high_and_backslash_bytes_are_escaped),
        guarded_test(test_every_byte_comes_out_printable),
        guarded_test(test_cut_to_the_room_with_dots),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
