// Redis replies: reply_reader reports each top-level reply once it is
// complete, with its kind and, for an error, its text (truncated to its
// buffer); nested elements are kept in the reply's elements (test_redis_topology);
// protocol errors and reset().
#include <cstddef>
#include <string>
#include <string_view>

#include <hiredis/hiredis.h>  // HIREDIS_MAJOR

#include "core/redis_reply.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;

namespace {

using resend::redis_reply;
using resend::reply_kind;
using resend::reply_reader;
using status = resend::reply_reader::status;

const char *kind_name(reply_kind kind) {
    switch (kind) {
    case reply_kind::status: return "status";
    case reply_kind::error: return "error";
    case reply_kind::string: return "string";
    case reply_kind::integer: return "integer";
    case reply_kind::nil: return "nil";
    case reply_kind::array: return "array";
    }
    return "(not a reply_kind)";
}

const char *status_name(status s) {
    switch (s) {
    case status::reply: return "reply";
    case status::incomplete: return "incomplete";
    case status::protocol_error: return "protocol_error";
    }
    return "(not a status)";
}

// The next reply is complete, of `kind`, and (for an error) has `error` as
// its text; any other kind has no error text.
void expect_reply_at(reply_reader &reader, reply_kind kind, std::string_view error,
                     const char *file, int line) {
    redis_reply reply{};
    status got = reader.next(reply);
    if (got != status::reply) {
        print_error("next() gave %s, expected a %s reply\n", status_name(got), kind_name(kind));
        unit::record_failure(file, line);
        return;
    }
    if (reply.kind != kind) {
        print_error("next() gave a %s reply, expected %s\n", kind_name(reply.kind),
                    kind_name(kind));
        unit::record_failure(file, line);
    }
    unit::check_bytes_equal(reply.error, error, "the reply's error text", file, line);
}

void expect_status_at(reply_reader &reader, status expected, const char *file, int line) {
    redis_reply reply{};
    status got = reader.next(reply);
    if (got != expected) {
        print_error("next() gave %s", status_name(got));
        if (got == status::reply) print_error(" (a %s reply)", kind_name(reply.kind));
        print_error(", expected %s\n", status_name(expected));
        unit::record_failure(file, line);
    }
}

void feed_at(reply_reader &reader, std::string_view bytes, const char *file, int line) {
    if (!reader.feed(bytes.data(), bytes.size())) {
        print_error("feed(\"%s\") failed\n", unit::printable(bytes).c_str());
        unit::record_failure(file, line);
    }
}

#define feed_bytes(reader, bytes) feed_at((reader), (bytes), __FILE__, __LINE__)
#define expect_reply(reader, kind) expect_reply_at((reader), (kind), "", __FILE__, __LINE__)
#define expect_error(reader, text) \
    expect_reply_at((reader), reply_kind::error, (text), __FILE__, __LINE__)
#define expect_incomplete(reader) expect_status_at((reader), status::incomplete, __FILE__, __LINE__)
#define expect_protocol_error(reader) \
    expect_status_at((reader), status::protocol_error, __FILE__, __LINE__)

// One reply fed whole to a new reader: exactly one reply of `kind`, then
// nothing more.
void check_single_at(std::string_view bytes, reply_kind kind, std::string_view error,
                     const char *file, int line) {
    reply_reader reader;
    if (!reader.valid()) {
        print_error("reply_reader() is not valid\n");
        unit::record_failure(file, line);
        return;
    }
    expect_status_at(reader, status::incomplete, file, line);  // nothing fed yet
    feed_at(reader, bytes, file, line);
    expect_reply_at(reader, kind, error, file, line);
    expect_status_at(reader, status::incomplete, file, line);
}

#define check_single(bytes, kind) check_single_at((bytes), (kind), "", __FILE__, __LINE__)
#define check_single_error(bytes, text) \
    check_single_at((bytes), reply_kind::error, (text), __FILE__, __LINE__)

void test_status_reply(void **) {
    check_single("+OK\r\n", reply_kind::status);
    check_single("+PONG\r\n", reply_kind::status);
    check_single("+\r\n", reply_kind::status);
}

void test_error_reply_keeps_its_text(void **) {
    check_single_error("-WRONGPASS invalid username-password pair\r\n",
                       "WRONGPASS invalid username-password pair");
    check_single_error("-NOAUTH Authentication required.\r\n", "NOAUTH Authentication required.");
    check_single_error("-ERR\r\n", "ERR");
    check_single_error("-\r\n", "");
    check_single_error("-ERR a\0b\r\n"sv, "ERR a\0b"sv);
}

void test_bulk_string_reply(void **) {
    check_single("$5\r\nhello\r\n", reply_kind::string);
    check_single("$0\r\n\r\n", reply_kind::string);
    // CR LF inside a bulk string is data: still one reply.
    check_single("$4\r\n\r\n\r\n\r\n", reply_kind::string);
    check_single("$12\r\n*1\r\n-ERR x\r\n\r\n", reply_kind::string);
    check_single("$3\r\n\0\xff\n\r\n"sv, reply_kind::string);
}

// XADD answers with the new entry's ID as a bulk string.
void test_xadd_id_reply(void **) {
    check_single("$15\r\n1700000000000-0\r\n", reply_kind::string);
}

void test_integer_reply(void **) {
    check_single(":42\r\n", reply_kind::integer);
    check_single(":0\r\n", reply_kind::integer);
    check_single(":-1\r\n", reply_kind::integer);
    check_single(":9223372036854775807\r\n", reply_kind::integer);
}

// The value of a top-level integer is kept (the shared limit's answer).
void test_integer_value(void **) {
    reply_reader reader;
    feed_bytes(reader, ":42\r\n:-3\r\n*2\r\n:7\r\n:8\r\n+OK\r\n:9223372036854775807\r\n");
    for (long long want : {42LL, -3LL, -1LL, 0LL, 9223372036854775807LL}) {
        redis_reply reply{};
        check(reader.next(reply) == status::reply);
        if (want == -1) {  // the array: its elements' values are not the reply's
            check(reply.kind == reply_kind::array);
            check_eq(reply.integer, 0);
        } else if (want == 0) {
            check(reply.kind == reply_kind::status);
            check_eq(reply.integer, 0);
        } else {
            check(reply.kind == reply_kind::integer);
            check_eq(reply.integer, want);
        }
    }
}

void test_nil_reply(void **) {
    check_single("$-1\r\n", reply_kind::nil);
    check_single("*-1\r\n", reply_kind::nil);
}

void test_array_is_one_top_level_reply(void **) {
    check_single("*2\r\n$1\r\na\r\n$1\r\nb\r\n", reply_kind::array);
    check_single("*0\r\n", reply_kind::array);
    check_single("*3\r\n:1\r\n+OK\r\n$-1\r\n", reply_kind::array);
    check_single("*2\r\n*2\r\n:1\r\n:2\r\n*1\r\n*0\r\n", reply_kind::array);
    // XREAD-like: stream name, entries, each an ID and field/value pairs.
    check_single("*1\r\n*2\r\n$1\r\ns\r\n*1\r\n*2\r\n$15\r\n1700000000000-0\r\n"
                 "*2\r\n$5\r\nemail\r\n$5\r\na@b.c\r\n",
                 reply_kind::array);
}

// EXEC answers with an array whose elements may be errors: the top-level
// reply is still an array, with no error text.
void test_error_inside_array_is_not_an_error(void **) {
    check_single("*1\r\n-ERR x\r\n", reply_kind::array);
    check_single("*2\r\n+OK\r\n-WRONGTYPE Operation against a key\r\n", reply_kind::array);
    check_single("*2\r\n*1\r\n-ERR deep\r\n-ERR y\r\n", reply_kind::array);

    // ... and the top-level error after it is reported as such.
    reply_reader reader;
    feed_bytes(reader, "*1\r\n-ERR x\r\n-ERR y\r\n+OK\r\n");
    expect_reply(reader, reply_kind::array);
    expect_error(reader, "ERR y");
    expect_reply(reader, reply_kind::status);
    expect_incomplete(reader);
}

void test_several_replies_in_one_feed(void **) {
    reply_reader reader;
    feed_bytes(reader,
         "+OK\r\n"
         "-ERR first\r\n"
         "$5\r\nhello\r\n"
         ":42\r\n"
         "$-1\r\n"
         "*2\r\n$1\r\na\r\n$1\r\nb\r\n"
         "-ERR second\r\n"
         "$15\r\n1700000000000-0\r\n"
         "*1\r\n-ERR x\r\n"
         "+QUEUED\r\n");
    expect_reply(reader, reply_kind::status);
    expect_error(reader, "ERR first");
    expect_reply(reader, reply_kind::string);
    expect_reply(reader, reply_kind::integer);
    expect_reply(reader, reply_kind::nil);
    expect_reply(reader, reply_kind::array);
    expect_error(reader, "ERR second");
    expect_reply(reader, reply_kind::string);
    expect_reply(reader, reply_kind::array);
    expect_reply(reader, reply_kind::status);
    expect_incomplete(reader);
    expect_incomplete(reader);

    // More bytes later: the reader goes on.
    feed_bytes(reader, ":1\r\n");
    expect_reply(reader, reply_kind::integer);
    expect_incomplete(reader);
}

// Each reply fed one byte at a time: nothing until its last byte, then the
// reply, once.
void test_replies_split_byte_by_byte(void **) {
    struct row {
        std::string_view bytes;
        reply_kind kind;
        std::string_view error;
    };
    const row rows[] = {
        {"+OK\r\n", reply_kind::status, ""},
        {"-WRONGPASS invalid username-password pair\r\n", reply_kind::error,
         "WRONGPASS invalid username-password pair"},
        {"$5\r\nhello\r\n", reply_kind::string, ""},
        {"$4\r\n\r\n\r\n\r\n", reply_kind::string, ""},
        {":42\r\n", reply_kind::integer, ""},
        {"$-1\r\n", reply_kind::nil, ""},
        {"*-1\r\n", reply_kind::nil, ""},
        {"*2\r\n$1\r\na\r\n$1\r\nb\r\n", reply_kind::array, ""},
        {"*1\r\n-ERR x\r\n", reply_kind::array, ""},
        {"*2\r\n*1\r\n:1\r\n-ERR y\r\n", reply_kind::array, ""},
        {"$15\r\n1700000000000-0\r\n", reply_kind::string, ""},
    };
    reply_reader reader;
    for (const row &r : rows) {
        for (std::size_t i = 0; i < r.bytes.size(); ++i) {
            feed_bytes(reader, r.bytes.substr(i, 1));
            if (i + 1 < r.bytes.size()) {
                redis_reply reply{};
                status got = reader.next(reply);
                if (got != status::incomplete) {
                    print_error("\"%s\": after %zu of %zu bytes next() gave %s\n",
                                unit::printable(r.bytes).c_str(), i + 1, r.bytes.size(),
                                status_name(got));
                    unit::record_failure(__FILE__, __LINE__);
                }
            }
        }
        expect_reply_at(reader, r.kind, r.error, __FILE__, __LINE__);
        expect_incomplete(reader);
    }
}

// Replies split at every possible point into two feeds, with next() called
// in between.
void test_replies_split_at_every_point(void **) {
    constexpr std::string_view stream =
        "-ERR first\r\n*2\r\n$1\r\na\r\n-ERR nested\r\n:7\r\n-ERR last\r\n";
    for (std::size_t cut = 0; cut <= stream.size(); ++cut) {
        reply_reader reader;
        feed_bytes(reader, stream.substr(0, cut));
        int seen = 0;
        const auto drain = [&] {
            redis_reply reply{};
            while (reader.next(reply) == status::reply) {
                const reply_kind expected_kinds[] = {reply_kind::error, reply_kind::array,
                                                     reply_kind::integer, reply_kind::error};
                const std::string_view expected_errors[] = {"ERR first", "", "", "ERR last"};
                if (!check(seen < 4)) return;
                if (reply.kind != expected_kinds[seen] || reply.error != expected_errors[seen]) {
                    print_error("cut at %zu: reply %d is a %s reply \"%s\"\n", cut, seen,
                                kind_name(reply.kind), unit::printable(reply.error).c_str());
                    unit::record_failure(__FILE__, __LINE__);
                }
                ++seen;
            }
        };
        drain();
        feed_bytes(reader, stream.substr(cut));
        drain();
        if (seen != 4) {
            print_error("cut at %zu: %d replies, expected 4\n", cut, seen);
            unit::record_failure(__FILE__, __LINE__);
        }
        expect_incomplete(reader);
    }
}

// A bulk string as large as the limit, fed in chunks: read whole, and what
// the reader holds meanwhile is the string so far.
void test_large_bulk_string(void **) {
    const std::size_t size = resend::reply_limits{}.bulk;
    const std::string value(size, 'v');
    const std::string bytes = "$" + std::to_string(size) + "\r\n" + value + "\r\n+OK\r\n";
    reply_reader reader;
    for (std::size_t at = 0; at < bytes.size(); at += 4096) {
        feed_bytes(reader, std::string_view(bytes).substr(at, 4096));
        if (at + 4096 < bytes.size() - 5) expect_incomplete(reader);
        check(reader.buffered() <= at + 4096);
    }
    expect_reply(reader, reply_kind::string);
    expect_reply(reader, reply_kind::status);
    expect_incomplete(reader);
    check_eq(reader.buffered(), 0u);
}

// next() gives the replies before `bytes` passes a limit, then
// protocol_error with `why`; the reader takes no more bytes.
void check_over_limit_at(reply_reader &reader, std::string_view bytes, int replies_before,
                         std::string_view why, const char *file, int line) {
    feed_at(reader, bytes, file, line);
    for (int i = 0; i < replies_before; ++i) {
        redis_reply reply{};
        status got = reader.next(reply);
        if (got != status::reply) {
            print_error("reply %d: next() gave %s\n", i, status_name(got));
            unit::record_failure(file, line);
        }
    }
    expect_status_at(reader, status::protocol_error, file, line);
    expect_status_at(reader, status::protocol_error, file, line);
    unit::check_bytes_equal(reader.failure(), why, "failure()", file, line);
    if (reader.feed("+OK\r\n", 5)) {
        print_error("feed() took bytes after a reply over the limits\n");
        unit::record_failure(file, line);
    }
}

#define check_over_limit(reader, bytes, before, why) \
    check_over_limit_at((reader), (bytes), (before), (why), __FILE__, __LINE__)

constexpr std::string_view bulk_too_long =
    "a reply over the module's limits: a bulk string longer than 65536";
constexpr std::string_view too_many_elements =
    "a reply over the module's limits: an aggregate with more elements than 65536";

// A rogue server's `$2000000000` fails at its header: the body is never
// buffered, however much of it follows.
void test_bulk_over_the_limit_fails_at_its_header(void **) {
    {
        reply_reader reader;
        check_over_limit(reader, "$2000000000\r\n", 0, bulk_too_long);
        const std::string stream(4096, 'x');
        for (int i = 0; i < 100; ++i) check(!reader.feed(stream.data(), stream.size()));
        check(reader.buffered() < 16);
    }
    {
        // At the byte that passes it, not at the header's end.
        reply_reader reader;
        feed_bytes(reader, "$6553");
        expect_incomplete(reader);
        check_over_limit(reader, "70", 0, bulk_too_long);
        check(reader.buffered() <= 5);
    }
    {
        // The limit itself is within it.
        reply_reader reader;
        feed_bytes(reader, "$65536\r\n");
        expect_incomplete(reader);
    }
    {
        // Replies before it in the same bytes come out first.
        reply_reader reader;
        check_over_limit(reader, "+OK\r\n$1\r\nx\r\n:1\r\n$100000\r\nxxxx", 3, bulk_too_long);
    }
    {
        // Inside an array: the array never completes.
        reply_reader reader;
        check_over_limit(reader, "*2\r\n:1\r\n$2000000000\r\n", 0, bulk_too_long);
    }
    {
        // A negative length is nil (or hiredis's protocol error), never a body.
        reply_reader reader;
        feed_bytes(reader, "$-1\r\n$-2000000000\r\n");
        expect_reply(reader, reply_kind::nil);
        expect_protocol_error(reader);
        check_bytes_eq(std::string_view(reader.failure()), "protocol error"sv);
    }
}

// A huge array header fails at once; elements streamed after it are not
// read one by one until a timeout.
void test_aggregate_over_the_limit_fails_at_its_header(void **) {
    {
        reply_reader reader;
        check_over_limit(reader, "*2000000000\r\n:1\r\n:1\r\n", 0, too_many_elements);
    }
    {
        reply_reader reader;
        check_over_limit(reader, ":1\r\n*3\r\n*65537\r\n", 1, too_many_elements);
    }
    {
        // CLUSTER SLOTS of a cluster with every slot its own range.
        std::string bytes = "*16384\r\n";
        for (int slot = 0; slot < 16384; ++slot) {
            bytes += "*3\r\n:" + std::to_string(slot) + "\r\n:" + std::to_string(slot) +
                     "\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$40\r\n" + std::string(40, 'a') +
                     "\r\n";
        }
        reply_reader reader;
        for (std::size_t at = 0; at < bytes.size(); at += 4096) {
            feed_bytes(reader, std::string_view(bytes).substr(at, 4096));
            redis_reply reply{};
            if (at + 4096 < bytes.size()) check(reader.next(reply) == status::incomplete);
        }
        expect_reply(reader, reply_kind::array);
        expect_incomplete(reader);
    }
}

// A line (status, error, integer, a header) that never ends is cut off at
// the line limit: here a small one.
void test_line_over_the_limit(void **) {
    const resend::reply_limits limits{.bulk = 64, .elements = 8, .line = 16};
    const std::string_view why = "a reply over the module's limits: a line longer than 16";
    {
        reply_reader reader(limits);
        feed_bytes(reader, "+" + std::string(16, 'a') + "\r\n-" + std::string(15, 'b') + "\r\r\n");
        expect_reply(reader, reply_kind::status);
        expect_error(reader, "b"s.append(14, 'b') + "\r");
        check_over_limit(reader, "-" + std::string(17, 'c'), 0, why);
        check(reader.buffered() <= 17);
    }
    {
        // A line without its LF goes on: the CR is then part of it.
        reply_reader reader(limits);
        check_over_limit(reader, "+" + std::string(16, 'a') + "\rx", 0, why);
    }
    {
        // A header's digits are a line too (here within the bulk limit).
        reply_reader reader(limits);
        check_over_limit(reader, "$" + std::string(17, '0'), 0, why);
    }
    {
        // The other limits, small.
        reply_reader reader(limits);
        check_over_limit(reader, "$64\r\n" + std::string(66, 'x') + "$65\r\n", 1,
                         "a reply over the module's limits: a bulk string longer than 64");
        reply_reader array(limits);
        check_over_limit(array, "*8\r\n*9\r\n", 0,
                         "a reply over the module's limits: an aggregate with more elements than 8");
    }
}

// A bulk string's body is data: headers inside it are not looked at, also
// split across feeds.
void test_bulk_body_is_not_scanned(void **) {
    const std::string_view bytes = "$17\r\n$2000000000\r\n*9\r\n\r\n+OK\r\n";
    for (std::size_t cut = 0; cut <= bytes.size(); ++cut) {
        reply_reader reader;
        feed_bytes(reader, bytes.substr(0, cut));
        redis_reply reply{};
        int replies = 0;
        while (reader.next(reply) == status::reply) ++replies;
        feed_bytes(reader, bytes.substr(cut));
        while (reader.next(reply) == status::reply) ++replies;
        if (replies != 2) {
            print_error("cut at %zu: %d replies\n", cut, replies);
            unit::record_failure(__FILE__, __LINE__);
        }
    }
}

// RESP3 kinds are never asked for; still, their lengths are held to the
// limits as RESP2's are (hiredis 1.x reads them), a map's pairs counting twice.
void test_scanner_knows_resp3_lengths(void **) {
    const resend::reply_limits limits{};
    const std::string_view over[] = {"=65537\r\n", "!65537\r\n", "~65537\r\n", ">65537\r\n",
                                     "%32769\r\n", "|32769\r\n"};
    for (std::string_view bytes : over) {
        resend::reply_scanner scanner(limits);
        check_eq(scanner.scan(bytes.data(), bytes.size()), 5u);
        check(scanner.exceeded() != nullptr);
        check_eq(scanner.scan("+OK\r\n", 5), 0u);
    }
    const std::string_view within[] = {"=65536\r\n", "~65536\r\n", "%32768\r\n", "_\r\n",
                                       ",2000000000\r\n", "#t\r\n", "(2000000000\r\n"};
    for (std::string_view bytes : within) {
        resend::reply_scanner scanner(limits);
        check_eq(scanner.scan(bytes.data(), bytes.size()), bytes.size());
        check(scanner.exceeded() == nullptr);
    }
}

// The error text is kept in a fixed buffer: a longer text is cut to it.
void test_long_error_is_truncated(void **) {
    std::string text = "ERR ";
    while (text.size() < 300) text += static_cast<char>('a' + text.size() % 26);

    for (std::size_t length : {127u, 128u, 129u, 200u, 300u}) {
        const std::string error = text.substr(0, length);
        reply_reader reader;
        feed_bytes(reader, "-" + error + "\r\n+OK\r\n");
        redis_reply reply{};
        if (check(reader.next(reply) == status::reply)) {
            check_eq(static_cast<int>(reply.kind), static_cast<int>(reply_kind::error));
            const std::size_t kept = length < 128 ? length : 128;
            check_eq(reply.error.size(), kept);
            check_bytes_eq(reply.error, std::string_view(error).substr(0, kept));
        }
        // The rest of the long line was consumed, not taken for a reply.
        expect_reply(reader, reply_kind::status);
        expect_incomplete(reader);
    }

    // A short error after a long one has only its own text.
    reply_reader reader;
    feed_bytes(reader, "-" + text + "\r\n-ERR x\r\n");
    redis_reply reply{};
    check(reader.next(reply) == status::reply);
    expect_error(reader, "ERR x");
}

// A later reply that is not an error has no error text.
void test_error_text_does_not_carry_over(void **) {
    reply_reader reader;
    feed_bytes(reader, "-ERR one\r\n+OK\r\n-ERR two\r\n$1\r\nx\r\n-ERR three\r\n*1\r\n-ERR four\r\n");
    expect_error(reader, "ERR one");
    expect_reply(reader, reply_kind::status);
    expect_error(reader, "ERR two");
    expect_reply(reader, reply_kind::string);
    expect_error(reader, "ERR three");
    expect_reply(reader, reply_kind::array);
    expect_incomplete(reader);
}

void test_protocol_error(void **) {
    {
        reply_reader reader;
        feed_bytes(reader, "?bad\r\n");
        expect_protocol_error(reader);
        // The reader stays in error until reset(); feed()'s result then is not
        // checked here (hiredis refuses bytes once in error).
        reader.feed("+OK\r\n", 5);
        expect_protocol_error(reader);
    }
    {
        // After good replies: those come out first.
        reply_reader reader;
        feed_bytes(reader, "+OK\r\n:1\r\n!nope\r\n+OK\r\n");
        expect_reply(reader, reply_kind::status);
        expect_reply(reader, reply_kind::integer);
        expect_protocol_error(reader);
    }
    {
        // A bad byte inside an array.
        reply_reader reader;
        feed_bytes(reader, "*2\r\n:1\r\n?x\r\n");
        expect_protocol_error(reader);
    }
    {
        // A bad bulk or array length.
        reply_reader reader;
        feed_bytes(reader, "*x\r\n");
        expect_protocol_error(reader);
    }
}

void test_reset_starts_from_scratch(void **) {
    {
        // After a protocol error.
        reply_reader reader;
        feed_bytes(reader, "?bad\r\n");
        expect_protocol_error(reader);
        reader.reset();
        check(reader.valid());
        expect_incomplete(reader);
        feed_bytes(reader, "+OK\r\n-WRONGPASS invalid username-password pair\r\n");
        expect_reply(reader, reply_kind::status);
        expect_error(reader, "WRONGPASS invalid username-password pair");
        expect_incomplete(reader);
    }
    {
        // Buffered bytes of a partial reply are forgotten.
        reply_reader reader;
        feed_bytes(reader, "$5\r\nhel");
        expect_incomplete(reader);
        reader.reset();
        feed_bytes(reader, "+OK\r\n");
        expect_reply(reader, reply_kind::status);
        expect_incomplete(reader);
    }
    {
        // Inside an array.
        reply_reader reader;
        feed_bytes(reader, "*3\r\n:1\r\n");
        expect_incomplete(reader);
        reader.reset();
        feed_bytes(reader, ":1\r\n:2\r\n");
        expect_reply(reader, reply_kind::integer);
        expect_reply(reader, reply_kind::integer);
        expect_incomplete(reader);
    }
    {
        // After a reply over the limits.
        reply_reader reader;
        feed_bytes(reader, "$2000000000\r\n");
        expect_protocol_error(reader);
        reader.reset();
        feed_bytes(reader, "$1\r\nx\r\n");
        expect_reply(reader, reply_kind::string);
        expect_incomplete(reader);
        check_bytes_eq(std::string_view(reader.failure()), "protocol error"sv);
    }
    {
        // Complete replies not yet read are forgotten too.
        reply_reader reader;
        feed_bytes(reader, "+OK\r\n+OK\r\n");
        reader.reset();
        expect_incomplete(reader);
        feed_bytes(reader, "-ERR after\r\n");
        expect_error(reader, "ERR after");
        expect_incomplete(reader);
    }
    {
        // Many times over.
        reply_reader reader;
        for (int i = 0; i < 100; ++i) {
            feed_bytes(reader, "*2\r\n:1\r\n");
            if (i % 2 == 0) feed_bytes(reader, "?");
            reader.reset();
        }
        feed_bytes(reader, ":1\r\n");
        expect_reply(reader, reply_kind::integer);
        expect_incomplete(reader);
    }
}

// Each reader reports its own replies, even fed in turn.
void test_readers_are_independent(void **) {
    reply_reader a;
    reply_reader b;
    feed_bytes(a, "*1\r\n-ERR");
    feed_bytes(b, "-ERR b\r\n");
    expect_incomplete(a);
    feed_bytes(a, " a\r\n-ERR a\r\n");
    expect_error(b, "ERR b");
    expect_reply(a, reply_kind::array);
    expect_error(a, "ERR a");
    expect_incomplete(a);
    expect_incomplete(b);
}

// hiredis 0.14 reads arrays nested a few levels deep and calls deeper ones a
// protocol error; hiredis 1.x grows its stack and reads them. Either way, no
// crash, and the reader says which.
void test_nesting_depth(void **) {
    {
        reply_reader reader;
        std::string bytes;
        for (int i = 0; i < 7; ++i) bytes += "*1\r\n";
        bytes += "-ERR deep\r\n";
        feed_bytes(reader, bytes);
        expect_reply(reader, reply_kind::array);
        expect_incomplete(reader);
    }
    {
        reply_reader reader;
        std::string bytes;
        for (int i = 0; i < 20; ++i) bytes += "*1\r\n";
        bytes += ":1\r\n";
        feed_bytes(reader, bytes);
#if HIREDIS_MAJOR >= 1
        expect_reply(reader, reply_kind::array);
        expect_incomplete(reader);
#else
        expect_protocol_error(reader);
#endif
    }
}

// RESP3 doubles and booleans are never asked for (no HELLO 3), but hiredis
// 1.x reads them: each is noted as its RESP2 counterpart so that a stray one
// cannot pass for the previous reply's kind. hiredis 0.14 does not know them.
void test_resp3_scalars(void **) {
    reply_reader reader;
    feed_bytes(reader, "-ERR before\r\n,3.25\r\n#t\r\n");
    expect_error(reader, "ERR before");
#if HIREDIS_MAJOR >= 1
    expect_reply(reader, reply_kind::string);
    expect_reply(reader, reply_kind::integer);
    expect_incomplete(reader);
#else
    expect_protocol_error(reader);
#endif
}

void test_refusals_that_say_later(void **) {
    check(resend::redis_cannot_write_now("LOADING Redis is loading the dataset in memory"));
    check(resend::redis_cannot_write_now("OOM command not allowed when used memory > 'maxmemory'."));
    check(resend::redis_cannot_write_now("READONLY You can't write against a read only replica."));
    check(resend::redis_cannot_write_now("MASTERDOWN Link with MASTER is down"));
    check(resend::redis_cannot_write_now("OOM"));
    check(!resend::redis_cannot_write_now("WRONGTYPE Operation against a key holding the wrong kind of value"));
    check(!resend::redis_cannot_write_now("ERR unknown command"));
    check(!resend::redis_cannot_write_now("NOAUTH Authentication required."));
    check(!resend::redis_cannot_write_now("LOADINGX"));
    check(!resend::redis_cannot_write_now(""));
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_status_reply),
        guarded_test(test_error_reply_keeps_its_text),
        guarded_test(test_bulk_string_reply),
        guarded_test(test_xadd_id_reply),
        guarded_test(test_integer_reply),
        guarded_test(test_integer_value),
        guarded_test(test_nil_reply),
        guarded_test(test_array_is_one_top_level_reply),
        guarded_test(test_error_inside_array_is_not_an_error),
        guarded_test(test_several_replies_in_one_feed),
        guarded_test(test_replies_split_byte_by_byte),
        guarded_test(test_replies_split_at_every_point),
        guarded_test(test_large_bulk_string),
        guarded_test(test_bulk_over_the_limit_fails_at_its_header),
        guarded_test(test_aggregate_over_the_limit_fails_at_its_header),
        guarded_test(test_line_over_the_limit),
        guarded_test(test_bulk_body_is_not_scanned),
        guarded_test(test_scanner_knows_resp3_lengths),
        guarded_test(test_long_error_is_truncated),
        guarded_test(test_error_text_does_not_carry_over),
        guarded_test(test_protocol_error),
        guarded_test(test_reset_starts_from_scratch),
        guarded_test(test_readers_are_independent),
        guarded_test(test_nesting_depth),
        guarded_test(test_resp3_scalars),
        guarded_test(test_refusals_that_say_later),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
