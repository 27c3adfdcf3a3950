// Fleet-wide rate limits kept in Redis (resend_confirmation_shared_limit):
// the Lua script that checks every limit of a request and records it in
// one atomic step, its SHA1 (EVALSHA), the names of the limits' keys, the
// meaning of the script's answer, and the client-prefix mask of
// $resend_confirmation_client_prefix. No nginx here.
//
// The script (KEYS and ARGV as the glue sends them):
//   EVALSHA <sha1> <1 + n> <stream> <key 1> .. <key n>
//           <maxlen> <dry run: 0|1|2>
//           [<requests * 1000> <period ms> <burst * 1000>] x n
//           <field> <value> ...            (the record, in record order)
// It reads Redis's clock (TIME), applies the leaky bucket of
// core/leaky_bucket.hpp to each key (stored as "<excess>:<last ms>", with
// an expiry at the moment the bucket has drained), and only when every key
// passes updates them and XADDs the fields. Its answer:
//   the entry's ID (a string)  recorded
//   i > 0 (an integer)         silenced by limit i, nothing written
//   -i (an integer)            dry run: recorded, limit i would have silenced it
//   0 (an integer)             dry run argument 2 (a local zone silenced the
//                              request before): silenced the same way as by a
//                              limit, no limit over (i > 0 when one is)
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "keyed_hash.hpp"
#include "redis_reply.hpp"

namespace resend {

std::string_view shared_limit_script() noexcept;

inline constexpr std::size_t sha1_hex_size = 40;
// The script's SHA1 in lowercase hex, as EVALSHA and SCRIPT LOAD name it.
void shared_limit_script_sha1(char out[sha1_hex_size]) noexcept;

// The script's arithmetic is exact in Lua's doubles (53-bit integers)
// while (burst + 1) * 1000 * period_ms stays below 2^53: with a period of a
// day, burst <= 100,000.
inline constexpr std::uint64_t shared_limit_max_burst = 100000;

// What Redis Cluster hashes of `key` to choose its slot: the text between the
// first '{' and the next '}' when that is not empty, else the whole key.
std::string_view cluster_hash_tag(std::string_view key) noexcept;

// A limit's key in Redis: "resend_confirmation:limit:{<tag>}:<32 hex digits>",
// <tag> the stream's hash tag (so the key lives in the stream's slot) and
// the digits the keyed hash of the limit's key (never the address itself).
inline constexpr std::string_view shared_limit_key_prefix = "resend_confirmation:limit:";
std::size_t shared_limit_key_size(std::string_view stream) noexcept;
// Writes the key (shared_limit_key_size(stream) bytes); returns the end.
char *shared_limit_key_write(char *out, std::string_view stream, const keyed_digest &digest) noexcept;

// The script's last key, "resend_confirmation:silenced:{<tag>}": a stream
// the script adds an entry to when it silences ("limit" and the limit's
// number, nothing of the request; trimmed to one node, at most about 100
// entries), so that silencing costs Redis about what recording does; in
// the stream's slot.
inline constexpr std::string_view shared_limit_silence_key_prefix = "resend_confirmation:silenced:";
std::size_t shared_limit_silence_key_size(std::string_view stream) noexcept;
// Writes the key (shared_limit_silence_key_size(stream) bytes); returns the end.
char *shared_limit_silence_key_write(char *out, std::string_view stream) noexcept;

// The script's answer, or why there is none.
struct shared_limit_answer {
    enum { recorded, silenced, dry_run_limited, no_script, failed, silenced_before } result;
    std::size_t limit;  // silenced, dry_run_limited: the limit's index (from 0)
};
// `limits`: how many the request was checked against (an answer that names
// another is a failure).
shared_limit_answer shared_limit_read_answer(const redis_reply &reply, std::size_t limits) noexcept;

// Keeps the first `bits` bits of the address in `bytes[0 .. size)` and
// zeroes the rest (bits >= size * 8: unchanged).
void mask_prefix(unsigned char *bytes, std::size_t size, unsigned bits) noexcept;

}  // namespace resend
