// What Redis Sentinel and Redis Cluster say about where commands go, as
// plain values: a key's hash slot, a command's first key, MOVED/ASK
// redirections, and the replies of CLUSTER SLOTS, SENTINEL
// get-master-addr-by-name and ROLE (read from a reply's elements). Nothing
// here allocates; every string_view points into its input.
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

#include "redis_reply.hpp"

namespace resend {

inline constexpr unsigned cluster_slot_count = 16384;

// The hash slot of `key`: CRC16 (XMODEM) of the key, or of its hash tag (the
// bytes between the first '{' and the first '}' after it, when not empty),
// modulo 16384.
unsigned key_slot(std::string_view key) noexcept;

// The key a command is routed by: EVAL/EVALSHA (and their _RO forms) with at
// least one key, the first of them (args[3]); any other command, args[1].
// Empty when the command has none.
std::string_view first_key(std::span<const std::string_view> args) noexcept;

struct redis_endpoint {
    std::string_view host;  // empty: the host of the node that answered
    unsigned port;
};

// "HOST:PORT" (the last ':' separates: IPv6 hosts keep theirs); false
// unless the port is 1..65535.
bool parse_endpoint(std::string_view text, redis_endpoint &out) noexcept;

// A cluster's answer that the key's slot is served elsewhere:
// "MOVED <slot> <host>:<port>" (for good) or "ASK <slot> <host>:<port>"
// (this command only, after ASKING).
struct redis_redirect {
    enum class kind_t : unsigned char { none, moved, ask } kind;
    unsigned slot;
    redis_endpoint to;
};
redis_redirect parse_redirect(std::string_view error) noexcept;

// An error reply that says the node is not (or no longer) a master that
// takes writes, so that the command was not executed: READONLY, MASTERDOWN.
bool is_not_master(std::string_view error) noexcept;

// One range of CLUSTER SLOTS: slots first..last served by the master at
// `at`, with `replicas` replicas listed.
struct slot_range {
    unsigned first, last;
    redis_endpoint at;
    std::size_t replicas;
};
// Reads a CLUSTER SLOTS reply into `out`; `count` is how many ranges it
// holds. False when the reply is not one, or has more ranges than `out`.
bool parse_cluster_slots(std::span<const reply_element> reply, std::span<slot_range> out,
                         std::size_t &count) noexcept;

// SENTINEL get-master-addr-by-name: [host, port]; false for nil (a master
// the Sentinel does not know) or anything else.
bool parse_master_address(std::span<const reply_element> reply, redis_endpoint &out) noexcept;

// ROLE: the node's role ("master", "slave", "sentinel") and, for a master,
// how many replicas are connected to it.
struct redis_role {
    std::string_view role;
    std::size_t replicas;
};
bool parse_role(std::span<const reply_element> reply, redis_role &out) noexcept;

// A Sentinel's event, as PSUBSCRIBE delivers it (["pmessage", pattern,
// channel, payload]), as far as a client of one master needs it: a failover
// of `master` began (+try-failover), ended without a new master
// (+failover-end, -failover-abort-...), or gave it a new address `to`
// (+switch-master). `none` for any other message.
struct sentinel_event {
    enum class kind_t : unsigned char { none, started, ended, switched } kind;
    std::string_view master;
    redis_endpoint to;
};
sentinel_event parse_sentinel_event(std::span<const reply_element> reply) noexcept;

}  // namespace resend
