// shared_limit: the script's SHA1, the Redis key of a limit (in the
// stream's Cluster slot, never the address), how the script's answer is
// read, and the client-prefix mask.
#include <cstddef>
#include <string>
#include <string_view>

#include <openssl/evp.h>

#include "core/shared_limit.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;
using resend::redis_reply;
using resend::reply_kind;
using resend::shared_limit_answer;

namespace {

std::string hex(const unsigned char *bytes, std::size_t size) {
    static const char digits[] = "0123456789abcdef";
    std::string out;
    for (std::size_t i = 0; i < size; ++i) {
        out += digits[bytes[i] >> 4];
        out += digits[bytes[i] & 0xf];
    }
    return out;
}

void test_sha1_is_the_scripts(void **) {
    std::string_view script = resend::shared_limit_script();
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned size = 0;
    check(EVP_Digest(script.data(), script.size(), digest, &size, EVP_sha1(), nullptr) == 1);
    char sha1[resend::sha1_hex_size];
    resend::shared_limit_script_sha1(sha1);
    check_bytes_eq(std::string_view(sha1, sizeof sha1), hex(digest, size));
}

void test_script_reads_time_and_writes_all_or_nothing(void **) {
    std::string_view script = resend::shared_limit_script();
    check(script.find("redis.call('TIME')") != std::string_view::npos);
    check(script.find("'PX'") != std::string_view::npos);
    // Nothing is written before the last check: every write follows the last GET.
    std::size_t last_get = script.rfind("redis.call('GET'");
    check(last_get < script.find("redis.call('SET'"));
    check(last_get < script.find("redis.call('XADD'"));
    // Silencing (before "return over") writes nothing anyone sees: the
    // buckets as they were, with their expiry, and the silence key only.
    std::string_view silencing = script.substr(0, script.find("return over"));
    check(silencing.find("'KEEPTTL'") != std::string_view::npos);
    check(silencing.find("'PX'") == std::string_view::npos);
    check(silencing.find("redis.call('XADD', KEYS[n + 2]") != std::string_view::npos);
    check(silencing.find("KEYS[1]") == std::string_view::npos);
    check(silencing.find("ARGV[3 * n + 3") == std::string_view::npos);  // no field of the request
    // A request a local zone silenced (dry run argument 2) takes this way too.
    check(silencing.find("ARGV[2] == '2'") != std::string_view::npos);
    // Recording adds the record to the stream, then updates the buckets: an
    // XADD refused (WRONGTYPE) leaves them as they were (Redis keeps a
    // script's writes before an error).
    std::string_view recording = script.substr(script.find("return over"));
    check(recording.find("redis.call('XADD', KEYS[1]") < recording.find("'PX'"));
}

void test_cluster_hash_tag(void **) {
    check_bytes_eq(resend::cluster_hash_tag("resend_confirmation"), "resend_confirmation");
    check_bytes_eq(resend::cluster_hash_tag("{resend}:stream"), "resend");
    check_bytes_eq(resend::cluster_hash_tag("a{b}c{d}"), "b");
    check_bytes_eq(resend::cluster_hash_tag("a{}c{d}"), "a{}c{d}");  // empty: the whole key
    check_bytes_eq(resend::cluster_hash_tag("a{bc"), "a{bc");
    check_bytes_eq(resend::cluster_hash_tag("a}b{c}"), "c");
    check_bytes_eq(resend::cluster_hash_tag(""), "");
}

std::string key_of(std::string_view stream, const resend::keyed_digest &digest) {
    std::string out(resend::shared_limit_key_size(stream), '?');
    char *end = resend::shared_limit_key_write(out.data(), stream, digest);
    check_eq(end - out.data(), static_cast<long long>(out.size()));
    return out;
}

void test_key_names_the_stream_slot_and_the_digest_in_hex(void **) {
    resend::keyed_digest digest{};
    for (std::size_t i = 0; i < digest.size(); ++i) digest[i] = static_cast<unsigned char>(i * 17);
    std::string digits = "00112233445566778899aabbccddeeff";
    check_bytes_eq(key_of("resend_confirmation", digest),
                   "resend_confirmation:limit:{resend_confirmation}:" + digits);
    // A stream with a hash tag of its own: the key takes the tag, so both hash alike.
    check_bytes_eq(key_of("{edge}:resend", digest), "resend_confirmation:limit:{edge}:" + digits);
    check_bytes_eq(resend::cluster_hash_tag(key_of("{edge}:resend", digest)),
                   resend::cluster_hash_tag("{edge}:resend"));
    check_bytes_eq(resend::cluster_hash_tag(key_of("plain", digest)), "plain");
}

void test_silence_key_is_in_the_stream_slot(void **) {
    auto key = [](std::string_view stream) {
        std::string out(resend::shared_limit_silence_key_size(stream), '?');
        char *end = resend::shared_limit_silence_key_write(out.data(), stream);
        check_eq(end - out.data(), static_cast<long long>(out.size()));
        return out;
    };
    check_bytes_eq(key("resend_confirmation"), "resend_confirmation:silenced:{resend_confirmation}");
    check_bytes_eq(key("{edge}:resend"), "resend_confirmation:silenced:{edge}");
    check_bytes_eq(resend::cluster_hash_tag(key("{edge}:resend")), resend::cluster_hash_tag("{edge}:resend"));
    check_bytes_eq(resend::cluster_hash_tag(key("plain")), "plain");
}

redis_reply reply(reply_kind kind, long long integer = 0, std::string_view error = {}) {
    return {kind, error, integer, {}, false};
}

void check_answer_at(const redis_reply &r, std::size_t limits, int result, std::size_t limit,
                     const char *file, int line) {
    shared_limit_answer got = resend::shared_limit_read_answer(r, limits);
    unit::check_equal(got.result, result, "result", "expected", file, line);
    unit::check_equal(static_cast<long long>(got.limit), static_cast<long long>(limit), "limit",
                      "expected", file, line);
}
#define check_answer(r, limits, result, limit) \
    check_answer_at((r), (limits), (result), (limit), __FILE__, __LINE__)

void test_reading_the_answer(void **) {
    check_answer(reply(reply_kind::string), 2, shared_limit_answer::recorded, 0);
    check_answer(reply(reply_kind::integer, 1), 2, shared_limit_answer::silenced, 0);
    check_answer(reply(reply_kind::integer, 2), 2, shared_limit_answer::silenced, 1);
    check_answer(reply(reply_kind::integer, -1), 2, shared_limit_answer::dry_run_limited, 0);
    check_answer(reply(reply_kind::integer, -2), 2, shared_limit_answer::dry_run_limited, 1);
    // An index the request did not have: not understood.
    check_answer(reply(reply_kind::integer, 3), 2, shared_limit_answer::failed, 0);
    check_answer(reply(reply_kind::integer, -3), 2, shared_limit_answer::failed, 0);
    // Silenced before (by a local zone), no shared limit over.
    check_answer(reply(reply_kind::integer, 0), 2, shared_limit_answer::silenced_before, 0);
    check_answer(reply(reply_kind::nil), 2, shared_limit_answer::failed, 0);
    check_answer(reply(reply_kind::status), 2, shared_limit_answer::failed, 0);
    check_answer(reply(reply_kind::array), 2, shared_limit_answer::failed, 0);
    check_answer(reply(reply_kind::error, 0, "NOSCRIPT No matching script. Please use EVAL."), 2,
                 shared_limit_answer::no_script, 0);
    check_answer(reply(reply_kind::error, 0, "NOSCRIPT"), 2, shared_limit_answer::failed, 0);
    check_answer(reply(reply_kind::error, 0, "ERR Error running script"), 2,
                 shared_limit_answer::failed, 0);
    check_answer(reply(reply_kind::error, 0, "CROSSSLOT Keys in request don't hash to the same slot"),
                 2, shared_limit_answer::failed, 0);
}

std::string masked(std::string bytes, unsigned bits) {
    resend::mask_prefix(reinterpret_cast<unsigned char *>(bytes.data()), bytes.size(), bits);
    return bytes;
}

void test_mask_prefix(void **) {
    std::string v6(16, '\xff');
    check_bytes_eq(masked(v6, 64), std::string(8, '\xff') + std::string(8, '\0'));
    check_bytes_eq(masked(v6, 128), v6);
    check_bytes_eq(masked(v6, 200), v6);
    check_bytes_eq(masked(v6, 0), std::string(16, '\0'));
    check_bytes_eq(masked(v6, 56), std::string(7, '\xff') + std::string(9, '\0'));
    check_bytes_eq(masked(v6, 60), std::string(7, '\xff') + "\xf0"s + std::string(8, '\0'));
    check_bytes_eq(masked("\x0a\x01\x02\x03", 24), "\x0a\x01\x02\x00"sv);
    check_bytes_eq(masked("\x0a\x01\x02\x03", 31), "\x0a\x01\x02\x02"sv);
    check_bytes_eq(masked("\x0a\x01\x02\x03", 32), "\x0a\x01\x02\x03"sv);
    check_bytes_eq(masked("\x0a\xff\x02\x03", 9), "\x0a\x80\x00\x00"sv);
    check_bytes_eq(masked("", 0), "");
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_sha1_is_the_scripts),
        guarded_test(test_script_reads_time_and_writes_all_or_nothing),
        guarded_test(test_cluster_hash_tag),
        guarded_test(test_key_names_the_stream_slot_and_the_digest_in_hex),
        guarded_test(test_silence_key_is_in_the_stream_slot),
        guarded_test(test_reading_the_answer),
        guarded_test(test_mask_prefix),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
