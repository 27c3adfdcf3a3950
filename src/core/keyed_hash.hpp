// Email rate-limit keys: HMAC-SHA256 of the normalized address under a
// secret, truncated, so that shared memory never holds an address.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

namespace resend {

inline constexpr std::size_t keyed_hash_size = 16;  // bytes kept of the 32
using keyed_digest = std::array<std::uint8_t, keyed_hash_size>;

// HMAC with the inner and outer hash states precomputed from the secret, so
// that each digest costs two SHA-256 finishes and allocates nothing.
class keyed_hash {
public:
    void set_secret(std::string_view secret) noexcept;
    keyed_digest digest(std::string_view message) const noexcept;

private:
    // Opaque copies of OpenSSL's SHA256_CTX (plain data), kept here so this
    // header needs no OpenSSL include.
    alignas(8) unsigned char inner_[112];
    alignas(8) unsigned char outer_[112];
};

}  // namespace resend
