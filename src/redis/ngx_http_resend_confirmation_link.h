// Inside the Redis subsystem: the link (a transport that connects, writes,
// reads replies in order and keeps deadlines), its pending commands, and
// the policies it calls without knowing them: the topology (where to
// connect, what an error reply means, where a record goes: Sentinel,
// Cluster) and the acknowledgement rule (when a stored record counts).
// In the spirit of ngx_peer_connection_t's get/free callbacks.
#pragma once

#include "redis/ngx_http_resend_confirmation_redis.h"
#include "metrics/ngx_http_resend_confirmation_metrics.h"

#include "core/redis_reply.hpp"

namespace resend {
struct redis_endpoint;
}

// What a pending entry is; its reply is read accordingly.
enum class ngx_http_resend_confirmation_pending_kind_t : unsigned char {
    handshake,  // AUTH, SELECT, ROLE: a refusal fails the connection
    command,    // the link's own (SCRIPT LOAD, ASKING, CLUSTER SLOTS, SENTINEL ...)
    request,    // a request's record (r is null once the request went away)
    replay,     // the spool's record: a request's, without a request
    wait,       // WAIT after a batch of records (the acknowledgement rule)
};

struct ngx_http_resend_confirmation_pending_s {
    ngx_queue_t queue;      // in one of the link's queues (pending, kept, replicating, spare)
    ngx_http_resend_confirmation_pending_kind_t kind;
    ngx_http_request_t *r;  // a request's; null: none, or it went away
    ngx_msec_t deadline;    // when its reply is overdue
    ngx_msec_t queued;      // when it was handed to the link (reply time)
    size_t start, end;      // its bytes in the connection's output, counted from its start
    std::string_view command;  // its name (args[0], a literal), for the log
    std::span<const std::string_view> args;  // a request's command (r's pool), to send again
    ngx_uint_t redirects;   // MOVED/ASK followed so far
    ngx_http_resend_confirmation_link_done_pt done;  // its way back; null: nobody waits for it
    void *data;             // done's (a request's command: r)
    // Where its sender keeps it (a request's ctx->pending; null: nowhere):
    // pointed at the entry that carries the command on after a redirect,
    // cleared when it is over or detached.
    ngx_http_resend_confirmation_pending_t **holder;
    ngx_uint_t batch;       // a record's: the link's WAIT count when it was queued
    resend::reply_kind held_kind;  // a stored reply held for WAIT: its kind and integer,
    long long held_integer;        // for done (what a script answered)
};

// A record on its way, whose request (if any) still waits for it.
inline bool ngx_http_resend_confirmation_carries_record(const ngx_http_resend_confirmation_pending_t *entry) noexcept {
    return (entry->kind == ngx_http_resend_confirmation_pending_kind_t::request && entry->r != nullptr) ||
           entry->kind == ngx_http_resend_confirmation_pending_kind_t::replay;
}

// Where the link's commands go and what Redis's refusals mean: one per
// deployment (none for a single Redis). Every hook may be null.
struct ngx_http_resend_confirmation_topology_t {
    // Where to connect: finds the address and ends in link_found(). Null:
    // the directive's address (its name resolved again with a resolver).
    void (*locate)(ngx_http_resend_confirmation_link_t *link) noexcept;
    // Sends a record's command (r's, or a replay's) to the link that
    // serves it; null: this link.
    ngx_http_resend_confirmation_pending_t *(*route)(ngx_http_resend_confirmation_link_t *link,
                                                     ngx_http_request_t *r, std::span<const std::string_view> args,
                                                     ngx_http_resend_confirmation_pending_kind_t kind,
                                                     ngx_msec_t deadline, ngx_http_resend_confirmation_link_done_pt done,
                                                     void *data) noexcept;
    // An error reply to a record's command (the entry is out of the
    // queue): true when it says the command did not run here (MOVED, ASK,
    // READONLY, MASTERDOWN) and the policy took the entry on.
    bool (*not_here)(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *entry,
                     const resend::redis_reply &reply) noexcept;
    // The connection failed; its commands are answered (or kept).
    void (*failed)(ngx_http_resend_confirmation_link_t *link) noexcept;
    // Records not yet written when the connection fails wait for the next
    // one (another master may take them) instead of being answered.
    bool keeps_unsent;
};

// A reply that no command waits for: a subscription's message.
typedef void (*ngx_http_resend_confirmation_link_push_pt)(ngx_http_resend_confirmation_link_t *link,
                                                          const resend::redis_reply &reply) noexcept;

// link.cpp: the transport.
// `at`: a cluster node's address (default: the directive's); `topology`
// and its `data` (the Sentinels' or the cluster's state).
ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_link_create(ngx_http_resend_confirmation_redis_conf_t *conf, ngx_cycle_t *cycle,
                                         const ngx_addr_t *at = nullptr,
                                         const ngx_http_resend_confirmation_topology_t *topology = nullptr,
                                         void *data = nullptr) noexcept;
void ngx_http_resend_confirmation_link_destroy(ngx_http_resend_confirmation_link_t *link) noexcept;
// The topology's state given at create.
void *ngx_http_resend_confirmation_link_topology_data(ngx_http_resend_confirmation_link_t *link) noexcept;
// Queues a command on this very link, to be answered by `deadline` (a
// command sent again keeps its request's); `asking`: after ASKING. Null
// when the link is down.
ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_queue(ngx_http_resend_confirmation_link_t *link, ngx_http_request_t *r,
                                        std::span<const std::string_view> args,
                                        ngx_http_resend_confirmation_pending_kind_t kind, ngx_msec_t deadline,
                                        ngx_uint_t redirects, bool asking,
                                        ngx_http_resend_confirmation_link_done_pt done, void *data) noexcept;
// A command of the link's own (CLUSTER SLOTS, SENTINEL ...): `done` gets
// its reply and fate. False when the link is down (`done` is not called).
// `args` need only live until this returns.
bool ngx_http_resend_confirmation_link_command(ngx_http_resend_confirmation_link_t *link,
                                               std::span<const std::string_view> args,
                                               ngx_http_resend_confirmation_link_done_pt done,
                                               void *data) noexcept;
// Subscribes (SUBSCRIBE, PSUBSCRIBE `args`: one reply): the messages that
// follow go to `push`. False when the link is down.
bool ngx_http_resend_confirmation_link_subscribe(ngx_http_resend_confirmation_link_t *link,
                                                 std::span<const std::string_view> args,
                                                 ngx_http_resend_confirmation_link_push_pt push) noexcept;
// `entry` is kept at `holder` (may be null) from now on.
void ngx_http_resend_confirmation_link_hold(ngx_http_resend_confirmation_pending_t *entry,
                                            ngx_http_resend_confirmation_pending_t **holder) noexcept;
// An entry is over: its reply (null: none) and fate go back to whoever
// sent it (the entry itself is already spare).
void ngx_http_resend_confirmation_link_finish(ngx_http_resend_confirmation_link_t *link,
                                              ngx_http_resend_confirmation_pending_t *entry,
                                              const resend::redis_reply *reply,
                                              ngx_http_resend_confirmation_fate_t fate) noexcept;
// Moves `entry` (taken out of its queue) to the spare ones.
void ngx_http_resend_confirmation_link_spare(ngx_http_resend_confirmation_link_t *link,
                                             ngx_http_resend_confirmation_pending_t *entry) noexcept;
// Keeps a request's command for the next connection (topology keeps_unsent).
void ngx_http_resend_confirmation_link_keep(ngx_http_resend_confirmation_link_t *link,
                                            ngx_http_resend_confirmation_pending_t *entry) noexcept;
// Answers every command in flight, closes the connection, holds down.
void ngx_http_resend_confirmation_link_fail(ngx_http_resend_confirmation_link_t *link, const char *why) noexcept;
// Where locate() found the master (`at`), or the failure that it did not:
// the link connects there, or fails. Ignored unless the link is locating.
void ngx_http_resend_confirmation_link_found(ngx_http_resend_confirmation_link_t *link, const ngx_addr_t *at,
                                             const char *failure) noexcept;
// Whether the link is connected (or connecting) somewhere else than `at`.
bool ngx_http_resend_confirmation_link_elsewhere(ngx_http_resend_confirmation_link_t *link,
                                                 const ngx_sockaddr_t &at, socklen_t len) noexcept;
// Whether `at` is in the directive's allow= networks.
inline bool ngx_http_resend_confirmation_allowed(const ngx_http_resend_confirmation_redis_conf_t *conf,
                                                 const ngx_sockaddr_t &at) noexcept {
    return conf->allow != nullptr &&
           ngx_cidr_match(const_cast<struct sockaddr *>(&at.sockaddr), conf->allow) == NGX_OK;
}
// An address Sentinel or a cluster names (an IP address: neither names
// hosts unless configured to) as a socket address; false for a name.
bool ngx_http_resend_confirmation_endpoint_sockaddr(const resend::redis_endpoint &at, ngx_sockaddr_t *out,
                                                    socklen_t *len) noexcept;
ngx_str_t ngx_http_resend_confirmation_link_name(ngx_http_resend_confirmation_link_t *link) noexcept;
ngx_cycle_t *ngx_http_resend_confirmation_link_cycle(ngx_http_resend_confirmation_link_t *link) noexcept;
ngx_http_resend_confirmation_redis_conf_t *
ngx_http_resend_confirmation_link_conf(ngx_http_resend_confirmation_link_t *link) noexcept;
// Escapes a Redis text into `out` for the log (it cannot forge lines).
size_t ngx_http_resend_confirmation_link_escape(std::string_view text, u_char (&out)[160]) noexcept;
// Called by redis_tls.cpp when the TLS handshake of the link's connection
// `c` is over: `failure` is null when it succeeded (and was verified).
void ngx_http_resend_confirmation_link_secured(ngx_connection_t *c, const char *failure) noexcept;

// link_deadlines.cpp: pending entries and their deadlines.
// A new entry for `args` at the end of the output; null when out of memory.
ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_append(ngx_http_resend_confirmation_link_t *link,
                                         std::span<const std::string_view> args,
                                         ngx_http_resend_confirmation_pending_kind_t kind, ngx_http_request_t *r,
                                         ngx_msec_t deadline,
                                         ngx_http_resend_confirmation_link_done_pt done = nullptr,
                                         void *data = nullptr) noexcept;
// Puts an entry's command (again) at the end of the output.
bool ngx_http_resend_confirmation_link_encode(ngx_http_resend_confirmation_link_t *link,
                                              ngx_http_resend_confirmation_pending_t *entry,
                                              std::span<const std::string_view> args) noexcept;
// True while `deadline` is still ahead.
inline bool ngx_http_resend_confirmation_before(ngx_msec_t deadline) noexcept {
    return static_cast<ngx_msec_int_t>(deadline - ngx_current_msec) > 0;
}
// The overdue timer, set at the earliest deadline of what is in flight,
// kept, or waiting for its acknowledgement.
void ngx_http_resend_confirmation_link_arm_overdue(ngx_http_resend_confirmation_link_t *link) noexcept;
// The overdue timer is at or before `deadline` (moved there if later).
void ngx_http_resend_confirmation_link_due_by(ngx_http_resend_confirmation_link_t *link, ngx_msec_t deadline) noexcept;
void ngx_http_resend_confirmation_link_overdue(ngx_event_t *ev) noexcept;
// The link's commands in flight are now `count` (the metrics add up).
void ngx_http_resend_confirmation_link_count_in_flight(ngx_http_resend_confirmation_link_t *link,
                                                       ngx_uint_t count) noexcept;

// redis_ack.cpp: when a stored record counts, and which master may take one.
// The link's replicas=N (set at create; a cluster's from its slot map).
void ngx_http_resend_confirmation_ack_init(ngx_http_resend_confirmation_link_t *link) noexcept;
void ngx_http_resend_confirmation_ack_set_replicas(ngx_http_resend_confirmation_link_t *link,
                                                   ngx_uint_t replicas) noexcept;
// Whether the handshake asks ROLE (Sentinel, or replicas to count).
bool ngx_http_resend_confirmation_ack_asks_role(ngx_http_resend_confirmation_link_t *link) noexcept;
// ROLE's reply: false (and the connection failed) unless the node is a
// master with at least N replicas connected.
bool ngx_http_resend_confirmation_ack_role(ngx_http_resend_confirmation_link_t *link,
                                           const resend::redis_reply &reply) noexcept;
// A record was queued (WAIT follows its batch).
void ngx_http_resend_confirmation_ack_queued(ngx_http_resend_confirmation_link_t *link,
                                             ngx_http_resend_confirmation_pending_t *entry) noexcept;
// Before a write: WAIT N after the records queued since the last one.
bool ngx_http_resend_confirmation_ack_end_batch(ngx_http_resend_confirmation_link_t *link) noexcept;
// A record's reply (not an error): true when it waits for its WAIT (the
// entry, out of its queue, is taken), false when it is stored already.
bool ngx_http_resend_confirmation_ack_hold(ngx_http_resend_confirmation_link_t *link,
                                           ngx_http_resend_confirmation_pending_t *entry,
                                           const resend::redis_reply &reply) noexcept;
// WAIT's reply: the held records are stored, or (too few replicas) their
// outcome is unknown and the connection fails. False when it failed.
bool ngx_http_resend_confirmation_ack_waited(ngx_http_resend_confirmation_link_t *link,
                                             const resend::redis_reply &reply) noexcept;
// Answers the held records as `fate` (the connection failed: unknown).
void ngx_http_resend_confirmation_ack_release(ngx_http_resend_confirmation_link_t *link,
                                              ngx_http_resend_confirmation_fate_t fate) noexcept;
// The connection closed: counts start afresh.
void ngx_http_resend_confirmation_ack_reset(ngx_http_resend_confirmation_link_t *link) noexcept;

// redis_sentinel.cpp, redis_cluster.cpp: the topologies.
// `sentinel=` and `cluster` of resend_confirmation_redis: `addresses`, of
// ngx_addr_t, the Sentinels' or the nodes'.
char *ngx_http_resend_confirmation_sentinel_configure(ngx_conf_t *cf,
                                                      ngx_http_resend_confirmation_redis_conf_t *redis,
                                                      ngx_array_t *addresses, ngx_str_t *master,
                                                      ngx_str_t *password) noexcept;
char *ngx_http_resend_confirmation_cluster_configure(ngx_conf_t *cf,
                                                     ngx_http_resend_confirmation_redis_conf_t *redis,
                                                     ngx_array_t *addresses) noexcept;
// The directive's link in a worker, with its topology; null when out of memory.
ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_sentinel_link_create(ngx_http_resend_confirmation_redis_conf_t *conf,
                                                  ngx_cycle_t *cycle) noexcept;
ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_cluster_link_create(ngx_http_resend_confirmation_redis_conf_t *conf,
                                                 ngx_cycle_t *cycle) noexcept;
// Ends the topology's state with its directive's link (and its other links).
void ngx_http_resend_confirmation_sentinel_destroy(void *state) noexcept;
void ngx_http_resend_confirmation_cluster_destroy(void *state) noexcept;

// redis_tls.cpp: TLS to Redis.
// A `tls` or `tls_*=` parameter of resend_confirmation_redis: NGX_OK taken,
// NGX_ERROR invalid, NGX_DECLINED not one of them.
ngx_int_t ngx_http_resend_confirmation_tls_parameter(ngx_conf_t *cf,
                                                     ngx_http_resend_confirmation_redis_conf_t *redis,
                                                     ngx_str_t *value) noexcept;
// After the parameters: checks them and creates the TLS context (nginx -t errors).
char *ngx_http_resend_confirmation_tls_configure(ngx_conf_t *cf,
                                                 ngx_http_resend_confirmation_redis_conf_t *redis,
                                                 ngx_url_t *url) noexcept;
// Starts the TLS handshake on the link's connected `c`, within `timeout`;
// ends in ngx_http_resend_confirmation_link_secured().
void ngx_http_resend_confirmation_tls_handshake(ngx_connection_t *c,
                                                ngx_http_resend_confirmation_redis_conf_t *redis,
                                                ngx_msec_t timeout) noexcept;
// Ends TLS on `c` (no close_notify wait) before it is closed.
void ngx_http_resend_confirmation_tls_shutdown(ngx_connection_t *c) noexcept;
// The first bytes a link read, or its end before any (n <= 0, also a failed
// write): logs a hint when a plain link seems to talk to a TLS server, or a
// TLS link without a client certificate to one that requires it (`name`:
// the link's, a cluster node's or the master's address).
void ngx_http_resend_confirmation_tls_hint(ngx_log_t *log, ngx_http_resend_confirmation_redis_conf_t *redis,
                                           const ngx_str_t &name, const u_char *data, ssize_t n) noexcept;

// --- the link's state (the files of the link share it) -------------------------

enum class ngx_http_resend_confirmation_link_state_t : unsigned char {
    down, resolving, connecting, securing, handshaking, up
};

// The connection's output: RESP bytes not yet written, data[sent .. size).
struct ngx_http_resend_confirmation_link_output_t {
    u_char *data;
    size_t size, sent, capacity;
    size_t handshake_unsent;   // the first bytes of data[sent ..] that are the handshake's
    size_t appended, written;  // bytes queued, and sent, since the connection began
};

// The acknowledgement rule's part of a link (redis_ack.cpp).
struct ngx_http_resend_confirmation_link_ack_t {
    ngx_uint_t replicas;      // N: WAIT N after each batch of records; 0: a reply is enough
    ngx_uint_t unwaited;      // records queued since the last WAIT (or needing one since)
    ngx_uint_t batch;         // WAITs appended so far: a record queued at `batch` has none behind it yet
    ngx_queue_t replicating;  // records Redis stored, waiting for their WAIT's reply
    u_char wait_count[NGX_INT_T_LEN];    // WAIT's arguments as text, made when they change:
    size_t wait_count_len;               // N,
    u_char wait_timeout[NGX_INT_T_LEN];  // and its timeout: half the directive's, in ms
    size_t wait_timeout_len;
};

// Error replies after the first are counted and summed up once a second.
struct ngx_http_resend_confirmation_link_refusals_t {
    ngx_event_t summary;  // timer set: error replies are counted, not logged
    ngx_uint_t unlogged;
    u_char last[160];     // the last one counted, escaped
    size_t last_len;
};

// One connection to one Redis, and everything waiting on it. More than 20
// fields because a link is three things at once that share one lifetime:
// where it connects, the connection, and the commands on it; the output,
// the acknowledgement rule and the refusal log are grouped apart.
struct ngx_http_resend_confirmation_link_s {
    ngx_http_resend_confirmation_redis_conf_t *conf;
    const ngx_http_resend_confirmation_topology_t *topology;  // null: a single Redis
    void *topology_data;  // the Sentinels' or the cluster's state
    ngx_http_resend_confirmation_link_push_pt push;  // null: not subscribed
    ngx_str_t name;       // for logs: the configured address, or a cluster node's
    ngx_cycle_t *cycle;
    ngx_log_t *log;
    ngx_pool_t *pool;  // pending entries

    // Where: the name's latest address, the Sentinels' answer or a node's.
    bool fixed;                     // sockaddr is the address (a cluster node's)
    ngx_resolver_ctx_t *resolving;  // the name's resolution in flight
    ngx_sockaddr_t sockaddr;
    socklen_t socklen;              // 0: conf->addr
    ngx_uint_t next_address;        // of the name's addresses, the one to try next

    // The connection.
    ngx_peer_connection_t peer;
    ngx_http_resend_confirmation_link_state_t state;
    resend::reply_reader *reader;
    ngx_log_t connection_log;   // the connection's log: nginx's lines name Redis
    ngx_msec_t connect_start;   // connect_timeout covers TCP and TLS
    size_t received;            // bytes read on this connection
    ngx_uint_t handshake_left;  // handshake replies still to come

    // The commands.
    ngx_queue_t pending;   // in flight, oldest first: the n-th reply is the n-th entry's
    ngx_uint_t in_flight;  // entries in `pending`
    ngx_queue_t kept;      // records to send again once connected (topology keeps_unsent)
    ngx_queue_t spare;     // recycled entries
    ngx_event_t overdue;   // fires at the earliest deadline
    ngx_event_t hold_down; // timer set: Redis was just found down; answer at once, do not reconnect

    ngx_http_resend_confirmation_link_output_t out;
    ngx_http_resend_confirmation_link_ack_t ack;
    ngx_http_resend_confirmation_link_refusals_t refusals;
};

// Both live in the link's pool, freed with it, never destroyed.
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_pending_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_link_t>);

// Whether the link still has the connection numbered `connection`: what
// a reply set off may have failed it (and connected anew).
inline bool ngx_http_resend_confirmation_link_same(ngx_http_resend_confirmation_link_t *link,
                                                   ngx_atomic_uint_t connection) noexcept {
    return link->peer.connection != nullptr && link->peer.connection->number == connection;
}

// Writes what is queued after this loop turn.
void ngx_http_resend_confirmation_link_flush(ngx_http_resend_confirmation_link_t *link) noexcept;

// Starts a timer of a topology's own, cancelable: a shutting-down worker
// does not wait for it.
inline void ngx_http_resend_confirmation_start_timer(ngx_event_t *ev, ngx_event_handler_pt handler, void *data,
                                                     ngx_log_t *log, ngx_msec_t after) noexcept {
    ev->handler = handler;
    ev->data = data;
    ev->log = log;
    ev->cancelable = 1;
    ngx_add_timer(ev, after);
}
