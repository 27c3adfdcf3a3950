// Shared helpers for the cmocka unit tests of src/core (not a test program
// itself: only t/unit/test_*.cpp are built as tests).
//
// Checks here do not abort the test: each failing check prints what it saw
// and where, and the test goes on (a table test shows every failing input).
// guarded_test() runs the test and, once it has returned and its locals are
// destroyed, reports the first failure to cmocka. cmocka's own assert_*()
// macros would longjmp out past C++ destructors, which the sanitized build
// then reports as leaks; they are not used.
//
// Include this header after every other one: cmocka defines macros named
// fail() and skip(), which break C++ library headers included later.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>

// cmocka needs these before its own header, which (in 1.1.5) declares its
// C functions without extern "C" itself.
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
extern "C" {
#include <cmocka.h>
}

namespace unit {

inline unsigned failures = 0;
inline const char *first_failure_file = nullptr;
inline int first_failure_line = 0;

// Called by every check after it printed its message.
inline void record_failure(const char *file, int line) {
    print_error("    at %s:%d\n", file, line);
    if (failures++ == 0) {
        first_failure_file = file;
        first_failure_line = line;
    }
}

template <void (*test)(void **)>
void run(void **state) {
    failures = 0;
    test(state);
    if (failures != 0) {
        print_error("%u check(s) failed\n", failures);
        _fail(first_failure_file, first_failure_line);
    }
}

// The bytes of `s` as a readable C-like literal: printable ASCII as is,
// everything else (and '"', '\\') escaped, so failure messages show NULs,
// control bytes and non-ASCII exactly.
inline std::string printable(std::string_view s) {
    std::string out;
    for (unsigned char c : s) {
        if (c == '"' || c == '\\') {
            out += '\\';
            out += static_cast<char>(c);
        } else if (c >= 0x20 && c < 0x7f) {
            out += static_cast<char>(c);
        } else {
            char buf[5];
            std::snprintf(buf, sizeof buf, "\\x%02x", c);
            out += buf;
        }
    }
    return out;
}

inline bool check_true(bool ok, const char *what, const char *file, int line) {
    if (!ok) {
        print_error("check failed: %s\n", what);
        record_failure(file, line);
    }
    return ok;
}

inline bool check_equal(long long actual, long long expected, const char *actual_text,
                        const char *expected_text, const char *file, int line) {
    if (actual != expected) {
        print_error("check failed: %s == %s: %lld != %lld\n", actual_text, expected_text, actual,
                    expected);
        record_failure(file, line);
    }
    return actual == expected;
}

inline bool check_bytes_equal(std::string_view actual, std::string_view expected, const char *what,
                              const char *file, int line) {
    if (actual != expected) {
        print_error("check failed: %s: got \"%s\" (%zu bytes), expected \"%s\" (%zu bytes)\n", what,
                    printable(actual).c_str(), actual.size(), printable(expected).c_str(),
                    expected.size());
        record_failure(file, line);
    }
    return actual == expected;
}

}  // namespace unit

// Each returns whether the check passed.
#define check(condition) unit::check_true((condition), #condition, __FILE__, __LINE__)
#define check_eq(actual, expected)                                                               \
    unit::check_equal(static_cast<long long>(actual), static_cast<long long>(expected), #actual, \
                      #expected, __FILE__, __LINE__)
#define check_bytes_eq(actual, expected) \
    unit::check_bytes_equal((actual), (expected), #actual, __FILE__, __LINE__)

// CMUnitTest entries for tests written with these checks.
// clang-format off
#define guarded_test(f) {#f, unit::run<f>, nullptr, nullptr, nullptr}
#define guarded_test_setup_teardown(f, setup, teardown) {#f, unit::run<f>, setup, teardown, nullptr}
// clang-format on
