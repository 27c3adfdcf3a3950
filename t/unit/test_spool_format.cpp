// The spool's segment format: CRC32C against published vectors, records
// written and read back, and every way a torn or damaged record is told.
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/spool_format.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;
namespace spool = resend::spool;

namespace {

std::string record_of(std::vector<std::string_view> items) {
    std::string out(spool::record_size(items), '\0');
    char *end = spool::write_record(out.data(), items);
    check_eq(end - out.data(), out.size());
    return out;
}

void test_crc32c_known_vectors(void **) {
    // RFC 3720 B.4 and the usual check value.
    check_eq(spool::crc32c("123456789", 9), 0xE3069283u);
    check_eq(spool::crc32c("", 0), 0u);
    std::string zeros(32, '\0');
    check_eq(spool::crc32c(zeros.data(), zeros.size()), 0x8A9136AAu);
    std::string ones(32, '\xff');
    check_eq(spool::crc32c(ones.data(), ones.size()), 0x62A8AB43u);
    std::string ascending;
    for (int i = 0; i < 32; ++i) ascending += static_cast<char>(i);
    check_eq(spool::crc32c(ascending.data(), ascending.size()), 0x46DD794Eu);
    // Continued in two parts gives the same value.
    check_eq(spool::crc32c("6789", 4, spool::crc32c("12345", 5)), 0xE3069283u);
}

void test_header_round_trip(void **) {
    char header[spool::header_size];
    spool::write_header(header, 0x0102030405060708ull);
    std::uint64_t acked = 0;
    unsigned version = 0;
    check(spool::read_header(header, sizeof(header), &acked, &version));
    check_eq(acked, 0x0102030405060708ull);
    check_eq(version, 2u);
    check(!spool::read_header(header, sizeof(header) - 1, &acked, &version));
    // A segment an earlier version wrote is still read (as version 1).
    std::memcpy(header, spool::magic_v1.data(), spool::magic_v1.size());
    check(spool::read_header(header, sizeof(header), &acked, &version));
    check_eq(version, 1u);
    header[0] = 'X';
    check(!spool::read_header(header, sizeof(header), &acked, &version));
}

void test_items_with_limits(void **) {
    std::vector<std::string_view> items = {"127.0.0.1:6379", "s", "1000", "2", "0",
                                           "k1", "1000", "60000", "2000",
                                           "k2", "3000", "3600000", "0",
                                           "email", "a@b.c"};
    spool::kept_record record;
    check(spool::read_items(items, 2, &record));
    check(record.address == "127.0.0.1:6379" && record.stream == "s" && record.maxlen == "1000");
    check(record.dry_run == "0");
    check_eq(record.limits.size(), 8u);
    check(record.limits[4] == "k2" && record.limits[7] == "0");
    check_eq(record.fields.size(), 2u);
    check(record.fields[1] == "a@b.c");

    // No limits: the fields follow the flag.
    std::vector<std::string_view> plain = {"a", "s", "1000", "0", "0", "email", "x"};
    check(spool::read_items(plain, 2, &record));
    check(record.limits.empty() && record.fields.size() == 2);
    // Version 1: the fields follow the maxlen.
    check(spool::read_items(plain, 1, &record));
    check(record.limits.empty() && record.fields.size() == 4 && record.fields[0] == "0");

    // A count the items cannot hold, or not a number: not a record.
    std::vector<std::string_view> short_of_limits = {"a", "s", "1000", "3", "0", "k", "1", "2", "3"};
    check(!spool::read_items(short_of_limits, 2, &record));
    for (std::string_view count : {"", "x", "-1", "1000", " 1"}) {
        std::vector<std::string_view> bad = {"a", "s", "1000", count, "0", "k", "1", "2", "3"};
        check(!spool::read_items(bad, 2, &record));
    }
    std::vector<std::string_view> too_few = {"a", "s", "1000", "0"};
    check(!spool::read_items(too_few, 2, &record));
    check(!spool::read_items(std::vector<std::string_view>{"a", "s"}, 1, &record));
}

void test_record_round_trip(void **) {
    std::vector<std::string_view> items = {"127.0.0.1:6379", "resend_confirmation", "1000000",
                                           "email", "User@Example.com", "ip", "203.0.113.7",
                                           "request_id", "0123456789abcdef0123456789abcdef",
                                           "received_at", "1732550400000", "empty", ""};
    std::string bytes = record_of(items);
    std::string twice = bytes + bytes;
    std::string_view read[spool::max_items];
    std::size_t size = 0, count = 0;
    check(spool::read_record(twice.data(), twice.size(), &size, read, &count) == spool::scan::record);
    check_eq(size, bytes.size());
    check_eq(count, items.size());
    for (std::size_t i = 0; i < items.size(); ++i) check_bytes_eq(read[i], items[i]);
    // Binary-safe: any byte in a value.
    std::string binary("\0\r\n\xff*1\r\n"sv);
    std::string one = record_of({binary});
    check(spool::read_record(one.data(), one.size(), &size, read, &count) == spool::scan::record);
    check_bytes_eq(read[0], binary);
}

void test_every_torn_prefix_is_incomplete(void **) {
    std::string bytes = record_of({"a", "bc", "email", "x@example.com"});
    std::string_view read[spool::max_items];
    std::size_t size = 0, count = 0;
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        check(spool::read_record(bytes.data(), n, &size, read, &count) == spool::scan::incomplete);
    }
}

void test_every_flipped_bit_is_corrupt_or_incomplete(void **) {
    std::string bytes = record_of({"a", "bc", "email", "x@example.com"});
    std::string_view read[spool::max_items];
    std::size_t size = 0, count = 0;
    for (std::size_t i = 0; i < bytes.size() * 8; ++i) {
        std::string damaged = bytes;
        damaged[i / 8] = static_cast<char>(damaged[i / 8] ^ (1 << (i % 8)));
        auto result = spool::read_record(damaged.data(), damaged.size(), &size, read, &count);
        // A longer length reads as a torn record; nothing reads as intact.
        check(result != spool::scan::record);
    }
}

void test_impossible_lengths_are_corrupt(void **) {
    std::string_view read[spool::max_items];
    std::size_t size = 0, count = 0;
    std::string zeros(64, '\0');  // a hole in a file (length 0)
    check(spool::read_record(zeros.data(), zeros.size(), &size, read, &count) == spool::scan::corrupt);
    std::string huge = "\xff\xff\xff\x7f" "abcd"s + std::string(64, 'x');
    check(spool::read_record(huge.data(), huge.size(), &size, read, &count) == spool::scan::corrupt);
}

void test_a_payload_that_lies_about_its_items_is_corrupt(void **) {
    // A valid CRC over a payload whose item sizes do not add up.
    std::string payload = "\x02\x00\x01\x00\x00\x00" "a" "\x09\x00\x00\x00" "b"s;
    std::string bytes(8, '\0');
    auto put = [&](std::size_t at, std::uint32_t v) {
        for (int i = 0; i < 4; ++i) bytes[at + i] = static_cast<char>(v >> (8 * i));
    };
    put(0, static_cast<std::uint32_t>(payload.size()));
    put(4, spool::crc32c(payload.data(), payload.size()));
    bytes += payload;
    std::string_view read[spool::max_items];
    std::size_t size = 0, count = 0;
    check(spool::read_record(bytes.data(), bytes.size(), &size, read, &count) == spool::scan::corrupt);
}

void test_too_many_or_too_large_items_are_refused(void **) {
    std::vector<std::string_view> many(spool::max_items + 1, "x");
    check_eq(spool::record_size(many), 0u);
    std::string big(spool::max_payload, 'x');
    check_eq(spool::record_size(std::vector<std::string_view>{big}), 0u);
    check(spool::record_size(std::vector<std::string_view>{"x"}) == spool::record_overhead + 2 + 4 + 1);
}

// Three records, as a segment holds them after its header.
struct three_records {
    std::string first = record_of({"127.0.0.1:6379", "s", "1000", "0", "0", "request_id", "one"});
    std::string second = record_of({"127.0.0.1:6379", "s", "1000", "0", "0", "request_id", "two",
                                    "email", "second@example.com"});
    std::string third = record_of({"127.0.0.1:6379", "s", "1000", "0", "0", "request_id", "three"});
};

void test_after_any_flipped_bit_the_next_record_is_found(void **) {
    three_records r;
    std::string_view read[spool::max_items];
    std::size_t size = 0, count = 0;
    // Every bit of the middle record, its length and CRC included: the
    // record is not read, and the scan lands on the third one exactly.
    for (std::size_t i = 0; i < r.second.size() * 8; ++i) {
        std::string damaged = r.second;
        damaged[i / 8] = static_cast<char>(damaged[i / 8] ^ (1 << (i % 8)));
        std::string rest = damaged + r.third;
        check(spool::read_record(rest.data(), rest.size(), &size, read, &count) != spool::scan::record);
        check_eq(spool::next_record_start(rest.data(), rest.size(), true), r.second.size());
        check(spool::read_record(rest.data() + r.second.size(), r.third.size(), &size, read, &count) ==
              spool::scan::record);
        check_bytes_eq(read[6], "three"sv);
    }
}

void test_a_length_that_ends_on_a_later_record_skips_nothing(void **) {
    // The damaged length points past the second record to the third: the
    // second is found all the same.
    three_records r;
    std::string first = r.first;
    std::uint32_t length = static_cast<std::uint32_t>(first.size() - spool::record_overhead + r.second.size());
    for (int i = 0; i < 4; ++i) first[i] = static_cast<char>(length >> (8 * i));
    std::string segment = first + r.second + r.third;
    check_eq(spool::next_record_start(segment.data(), segment.size(), true), first.size());
}

void test_garbage_between_records_is_stepped_over(void **) {
    three_records r;
    std::string text = "email\x05\x00\x00\x00x@example.com\r\n\x00\x00\x10\x00 and more";
    for (std::string garbage : {std::string(100, '\0'), std::string(100, '\xff'), text}) {
        std::string rest = garbage + r.third;
        check_eq(spool::next_record_start(rest.data(), rest.size(), true), garbage.size());
    }
}

void test_at_the_end_nothing_is_found_unless_more_may_come(void **) {
    three_records r;
    std::string torn = r.first.substr(0, r.first.size() - 3);
    // The segment ends there: nothing follows.
    check_eq(spool::next_record_start(torn.data(), torn.size(), true), torn.size());
    // More bytes may follow: the first offset that needs them.
    std::size_t at = spool::next_record_start(torn.data(), torn.size(), false);
    check(at > 0 && at < torn.size());
    std::string_view read[spool::max_items];
    std::size_t size = 0, count = 0;
    check(spool::read_record(torn.data() + at, torn.size() - at, &size, read, &count) == spool::scan::incomplete);
    // Zeros, then a record cut short: the scan stops where it begins, or
    // just before (the zeros and its length may read as a longer length).
    std::string cut = std::string(40, '\0') + r.second.substr(0, 20);
    at = spool::next_record_start(cut.data(), cut.size(), false);
    check(at >= 37 && at <= 40);
    check(spool::read_record(cut.data() + at, cut.size() - at, &size, read, &count) == spool::scan::incomplete);
    check_eq(spool::next_record_start(cut.data(), cut.size(), true), cut.size());
    check_eq(spool::next_record_start("", 0, true), 0u);
    check_eq(spool::next_record_start("x", 1, true), 1u);
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_crc32c_known_vectors),
        guarded_test(test_header_round_trip),
        guarded_test(test_record_round_trip),
        guarded_test(test_items_with_limits),
        guarded_test(test_every_torn_prefix_is_incomplete),
        guarded_test(test_every_flipped_bit_is_corrupt_or_incomplete),
        guarded_test(test_impossible_lengths_are_corrupt),
        guarded_test(test_a_payload_that_lies_about_its_items_is_corrupt),
        guarded_test(test_too_many_or_too_large_items_are_refused),
        guarded_test(test_after_any_flipped_bit_the_next_record_is_found),
        guarded_test(test_a_length_that_ends_on_a_later_record_skips_nothing),
        guarded_test(test_garbage_between_records_is_stepped_over),
        guarded_test(test_at_the_end_nothing_is_found_unless_more_may_come),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
