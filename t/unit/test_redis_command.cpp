// Redis commands in RESP: exact bytes, resp_size() against what resp_write()
// writes, and binary safety (every argument comes back from a RESP parser,
// hiredis's redisReader, byte for byte, as one command and nothing more).
#include <cstddef>
#include <cstring>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>

#include "core/redis_command.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;

namespace {

using resend::resp_size;

constexpr char canary = '\xa5';
constexpr std::size_t canary_size = 32;

// Writes `args` into a heap buffer of exactly resp_size() bytes (so that the
// sanitized build catches any write past it) and, in a second buffer, followed
// by canary bytes (so that the plain build catches it too). Checks that both
// writes agree, end exactly at resp_size() and leave the canary alone.
// Returns the bytes written.
std::string write_command(std::span<const std::string_view> args, const char *file, int line) {
    const std::size_t size = resp_size(args);

    std::unique_ptr<char[]> exact(new char[size]);
    char *exact_end = resend::resp_write(exact.get(), args);
    if (exact_end != exact.get() + size) {
        print_error("resp_write() wrote %td bytes, resp_size() said %zu\n", exact_end - exact.get(),
                    size);
        unit::record_failure(file, line);
    }

    std::vector<char> guarded(size + canary_size, canary);
    char *guarded_end = resend::resp_write(guarded.data(), args);
    if (guarded_end != guarded.data() + size) {
        print_error("resp_write() wrote %td bytes, resp_size() said %zu\n",
                    guarded_end - guarded.data(), size);
        unit::record_failure(file, line);
    }
    for (std::size_t i = size; i < guarded.size(); ++i) {
        if (guarded[i] != canary) {
            print_error("resp_write() wrote past resp_size() (%zu bytes): byte %zu changed\n", size,
                        i);
            unit::record_failure(file, line);
            break;
        }
    }

    std::string written(exact.get(), size);
    if (std::string_view(guarded.data(), size) != written) {
        print_error("resp_write() wrote different bytes on two calls\n");
        unit::record_failure(file, line);
    }
    return written;
}

// Parses `wire` with hiredis's own reader (its default reply objects) and
// checks it is exactly one array reply of bulk strings equal to `args`, and
// that no byte is left over (no second command after it).
void parse_back(std::string_view wire, std::span<const std::string_view> args, const char *file,
                int line) {
    redisReader *reader = redisReaderCreate();
    if (reader == nullptr) {
        print_error("redisReaderCreate() failed\n");
        unit::record_failure(file, line);
        return;
    }
    if (redisReaderFeed(reader, wire.data(), wire.size()) != REDIS_OK) {
        print_error("redisReaderFeed() failed\n");
        unit::record_failure(file, line);
    }

    void *object = nullptr;
    if (redisReaderGetReply(reader, &object) != REDIS_OK) {
        print_error("RESP parser: protocol error: %s\n", reader->errstr);
        unit::record_failure(file, line);
    } else if (object == nullptr) {
        print_error("RESP parser: incomplete command in \"%s\"\n", unit::printable(wire).c_str());
        unit::record_failure(file, line);
    } else {
        auto *reply = static_cast<redisReply *>(object);
        if (reply->type != REDIS_REPLY_ARRAY) {
            print_error("RESP parser: a reply of type %d, not an array\n", reply->type);
            unit::record_failure(file, line);
        } else if (reply->elements != args.size()) {
            print_error("RESP parser: %zu elements, expected %zu\n", reply->elements, args.size());
            unit::record_failure(file, line);
        } else {
            for (std::size_t i = 0; i < args.size(); ++i) {
                const redisReply *element = reply->element[i];
                if (element->type != REDIS_REPLY_STRING) {
                    print_error("RESP parser: element %zu of type %d, not a bulk string\n", i,
                                element->type);
                    unit::record_failure(file, line);
                    continue;
                }
                std::string_view got(element->str, element->len);
                if (got != args[i]) {
                    print_error("RESP parser: element %zu is \"%s\" (%zu bytes), expected \"%s\" "
                                "(%zu bytes)\n",
                                i, unit::printable(got).c_str(), got.size(),
                                unit::printable(args[i]).c_str(), args[i].size());
                    unit::record_failure(file, line);
                }
            }
        }
        freeReplyObject(reply);

        if (reader->pos != reader->len) {
            print_error("RESP parser: %zu byte(s) left after the command: \"%s\"\n",
                        reader->len - reader->pos,
                        unit::printable(std::string_view(reader->buf + reader->pos,
                                                         reader->len - reader->pos))
                            .c_str());
            unit::record_failure(file, line);
        }
        void *second = nullptr;
        if (redisReaderGetReply(reader, &second) != REDIS_OK || second != nullptr) {
            print_error("RESP parser: a second command (or an error) after the first\n");
            unit::record_failure(file, line);
            if (second != nullptr) freeReplyObject(second);
        }
    }
    redisReaderFree(reader);
}

// resp_size() == bytes written, no overflow, and the bytes parse back.
void check_round_trip(std::span<const std::string_view> args, const char *file, int line) {
    std::string wire = write_command(args, file, line);
    parse_back(wire, args, file, line);
}

// As check_round_trip(), and the bytes are exactly `expected`.
void check_wire(std::span<const std::string_view> args, std::string_view expected,
                const char *file, int line) {
    std::string wire = write_command(args, file, line);
    unit::check_bytes_equal(wire, expected, "resp_write()", file, line);
    parse_back(wire, args, file, line);
}

#define check_round_trip(args) check_round_trip((args), __FILE__, __LINE__)
#define check_wire(args, expected) check_wire((args), (expected), __FILE__, __LINE__)

void test_exact_bytes_of_simple_commands(void **) {
    const std::string_view xadd[] = {"XADD", "k", "*"};
    check_wire(xadd, "*3\r\n$4\r\nXADD\r\n$1\r\nk\r\n$1\r\n*\r\n");

    const std::string_view ping[] = {"PING"};
    check_wire(ping, "*1\r\n$4\r\nPING\r\n");

    const std::string_view auth[] = {"AUTH", "default", "s3cret"};
    check_wire(auth, "*3\r\n$4\r\nAUTH\r\n$7\r\ndefault\r\n$6\r\ns3cret\r\n");

    const std::string_view xadd_fields[] = {"XADD",  "resend:confirmations", "MAXLEN", "~",
                                            "10000", "*",                    "email",  "a@b.c"};
    check_wire(xadd_fields,
               "*8\r\n$4\r\nXADD\r\n$20\r\nresend:confirmations\r\n$6\r\nMAXLEN\r\n$1\r\n~\r\n"
               "$5\r\n10000\r\n$1\r\n*\r\n$5\r\nemail\r\n$5\r\na@b.c\r\n");
}

void test_no_arguments(void **) {
    check_eq(resp_size({}), 4);
    check_wire(std::span<const std::string_view>(), "*0\r\n");
}

void test_empty_arguments(void **) {
    const std::string_view one_empty[] = {""};
    check_wire(one_empty, "*1\r\n$0\r\n\r\n");

    const std::string_view set_empty[] = {"SET", "k", ""};
    check_wire(set_empty, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n");

    const std::string_view all_empty[] = {"", "", ""};
    check_wire(all_empty, "*3\r\n$0\r\n\r\n$0\r\n\r\n$0\r\n\r\n");
}

// The length prefix's digit count changes at 10, 100, 1000...: the size must
// follow it exactly on both sides of each boundary.
void test_argument_length_digit_boundaries(void **) {
    for (std::size_t length :
         {1u, 8u, 9u, 10u, 11u, 98u, 99u, 100u, 101u, 999u, 1000u, 1001u, 9999u, 10000u, 65536u,
          99999u, 100000u, 999999u, 1000000u}) {
        std::string arg(length, 'x');
        for (std::size_t i = 0; i < length; ++i) arg[i] = static_cast<char>('a' + i % 26);
        const std::string_view args[] = {"SET", "k", arg};
        std::size_t digits = std::to_string(length).size();
        check_eq(resp_size(args), 4 + (1 + 1 + 2 + 3 + 2) + (1 + 1 + 2 + 1 + 2) +
                                      (1 + digits + 2 + length + 2));
        check_round_trip(args);
    }

    const std::string nine(9, 'n'), ten(10, 't'), ninety_nine(99, 'N'), hundred(100, 'h'),
        thousand(1000, 'k');
    const std::string_view nine_args[] = {nine};
    check_wire(nine_args, "*1\r\n$9\r\nnnnnnnnnn\r\n");
    const std::string_view ten_args[] = {ten};
    check_wire(ten_args, "*1\r\n$10\r\ntttttttttt\r\n");
    const std::string_view mixed[] = {nine, ten, ninety_nine, hundred, thousand};
    check_wire(mixed, "*5\r\n$9\r\n" + nine + "\r\n$10\r\n" + ten + "\r\n$99\r\n" + ninety_nine +
                          "\r\n$100\r\n" + hundred + "\r\n$1000\r\n" + thousand + "\r\n");
}

// Every argument length up to past 1000, one at a time.
void test_every_argument_length_up_to_1100(void **) {
    std::string arg;
    for (std::size_t length = 0; length <= 1100; ++length) {
        const std::string_view args[] = {arg};
        const std::string expected =
            "*1\r\n$" + std::to_string(length) + "\r\n" + arg + "\r\n";
        check_eq(resp_size(args), expected.size());
        check_wire(args, expected);
        arg += static_cast<char>(length % 256);  // every byte value, too
    }
}

// The argument count's digit count changes at 10, 100, 1000.
void test_argument_count_digit_boundaries(void **) {
    for (std::size_t count : {9u, 10u, 11u, 99u, 100u, 101u, 999u, 1000u, 1001u}) {
        std::vector<std::string> storage;
        for (std::size_t i = 0; i < count; ++i) storage.push_back("arg" + std::to_string(i));
        std::vector<std::string_view> args(storage.begin(), storage.end());

        std::string expected = "*" + std::to_string(count) + "\r\n";
        for (const std::string &arg : storage) {
            expected += "$" + std::to_string(arg.size()) + "\r\n" + arg + "\r\n";
        }
        check_eq(resp_size(args), expected.size());
        check_wire(args, expected);
    }
}

void test_many_argument_shapes(void **) {
    const std::string big(12345, 'B');
    const std::string_view shapes_1[] = {"a", "", "bb", "", "", "ccc"};
    check_round_trip(shapes_1);
    const std::string_view shapes_2[] = {"", big, "", big};
    check_round_trip(shapes_2);
    const std::string_view shapes_3[] = {"XADD", "s", "*", "f1", "v1", "f2", "v2", "f3",
                                         "v3",   "f4", "v4", "f5", "v5", big};
    check_round_trip(shapes_3);
}

// Values from the outside (an email, a header) cannot end the command early or
// add another command: each comes back as one argument, byte for byte.
void test_binary_arguments_round_trip(void **) {
    const std::string_view crlf[] = {"SET", "k", "\r\n"};
    check_wire(crlf, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$2\r\n\r\n\r\n");

    const std::string_view injected_inline[] = {"SET", "k", "\r\nFLUSHALL\r\n"};
    check_wire(injected_inline, "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$12\r\n\r\nFLUSHALL\r\n\r\n");

    const std::string_view injected_command[] = {"SET", "k", "*1\r\n$8\r\nFLUSHALL\r\n"};
    check_wire(injected_command,
               "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$18\r\n*1\r\n$8\r\nFLUSHALL\r\n\r\n");

    const std::string_view injected_key[] = {"XADD", "k\r\n*1\r\n$8\r\nFLUSHALL\r\n", "*",
                                             "email", "x@y.z\r\n"};
    check_round_trip(injected_key);

    const std::string_view nul[] = {"SET", "k\0k"sv, "\0"sv, "a\0b\0\0c"sv};
    check_wire(nul, "*4\r\n$3\r\nSET\r\n$3\r\nk\0k\r\n$1\r\n\0\r\n$6\r\na\0b\0\0c\r\n"sv);

    const std::string_view high[] = {"SET", "\xff", "\xff\xfe\x80\x00\x7f"sv};
    check_wire(high, "*3\r\n$3\r\nSET\r\n$1\r\n\xff\r\n$5\r\n\xff\xfe\x80\x00\x7f\r\n"sv);

    // Lone CR or LF, length-like and type-like prefixes.
    const std::string_view odd[] = {"\r", "\n", "\n\r", "$", "*", "$-1", "*-1", ":1", "+OK",
                                    "-ERR", "$5\r\n", "*0\r\n", "\r\n\r\n\r\n"};
    check_round_trip(odd);

    // Every byte value in one argument.
    std::string all_bytes;
    for (int c = 0; c < 256; ++c) all_bytes += static_cast<char>(c);
    const std::string_view every_byte[] = {all_bytes, "-", all_bytes};
    check_round_trip(every_byte);
}

// A length prefix is written for the argument's bytes, not up to a NUL.
void test_only_the_views_are_written(void **) {
    constexpr std::string_view text = "hello world";
    const std::string_view args[] = {text.substr(0, 5), text.substr(6, 0), text.substr(6)};
    check_wire(args, "*3\r\n$5\r\nhello\r\n$0\r\n\r\n$5\r\nworld\r\n");
}

// Commands written one after another (a pipeline) parse back one by one.
void test_pipelined_commands_stay_apart(void **) {
    const std::string_view first[] = {"SET", "a", "1\r\n*1\r\n$8\r\nFLUSHALL\r\n"};
    const std::string_view second[] = {"GET", "a"};
    std::string wire(resp_size(first) + resp_size(second), '\0');
    char *end = resend::resp_write(wire.data(), first);
    end = resend::resp_write(end, second);
    check(end == wire.data() + wire.size());

    redisReader *reader = redisReaderCreate();
    if (!check(reader != nullptr)) return;
    check_eq(redisReaderFeed(reader, wire.data(), wire.size()), REDIS_OK);
    for (std::span<const std::string_view> expected :
         {std::span<const std::string_view>(first), std::span<const std::string_view>(second)}) {
        void *object = nullptr;
        if (!check_eq(redisReaderGetReply(reader, &object), REDIS_OK) ||
            !check(object != nullptr)) {
            break;
        }
        auto *reply = static_cast<redisReply *>(object);
        if (check_eq(reply->type, REDIS_REPLY_ARRAY) &&
            check_eq(reply->elements, expected.size())) {
            for (std::size_t i = 0; i < expected.size(); ++i) {
                check_bytes_eq(std::string_view(reply->element[i]->str, reply->element[i]->len),
                               expected[i]);
            }
        }
        freeReplyObject(reply);
    }
    void *object = nullptr;
    check_eq(redisReaderGetReply(reader, &object), REDIS_OK);
    check(object == nullptr);
    check_eq(reader->len - reader->pos, 0);
    redisReaderFree(reader);
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_exact_bytes_of_simple_commands),
        guarded_test(test_no_arguments),
        guarded_test(test_empty_arguments),
        guarded_test(test_argument_length_digit_boundaries),
        guarded_test(test_every_argument_length_up_to_1100),
        guarded_test(test_argument_count_digit_boundaries),
        guarded_test(test_many_argument_shapes),
        guarded_test(test_binary_arguments_round_trip),
        guarded_test(test_only_the_views_are_written),
        guarded_test(test_pipelined_commands_stay_apart),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
