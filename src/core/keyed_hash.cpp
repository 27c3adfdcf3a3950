#include "keyed_hash.hpp"

#include <cstring>

// The one-shot HMAC() allocates a context per call; the SHA256_* API (kept,
// deprecated, in OpenSSL 3) lets us precompute the keyed states once.
#define OPENSSL_SUPPRESS_DEPRECATED
#include <openssl/sha.h>

namespace resend {

static_assert(sizeof(SHA256_CTX) <= 112, "SHA256_CTX grew: enlarge keyed_hash's state");

void keyed_hash::set_secret(std::string_view secret) noexcept {
    unsigned char key[SHA256_CBLOCK] = {};
    if (secret.size() > SHA256_CBLOCK) {
        SHA256(reinterpret_cast<const unsigned char *>(secret.data()), secret.size(), key);
    } else if (!secret.empty()) {
        std::memcpy(key, secret.data(), secret.size());
    }
    unsigned char pad[SHA256_CBLOCK];
    SHA256_CTX ctx;

    for (std::size_t i = 0; i < SHA256_CBLOCK; ++i) pad[i] = key[i] ^ 0x36;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, pad, sizeof(pad));
    std::memcpy(inner_, &ctx, sizeof(ctx));

    for (std::size_t i = 0; i < SHA256_CBLOCK; ++i) pad[i] = key[i] ^ 0x5c;
    SHA256_Init(&ctx);
    SHA256_Update(&ctx, pad, sizeof(pad));
    std::memcpy(outer_, &ctx, sizeof(ctx));
}

keyed_digest keyed_hash::digest(std::string_view message) const noexcept {
    SHA256_CTX ctx;
    unsigned char inner_digest[SHA256_DIGEST_LENGTH];
    std::memcpy(&ctx, inner_, sizeof(ctx));
    SHA256_Update(&ctx, message.data(), message.size());
    SHA256_Final(inner_digest, &ctx);

    unsigned char full[SHA256_DIGEST_LENGTH];
    std::memcpy(&ctx, outer_, sizeof(ctx));
    SHA256_Update(&ctx, inner_digest, sizeof(inner_digest));
    SHA256_Final(full, &ctx);

    keyed_digest out;
    std::memcpy(out.data(), full, out.size());
    return out;
}

}  // namespace resend
