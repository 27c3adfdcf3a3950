// keyed_hash: HMAC-SHA256 with the inner and outer states precomputed from
// the secret, truncated to 16 bytes. The reference is OpenSSL's one-shot
// HMAC(), truncated the same way, and RFC 4231's test vectors.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "core/keyed_hash.hpp"

#include "unit_test.hpp"  // last: cmocka's macros

using namespace std::literals;

namespace {

std::string_view bytes_of(const resend::keyed_digest &d) {
    return {reinterpret_cast<const char *>(d.data()), d.size()};
}

// HMAC-SHA256(secret, message), first 16 bytes, by OpenSSL's one-shot HMAC().
std::string reference(std::string_view secret, std::string_view message) {
    static const unsigned char empty = 0;  // HMAC() wants a key pointer even for no bytes
    const void *key = secret.empty() ? static_cast<const void *>(&empty) : secret.data();
    const unsigned char *data =
        message.empty() ? &empty : reinterpret_cast<const unsigned char *>(message.data());
    unsigned char full[EVP_MAX_MD_SIZE];
    unsigned int full_size = 0;
    if (HMAC(EVP_sha256(), key, static_cast<int>(secret.size()), data, message.size(), full,
             &full_size) == nullptr ||
        full_size != 32) {
        print_error("reference HMAC() failed\n");
        unit::record_failure(__FILE__, __LINE__);
        return {};
    }
    return {reinterpret_cast<const char *>(full), resend::keyed_hash_size};
}

std::string from_hex(std::string_view hex) {
    std::string out;
    for (std::size_t i = 0; i + 1 < hex.size(); i += 2) {
        auto nibble = [](char c) { return c <= '9' ? c - '0' : c - 'a' + 10; };
        out += static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1]));
    }
    return out;
}

// Deterministic bytes covering all 256 values.
std::string pattern(std::size_t size, unsigned seed) {
    std::string out(size, '\0');
    std::uint32_t x = 2463534242u ^ seed;
    for (char &c : out) {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        c = static_cast<char>(x & 0xff);
    }
    return out;
}

void expect_matches_hmac(const resend::keyed_hash &hash, std::string_view secret,
                         std::string_view message, const char *file, int line) {
    std::string expected = reference(secret, message);
    std::string got(bytes_of(hash.digest(message)));
    if (got != expected) {
        print_error("digest of %zu bytes under a %zu-byte secret differs from HMAC-SHA256\n",
                    message.size(), secret.size());
        unit::check_bytes_equal(got, expected, "digest vs HMAC()", file, line);
    }
}
#define check_matches_hmac(hash, secret, message) \
    expect_matches_hmac((hash), (secret), (message), __FILE__, __LINE__)

// --- tests -------------------------------------------------------------------------

void test_digest_size(void **) {
    check_eq(resend::keyed_hash_size, 16);
    check_eq(sizeof(resend::keyed_digest), 16);
    resend::keyed_hash hash;
    hash.set_secret("secret");
    check_eq(hash.digest("message").size(), 16);
}

// RFC 4231 HMAC-SHA-256 test vectors, first 16 bytes.
void test_rfc_4231_vectors(void **) {
    struct vector {
        std::string secret;
        std::string message;
        std::string_view hmac_hex;
    };
    const vector vectors[] = {
        {std::string(20, '\x0b'), "Hi There", "b0344c61d8db38535ca8afceaf0bf12b"},
        {"Jefe", "what do ya want for nothing?", "5bdcc146bf60754e6a042426089575c7"},
        {std::string(20, '\xaa'), std::string(50, '\xdd'), "773ea91e36800e46854db8ebd09181a7"},
        {from_hex("0102030405060708090a0b0c0d0e0f10111213141516171819"), std::string(50, '\xcd'),
         "82558a389a443c0ea4cc819899f2083a"},
        {std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First",
         "60e431591ee0b67f0d8a26aacbf5b77f"},
        {std::string(131, '\xaa'),
         "This is a test using a larger than block-size key and a larger than block-size data. "
         "The key needs to be hashed before being used by the HMAC algorithm.",
         "9b09ffa71b942fcb27635fbcd5b0e944"},
    };
    for (const vector &v : vectors) {
        resend::keyed_hash hash;
        hash.set_secret(v.secret);
        unit::check_bytes_equal(bytes_of(hash.digest(v.message)), from_hex(v.hmac_hex),
                                v.message.substr(0, 40).c_str(), __FILE__, __LINE__);
        check_matches_hmac(hash, v.secret, v.message);
    }
}

// Messages around SHA-256's 64-byte block and its 55/56-byte padding limit.
void test_messages_of_every_size_around_a_block(void **) {
    for (std::size_t secret_size : {1, 16, 32}) {
        std::string secret = pattern(secret_size, 1);
        resend::keyed_hash hash;
        hash.set_secret(secret);
        for (std::size_t size = 0; size <= 200; ++size) {
            check_matches_hmac(hash, secret, pattern(size, 2));
        }
    }
}

void test_messages(void **) {
    std::string secret = "0123456789abcdef0123456789abcdef";
    resend::keyed_hash hash;
    hash.set_secret(secret);
    check_matches_hmac(hash, secret, "");
    check_matches_hmac(hash, secret, std::string_view());  // no data pointer at all
    check_matches_hmac(hash, secret, "a");
    check_matches_hmac(hash, secret, "user@example.com");
    check_matches_hmac(hash, secret, "\0"sv);
    check_matches_hmac(hash, secret, "a\0b"sv);
    check_matches_hmac(hash, secret, std::string(64, 'x'));   // exactly a block
    check_matches_hmac(hash, secret, std::string(65, 'x'));   // a block and a byte
    check_matches_hmac(hash, secret, std::string(55, 'x'));   // the last one-block padding
    check_matches_hmac(hash, secret, std::string(56, 'x'));
    check_matches_hmac(hash, secret, std::string(128, 'x'));
    check_matches_hmac(hash, secret, std::string(1000, '\xff'));
    check_matches_hmac(hash, secret, pattern(4096, 3));
    check_matches_hmac(hash, secret, pattern(1 << 20, 4));  // 1 MiB
    check_matches_hmac(hash, secret, "\xc3\xa9l\xc3\xa8ve@\xc3\xa9" "cole.fr");
    // only the bytes of the view count
    std::string long_text = "user@example.com trailing";
    check_matches_hmac(hash, secret, std::string_view(long_text).substr(0, 16));
    check(hash.digest(std::string_view(long_text).substr(0, 16)) == hash.digest("user@example.com"));
    check(hash.digest("user@example.com") != hash.digest(long_text));
}

// Secrets up to, at and beyond SHA-256's 64-byte block (a longer one is hashed
// first), and the empty secret.
void test_secrets_of_every_size(void **) {
    for (std::size_t size : {0, 1, 15, 16, 31, 32, 33, 63, 64, 65, 100, 128, 129, 200, 1000}) {
        std::string secret = pattern(size, 5);
        resend::keyed_hash hash;
        hash.set_secret(secret);
        for (std::size_t message_size : {0, 1, 16, 55, 56, 63, 64, 65, 200}) {
            check_matches_hmac(hash, secret, pattern(message_size, 6));
        }
    }
    // bytes a secret file may hold: NULs, high bytes, newline
    for (std::string_view secret : {"\0"sv, "\0\0\0\0"sv, "a\0b"sv, "\xff\xfe\n"sv, "key\n"sv}) {
        resend::keyed_hash hash;
        hash.set_secret(secret);
        check_matches_hmac(hash, secret, "user@example.com");
    }
}

// An empty std::string_view has no data pointer: set_secret must not hand
// it to memcpy (undefined even for 0 bytes; UBSan reports it).
void test_empty_secret_without_data_pointer(void **) {
    resend::keyed_hash hash;
    hash.set_secret(std::string_view());
    check_matches_hmac(hash, "", "user@example.com");
}

void test_different_secrets_give_different_digests(void **) {
    const std::string_view message = "user@example.com";
    std::vector<std::string> secrets = {
        "a", "b", "ab", "ba", "\0a"s, std::string(16, 'k'), std::string(17, 'k'),
        std::string(64, 'k'), std::string(65, 'k'), pattern(32, 7), pattern(32, 8),
    };
    std::vector<resend::keyed_digest> digests;
    for (const std::string &secret : secrets) {
        resend::keyed_hash hash;
        hash.set_secret(secret);
        digests.push_back(hash.digest(message));
    }
    for (std::size_t i = 0; i < digests.size(); ++i) {
        for (std::size_t j = i + 1; j < digests.size(); ++j) {
            if (digests[i] == digests[j]) {
                print_error("secrets \"%s\" and \"%s\" give the same digest\n",
                            unit::printable(secrets[i]).c_str(), unit::printable(secrets[j]).c_str());
                unit::record_failure(__FILE__, __LINE__);
            }
        }
    }
    // and different messages under one secret
    resend::keyed_hash hash;
    hash.set_secret("secret");
    check(hash.digest("user@example.com") != hash.digest("user@example.org"));
    check(hash.digest("") != hash.digest("\0"sv));
    check(hash.digest("a") != hash.digest("A"));
}

// HMAC pads a short key with zeros: as in the standard, "a" and "a\0" are the
// same key, and a key longer than a block is its SHA-256.
void test_key_padding_is_hmacs(void **) {
    resend::keyed_hash a, a_nul, empty, zeros;
    a.set_secret("a");
    a_nul.set_secret("a\0"sv);
    empty.set_secret("");
    zeros.set_secret(std::string(64, '\0'));
    check(a.digest("m") == a_nul.digest("m"));
    check(empty.digest("m") == zeros.digest("m"));
    check_matches_hmac(a_nul, "a\0"sv, "m");
    check_matches_hmac(zeros, std::string(64, '\0'), "m");
}

void test_set_secret_again_rekeys(void **) {
    const std::string_view message = "user@example.com";
    std::string long_secret = pattern(200, 9);
    resend::keyed_hash hash;
    hash.set_secret(long_secret);
    check_matches_hmac(hash, long_secret, message);
    hash.set_secret("short");  // nothing of the longer secret remains
    check_matches_hmac(hash, "short", message);
    hash.set_secret(pattern(64, 10));
    check_matches_hmac(hash, pattern(64, 10), message);
    hash.set_secret("");
    check_matches_hmac(hash, "", message);
    hash.set_secret(long_secret);  // back to the first: the same digests
    check_matches_hmac(hash, long_secret, message);
    resend::keyed_hash fresh;
    fresh.set_secret(long_secret);
    check(hash.digest(message) == fresh.digest(message));
    hash.set_secret(long_secret);  // the same secret twice
    check(hash.digest(message) == fresh.digest(message));
}

// digest() is const and keeps no state: repeatable, in any order, and a copy
// of the object hashes the same.
void test_digest_is_repeatable(void **) {
    resend::keyed_hash hash;
    hash.set_secret("0123456789abcdef");
    const resend::keyed_hash &const_hash = hash;
    resend::keyed_digest first = const_hash.digest("user@example.com");
    resend::keyed_digest other = const_hash.digest(pattern(1000, 11));
    for (int i = 0; i < 100; ++i) {
        check(const_hash.digest("user@example.com") == first);
    }
    check(const_hash.digest(pattern(1000, 11)) == other);
    check_matches_hmac(const_hash, "0123456789abcdef", "user@example.com");
    resend::keyed_hash copy = hash;
    check(copy.digest("user@example.com") == first);
    hash.set_secret("another secret");  // the copy keeps its own key
    check(copy.digest("user@example.com") == first);
    check(hash.digest("user@example.com") != first);
}

}  // namespace

int main(void) {
    const struct CMUnitTest tests[] = {
        guarded_test(test_digest_size),
        guarded_test(test_rfc_4231_vectors),
        guarded_test(test_messages_of_every_size_around_a_block),
        guarded_test(test_messages),
        guarded_test(test_secrets_of_every_size),
        guarded_test(test_different_secrets_give_different_digests),
        guarded_test(test_key_padding_is_hmacs),
        guarded_test(test_set_secret_again_rekeys),
        guarded_test(test_digest_is_repeatable),
        guarded_test(test_empty_secret_without_data_pointer),  // last: UBSan aborts on failure
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
