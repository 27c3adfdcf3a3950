#include "shared_limit.hpp"

#include <cstring>

#include <openssl/sha.h>

namespace resend {
namespace {

// Lua 5.1, as Redis runs it. Numbers are doubles: every product below stays
// under 2^53 (shared_limit_max_burst), and floordiv() is exact there
// (math.fmod of integers is exact), so the drain is the same integer
// arithmetic as bucket_drain(). A bucket key is "<excess>:<last ms>".
// KEYS: the stream, the limits' buckets, the silence key (last).
// Silencing writes as much as recording does, none of it seen by anyone:
// each bucket set again as it was (KEEPTTL: same value, same expiry) and an
// entry of no interest (no address, nothing of the request) added to a
// stream trimmed to one node (MAXLEN ~ 1: whole nodes dropped, cheaper
// than exact trimming). The answer then takes about as long either way,
// so its timing does not tell a silenced address from a fresh one.
// A request a local zone has silenced already (dry run argument 2) takes
// the silencing way whatever the buckets say, for the same reason: its
// answer waits for the same work.
// Recording adds to the stream first: Redis keeps what a script wrote
// before an error, and an XADD that fails (WRONGTYPE) must leave the
// buckets as they were, or the record, sent again, would find its own
// token taken and be silenced: lost.
constexpr std::string_view script_text = R"lua(-- resend_confirmation shared limit 4
local n = #KEYS - 2
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local function floordiv(x, d) return (x - math.fmod(x, d)) / d end
local after = {}
local states = {}
local over = 0
for i = 1, n do
  local per = tonumber(ARGV[3 * i])
  local period = tonumber(ARGV[3 * i + 1])
  local excess = 0
  local state = redis.call('GET', KEYS[i + 1])
  states[i] = state
  if state then
    local e, last = string.match(state, '^(%d+):(%-?%d+)$')
    if e then
      local elapsed = now - tonumber(last)
      if elapsed < -60000 then elapsed = 1 elseif elapsed < 0 then elapsed = 0 end
      excess = tonumber(e) + 1000
      local full = floordiv(excess * period, per) + 1
      if elapsed > full then elapsed = full end
      local drained = floordiv(elapsed * per, period)
      if drained >= excess then excess = 0 else excess = excess - drained end
    end
  end
  if excess > tonumber(ARGV[3 * i + 2]) then
    if over == 0 then over = i end
  else
    after[i] = excess
  end
end
if (over > 0 and ARGV[2] ~= '1') or ARGV[2] == '2' then
  for i = 1, n do
    if states[i] then redis.call('SET', KEYS[i + 1], states[i], 'KEEPTTL') end
  end
  redis.call('XADD', KEYS[n + 2], 'MAXLEN', '~', '1', '*', 'limit', over)
  return over
end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', unpack(ARGV, 3 * n + 3))
for i = 1, n do
  if after[i] then
    local per = tonumber(ARGV[3 * i])
    local drained_at = floordiv((after[i] + 1000) * tonumber(ARGV[3 * i + 1]) + per - 1, per)
    redis.call('SET', KEYS[i + 1], string.format('%d:%d', after[i], now), 'PX', drained_at)
  end
end
if over > 0 then return -over end
return id
)lua";

constexpr char hex_digits[] = "0123456789abcdef";

char *write_hex(char *out, const unsigned char *bytes, std::size_t size) noexcept {
    for (std::size_t i = 0; i < size; ++i) {
        *out++ = hex_digits[bytes[i] >> 4];
        *out++ = hex_digits[bytes[i] & 0xf];
    }
    return out;
}

// "<prefix>{<the stream's hash tag>}": a key in the stream's Cluster slot.
char *write_tagged(char *out, std::string_view prefix, std::string_view stream) noexcept {
    std::string_view tag = cluster_hash_tag(stream);
    std::memcpy(out, prefix.data(), prefix.size());
    out += prefix.size();
    *out++ = '{';
    std::memcpy(out, tag.data(), tag.size());
    out += tag.size();
    *out++ = '}';
    return out;
}

}  // namespace

std::string_view shared_limit_script() noexcept { return script_text; }

void shared_limit_script_sha1(char out[sha1_hex_size]) noexcept {
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char *>(script_text.data()), script_text.size(), digest);
    write_hex(out, digest, sizeof(digest));
}

std::string_view cluster_hash_tag(std::string_view key) noexcept {
    std::size_t open = key.find('{');
    if (open == std::string_view::npos) return key;
    std::size_t close = key.find('}', open + 1);
    if (close == std::string_view::npos || close == open + 1) return key;
    return key.substr(open + 1, close - open - 1);
}

std::size_t shared_limit_key_size(std::string_view stream) noexcept {
    return shared_limit_key_prefix.size() + 1 + cluster_hash_tag(stream).size() + 2 +
           2 * keyed_hash_size;
}

char *shared_limit_key_write(char *out, std::string_view stream, const keyed_digest &digest) noexcept {
    out = write_tagged(out, shared_limit_key_prefix, stream);
    *out++ = ':';
    return write_hex(out, digest.data(), digest.size());
}

std::size_t shared_limit_silence_key_size(std::string_view stream) noexcept {
    return shared_limit_silence_key_prefix.size() + 2 + cluster_hash_tag(stream).size();
}

char *shared_limit_silence_key_write(char *out, std::string_view stream) noexcept {
    return write_tagged(out, shared_limit_silence_key_prefix, stream);
}

shared_limit_answer shared_limit_read_answer(const redis_reply &reply, std::size_t limits) noexcept {
    switch (reply.kind) {
    case reply_kind::string:
        return {shared_limit_answer::recorded, 0};
    case reply_kind::integer: {
        long long i = reply.integer;
        auto n = static_cast<long long>(limits);
        if (i >= 1 && i <= n) return {shared_limit_answer::silenced, static_cast<std::size_t>(i - 1)};
        if (i == 0) return {shared_limit_answer::silenced_before, 0};
        if (i <= -1 && i >= -n) {
            return {shared_limit_answer::dry_run_limited, static_cast<std::size_t>(-i - 1)};
        }
        return {shared_limit_answer::failed, 0};
    }
    case reply_kind::error:
        // The script is not in this Redis's cache (a restart, SCRIPT FLUSH,
        // a failover): send it in full.
        if (reply.error.substr(0, 9) == "NOSCRIPT ") return {shared_limit_answer::no_script, 0};
        return {shared_limit_answer::failed, 0};
    default:
        return {shared_limit_answer::failed, 0};
    }
}

void mask_prefix(unsigned char *bytes, std::size_t size, unsigned bits) noexcept {
    std::size_t whole = bits / 8;
    if (whole >= size) return;
    unsigned rest = bits % 8;
    bytes[whole] &= static_cast<unsigned char>(0xff00u >> rest);
    for (std::size_t i = whole + 1; i < size; ++i) bytes[i] = 0;
}

}  // namespace resend
