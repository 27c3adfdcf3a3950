// Sentinel and Cluster topology: key slots (hash tags as Redis documents
// them), a command's first key, MOVED/ASK errors, and the replies of
// CLUSTER SLOTS, SENTINEL get-master-addr-by-name and ROLE as the reader
// keeps their elements (bytes as Redis 7 sends them).
#include <cstddef>
#include <string>
#include <string_view>

#include "core/redis_reply.hpp"
#include "core/redis_topology.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;

namespace {

using resend::redis_reply;
using resend::reply_kind;
using resend::reply_reader;

// `bytes` fed whole to `reader`: its one reply.
redis_reply read_one(reply_reader &reader, std::string_view bytes) {
    redis_reply reply{};
    check(reader.feed(bytes.data(), bytes.size()));
    check(reader.next(reply) == reply_reader::status::reply);
    return reply;
}

void test_key_slot(void **) {
    // The values CLUSTER KEYSLOT gives.
    check_eq(resend::key_slot("foo"), 12182);
    check_eq(resend::key_slot("bar"), 5061);
    check_eq(resend::key_slot("123456789"), 0x31c3 % 16384);
    check_eq(resend::key_slot(""), 0);
    // Hash tags: the first {...} with something in it.
    check_eq(resend::key_slot("{user1000}.following"), resend::key_slot("user1000"));
    check_eq(resend::key_slot("foo{bar}{zap}"), resend::key_slot("bar"));
    check_eq(resend::key_slot("foo{}{bar}"), resend::key_slot("foo{}{bar}"s));
    check(resend::key_slot("foo{}{bar}") != resend::key_slot("bar"));
    check_eq(resend::key_slot("foo{{bar}}zap"), resend::key_slot("{bar"));
    check_eq(resend::key_slot("{resend_confirmation}"), resend::key_slot("resend_confirmation"));
    check_eq(resend::key_slot("{resend_confirmation}:seen"), resend::key_slot("resend_confirmation"));
    check_eq(resend::key_slot("no{close"), resend::key_slot("no{close"s));
}

void test_first_key(void **) {
    std::string_view xadd[] = {"XADD", "stream", "*", "a", "b"};
    check_bytes_eq(resend::first_key(xadd), "stream");
    std::string_view evalsha[] = {"EVALSHA", "abc", "2", "{s}", "{s}:seen", "x"};
    check_bytes_eq(resend::first_key(evalsha), "{s}");
    std::string_view eval_lower[] = {"evalsha_ro", "abc", "1", "k"};
    check_bytes_eq(resend::first_key(eval_lower), "k");
    std::string_view no_keys[] = {"EVAL", "return 1", "0"};
    check_bytes_eq(resend::first_key(no_keys), "");
    std::string_view bad_count[] = {"EVAL", "return 1", "x", "k"};
    check_bytes_eq(resend::first_key(bad_count), "");
    std::string_view alone[] = {"PING"};
    check_bytes_eq(resend::first_key(alone), "");
}

void test_redirect(void **) {
    auto moved = resend::parse_redirect("MOVED 3999 127.0.0.1:6381");
    check(moved.kind == resend::redis_redirect::kind_t::moved);
    check_eq(moved.slot, 3999);
    check_bytes_eq(moved.to.host, "127.0.0.1");
    check_eq(moved.to.port, 6381);

    auto ask = resend::parse_redirect("ASK 16383 ::1:7000");
    check(ask.kind == resend::redis_redirect::kind_t::ask);
    check_eq(ask.slot, 16383);
    check_bytes_eq(ask.to.host, "::1");
    check_eq(ask.to.port, 7000);

    auto unknown_host = resend::parse_redirect("MOVED 1 :6380");  // the same host
    check(unknown_host.kind == resend::redis_redirect::kind_t::moved);
    check_bytes_eq(unknown_host.to.host, "");
    check_eq(unknown_host.to.port, 6380);

    for (std::string_view bad : {"MOVED"sv, "MOVED 16384 h:1"sv, "MOVED 1 h"sv, "MOVED 1 h:0"sv,
                                 "MOVED 1 h:65536"sv, "MOVEDX 1 h:1"sv, "ASKING 1 h:1"sv,
                                 "ERR MOVED 1 h:1"sv, "MOVED x h:1"sv, ""sv}) {
        if (!check(resend::parse_redirect(bad).kind == resend::redis_redirect::kind_t::none)) {
            print_error("    for \"%s\"\n", std::string(bad).c_str());
        }
    }
}

void test_not_master(void **) {
    check(resend::is_not_master("READONLY You can't write against a read only replica."));
    check(resend::is_not_master("MASTERDOWN Link with MASTER is down and replica-serve-stale-data is set to 'no'."));
    check(!resend::is_not_master("ERR wrong number of arguments"));
    check(!resend::is_not_master("READONLYX"));
    check(!resend::is_not_master("MOVED 1 h:1"));
}

// CLUSTER SLOTS of a three-master cluster, Redis 7 (with the node's
// metadata map as a fourth element, empty here), one range with a replica.
void test_cluster_slots(void **) {
    reply_reader reader;
    auto reply = read_one(reader,
                          "*3\r\n"
                          "*3\r\n:0\r\n:5460\r\n*4\r\n$9\r\n127.0.0.1\r\n:7001\r\n$4\r\naaaa\r\n*0\r\n"
                          "*4\r\n:5461\r\n:10922\r\n*4\r\n$9\r\n127.0.0.1\r\n:7002\r\n$4\r\nbbbb\r\n*0\r\n"
                          "*4\r\n$9\r\n127.0.0.1\r\n:7005\r\n$4\r\neeee\r\n*0\r\n"
                          "*3\r\n:10923\r\n:16383\r\n*3\r\n$1\r\n?\r\n:7003\r\n$4\r\ncccc\r\n");
    check(!reply.truncated);
    resend::slot_range ranges[4];
    std::size_t count = 0;
    check(resend::parse_cluster_slots(reply.elements, ranges, count));
    check_eq(count, 3);
    check_eq(ranges[0].first, 0);
    check_eq(ranges[0].last, 5460);
    check_bytes_eq(ranges[0].at.host, "127.0.0.1");
    check_eq(ranges[0].at.port, 7001);
    check_eq(ranges[0].replicas, 0);
    check_eq(ranges[1].first, 5461);
    check_eq(ranges[1].last, 10922);
    check_eq(ranges[1].at.port, 7002);  // the master, not its replica
    check_eq(ranges[1].replicas, 1);
    check_eq(ranges[2].first, 10923);
    check_eq(ranges[2].last, 16383);
    check_bytes_eq(ranges[2].at.host, "");  // "?": the node asked
    check_eq(ranges[2].at.port, 7003);

    // More ranges than room: refused, not cut short.
    resend::slot_range two[2];
    check(!resend::parse_cluster_slots(reply.elements, two, count));

    // Not CLUSTER SLOTS.
    check(!resend::parse_cluster_slots(read_one(reader, "+OK\r\n").elements, ranges, count));
    check(!resend::parse_cluster_slots(read_one(reader, "*1\r\n*3\r\n:5\r\n:1\r\n*2\r\n$1\r\nh\r\n:1\r\n").elements,
                                       ranges, count));  // last < first
    check(!resend::parse_cluster_slots(read_one(reader, "*1\r\n*3\r\n:0\r\n:16384\r\n*2\r\n$1\r\nh\r\n:1\r\n").elements,
                                       ranges, count));  // past the last slot
    check(!resend::parse_cluster_slots(read_one(reader, "*1\r\n*3\r\n:0\r\n:1\r\n*2\r\n$1\r\nh\r\n:0\r\n").elements,
                                       ranges, count));  // port 0
    check(resend::parse_cluster_slots(read_one(reader, "*0\r\n").elements, ranges, count));  // no slots yet
    check_eq(count, 0);
}

void test_master_address(void **) {
    reply_reader reader;
    resend::redis_endpoint at{};
    check(resend::parse_master_address(read_one(reader, "*2\r\n$9\r\n127.0.0.1\r\n$4\r\n6390\r\n").elements, at));
    check_bytes_eq(at.host, "127.0.0.1");
    check_eq(at.port, 6390);
    check(!resend::parse_master_address(read_one(reader, "*-1\r\n").elements, at));  // unknown master
    check(!resend::parse_master_address(read_one(reader, "$-1\r\n").elements, at));
    check(!resend::parse_master_address(read_one(reader, "*2\r\n$1\r\nh\r\n$1\r\nx\r\n").elements, at));
    check(!resend::parse_master_address(read_one(reader, "-ERR no such master\r\n").elements, at));
}

void test_role(void **) {
    reply_reader reader;
    resend::redis_role role{};
    check(resend::parse_role(read_one(reader, "*3\r\n$6\r\nmaster\r\n:3129659\r\n"
                                              "*2\r\n*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9001\r\n$7\r\n3129242\r\n"
                                              "*3\r\n$9\r\n127.0.0.1\r\n$4\r\n9002\r\n$7\r\n3129543\r\n").elements,
                             role));
    check_bytes_eq(role.role, "master");
    check_eq(role.replicas, 2);
    check(resend::parse_role(read_one(reader, "*3\r\n$6\r\nmaster\r\n:0\r\n*0\r\n").elements, role));
    check_eq(role.replicas, 0);
    check(resend::parse_role(read_one(reader, "*5\r\n$5\r\nslave\r\n$9\r\n127.0.0.1\r\n:9000\r\n"
                                              "$9\r\nconnected\r\n:3167038\r\n").elements,
                             role));
    check_bytes_eq(role.role, "slave");
    check(!resend::parse_role(read_one(reader, "+OK\r\n").elements, role));
    check(!resend::parse_role(read_one(reader, "*1\r\n:1\r\n").elements, role));
}

// A Sentinel's events (PSUBSCRIBE *): the three that move a client.
std::string pmessage(std::string_view channel, std::string_view payload) {
    auto bulk = [](std::string_view s) { return "$" + std::to_string(s.size()) + "\r\n" + std::string(s) + "\r\n"; };
    return "*4\r\n" + bulk("pmessage") + bulk("*") + bulk(channel) + bulk(payload);
}

void test_sentinel_events(void **) {
    using kind = resend::sentinel_event::kind_t;
    reply_reader reader;
    auto event = resend::parse_sentinel_event(
        read_one(reader, pmessage("+switch-master", "mymaster 127.0.0.1 6379 10.0.0.2 6380")).elements);
    check(event.kind == kind::switched);
    check_bytes_eq(event.master, "mymaster");
    check_bytes_eq(event.to.host, "10.0.0.2");
    check_eq(event.to.port, 6380);
    event = resend::parse_sentinel_event(read_one(reader, pmessage("+try-failover", "master mymaster 127.0.0.1 6379")).elements);
    check(event.kind == kind::started);
    check_bytes_eq(event.master, "mymaster");
    event = resend::parse_sentinel_event(read_one(reader, pmessage("+failover-end", "master other 127.0.0.1 6379")).elements);
    check(event.kind == kind::ended);
    check_bytes_eq(event.master, "other");
    event = resend::parse_sentinel_event(
        read_one(reader, pmessage("-failover-abort-no-good-slave", "master mymaster 127.0.0.1 6379")).elements);
    check(event.kind == kind::ended);
    // Not theirs, or not whole: nothing.
    check(resend::parse_sentinel_event(read_one(reader, pmessage("+sdown", "master mymaster 127.0.0.1 6379")).elements).kind ==
          kind::none);
    check(resend::parse_sentinel_event(read_one(reader, pmessage("+try-failover", "slave 1.2.3.4:5 1.2.3.4 5 @ m 1 2")).elements)
              .kind == kind::none);
    check(resend::parse_sentinel_event(read_one(reader, pmessage("+switch-master", "mymaster 1 2 3")).elements).kind ==
          kind::none);
    check(resend::parse_sentinel_event(read_one(reader, pmessage("+switch-master", "mymaster 1 2 h 0")).elements).kind ==
          kind::none);
    check(resend::parse_sentinel_event(read_one(reader, "*3\r\n$10\r\npsubscribe\r\n$1\r\n*\r\n:1\r\n").elements).kind ==
          kind::none);
}

// The elements a reader keeps: pre-order with depths, bounded; a large
// reply is marked truncated instead of growing anything.
void test_elements_are_bounded(void **) {
    reply_reader reader;
    auto reply = read_one(reader, "*2\r\n*1\r\n:7\r\n$3\r\nabc\r\n");
    check_eq(reply.elements.size(), 4);
    check_eq(reply.elements[0].depth, 0);
    check_eq(reply.elements[0].count, 2);
    check_eq(reply.elements[1].depth, 1);
    check_eq(reply.elements[2].depth, 2);
    check_eq(reply.elements[2].integer, 7);
    check_bytes_eq(reply.elements[3].text, "abc");
    check_eq(resend::reply_skip(reply.elements, 1), 3);
    check(!reply.truncated);

    std::string many = "*" + std::to_string(reply_reader::max_elements + 5) + "\r\n";
    for (std::size_t i = 0; i < reply_reader::max_elements + 5; ++i) many += ":1\r\n";
    reply = read_one(reader, many);
    check(reply.truncated);
    check_eq(reply.elements.size(), reply_reader::max_elements);

    std::string big(reply_reader::max_text + 10, 'x');
    reply = read_one(reader, "$" + std::to_string(big.size()) + "\r\n" + big + "\r\n");
    check(reply.truncated);
    check_eq(reply.elements[0].text.size(), reply_reader::max_text);

    reply = read_one(reader, "$2\r\nok\r\n");  // the next reply starts afresh
    check(!reply.truncated);
    check_bytes_eq(reply.elements[0].text, "ok");
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_key_slot),
        guarded_test(test_first_key),
        guarded_test(test_redirect),
        guarded_test(test_not_master),
        guarded_test(test_cluster_slots),
        guarded_test(test_master_address),
        guarded_test(test_role),
        guarded_test(test_sentinel_events),
        guarded_test(test_elements_are_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
