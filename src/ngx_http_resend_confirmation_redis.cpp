// The Redis link: one connection per worker and Redis address, on nginx's
// own event loop (ngx_event_connect_peer, nginx timers), never blocking. It
// decides when to connect, what may be written, which reply belongs to
// which request, and when the connection has failed; it knows nothing of
// XADD or of HTTP.
//
// - Commands of concurrent requests are appended to one output buffer and
//   written together from a posted write event: one write per loop turn.
// - Replies come back in command order; `pending` holds one entry per
//   command in flight, so the n-th reply belongs to the n-th entry.
// - AUTH and SELECT are queued first on every (re)connect, and nothing else
//   is written until Redis has accepted them: a command pipelined behind a
//   refused AUTH would run as the default user.
// - A request that goes away leaves its entry behind, detached (r == null):
//   the entry lives in the link's pool, not the request's, until its reply.
// - Every command has one deadline, `timeout` after it was handed to the
//   link, whatever it waits for (connect, AUTH/SELECT, Redis). A request
//   whose command is still unwritten at its deadline (queued behind the
//   handshake) takes it back and is answered alone; the connection attempt
//   goes on for later ones.
// - Any error (connect, write, protocol, a handshake refusal, a written
//   command outliving its deadline, Redis closing) fails the connection:
//   every pending request is answered at once through the failure policy,
//   told whether its command was written (then Redis may have it), and for
//   100 ms no new connection is tried (requests are answered at once).
// - Error replies are logged once, then summed up at most once a second.
// - An address given by name is resolved again on every connect with the
//   `resolver` of the directive's level, when one is configured; without
//   one, the address found at start is kept.
// - With `tls`, the TLS handshake (redis_tls.cpp) comes between TCP connect
//   and AUTH/SELECT, within connect_timeout: TCP -> TLS -> AUTH/SELECT -> commands.
// - With `sentinel=`, the address is asked of the Sentinels on every connect
//   (redis_sentinel.cpp) in place of the name's resolution, ROLE ends the
//   handshake and must say "master", and a READONLY or MASTERDOWN reply
//   fails the connection as a change of master. A request whose command was
//   not written whole (or was refused that way) is kept and sent again once
//   the link has connected to the master Sentinel names, within its
//   deadline; one written and unanswered is not.
// - With `sentinel=` and a master that has replicas (ROLE, at connect), a
//   reply is not an acknowledgement until a replica has the write: each
//   batch of commands written ends with WAIT 1, and its requests are
//   answered once WAIT says a replica has them. A WAIT that says none has
//   fails the connection (the master may have changed: a promoted replica
//   no longer replicates) and its requests get 503; for 5 s the same
//   address is not taken back without a replica.
// - With `cluster`, a link per master node (redis_cluster.cpp picks it by
//   the slot of the command's first key); a MOVED or ASK reply sends the
//   command again to the node it names, within its deadline.

#include "ngx_http_resend_confirmation.h"

#include "core/redis_command.hpp"
#include "core/redis_reply.hpp"
#include "core/redis_topology.hpp"

#include <new>

#include "core/log_text.hpp"

// After a failure, the link answers at once for this long, then the next
// request tries to connect again: at most one attempt per 100 ms.
static const ngx_msec_t hold_down_time = 100;
// Error replies after the first are summed up once per this interval.
static const ngx_msec_t error_summary_interval = 1000;
// A master whose WAIT found no replica is not taken back without one for this long.
static const ngx_msec_t shortfall_hold = 5000;

struct ngx_http_resend_confirmation_pending_s {
    ngx_queue_t queue;      // in link->pending (in flight) or link->spare
    ngx_http_request_t *r;  // null: a handshake command, or the request went away
    ngx_msec_t deadline;    // when its reply is overdue
    ngx_msec_t queued;      // when it was handed to the link (reply time)
    size_t start, end;      // its bytes in the connection's output, counted from its start
    std::string_view command;  // its name (args[0], a literal), for the log
    bool handshake;         // AUTH, SELECT or ROLE: an error fails the connection
    std::span<const std::string_view> args;  // a request's command (r's pool), to send again
    ngx_uint_t redirects;   // MOVED/ASK followed so far
    ngx_http_resend_confirmation_link_done_pt done;  // its way back; null: nobody waits for it
    void *data;             // done's (a request's command: r)
    // Where its sender keeps it (a request's ctx->pending; null: nowhere):
    // pointed at the entry that carries the command on after a redirect,
    // cleared when it is over or detached.
    ngx_http_resend_confirmation_pending_t **holder;
    bool wait;              // WAIT after a batch (sentinel= with replicas)
    bool replay;            // the spool's record: treated as a request's
    resend::reply_kind held_kind;  // a stored reply held for WAIT: its kind and integer,
    long long held_integer;        // for done (what a script answered)
};

namespace {
enum class link_state : unsigned char { down, resolving, connecting, securing, handshaking, up };
}  // namespace

struct ngx_http_resend_confirmation_link_s {
    ngx_http_resend_confirmation_redis_conf_t *conf;
    ngx_str_t name;  // for logs: the configured address, or a cluster node's
    ngx_cycle_t *cycle;
    ngx_http_resend_confirmation_cluster_t *cluster;  // a cluster's node (or its first seed)
    void *sentinel;  // the Sentinels' state (redis_sentinel.cpp)
    ngx_queue_t kept;  // requests to send again once connected (sentinel=)
    ngx_uint_t replicas;  // the master's replicas, as ROLE said: WAIT after each batch
    ngx_uint_t unwaited;  // requests queued since the last WAIT
    ngx_queue_t replicating;  // requests Redis stored, waiting for their WAIT's reply
    ngx_sockaddr_t shortfall;  // a master whose WAIT found no replica ...
    socklen_t shortfall_len;
    ngx_msec_t shortfall_time;  // ... and when
    bool fixed;  // sockaddr is the address (a cluster node's)
    bool close_when_idle;  // a Sentinel's link: closed once it has its answers
    ngx_log_t *log;
    ngx_pool_t *pool;  // pending entries and the output buffer
    ngx_peer_connection_t peer;
    link_state state;
    resend::reply_reader *reader;

    u_char *out;  // RESP bytes not yet written: out[sent .. size)
    size_t out_size, out_sent, out_capacity;
    size_t handshake_unsent;   // the first bytes of out[sent ..] that are AUTH/SELECT
    size_t appended, written;  // bytes queued, and sent, since the connection began
    ngx_uint_t handshake_left; // AUTH/SELECT replies still to come

    ngx_queue_t pending;  // commands in flight, oldest first
    ngx_uint_t in_flight; // entries in `pending`
    ngx_queue_t spare;    // recycled entries
    ngx_event_t overdue;  // fires at the oldest command's deadline
    ngx_event_t hold_down;  // timer set: Redis was just found down; answer at once, do not reconnect
    ngx_resolver_ctx_t *resolving;  // the name's resolution in flight
    ngx_sockaddr_t sockaddr;        // where to connect: the name's latest address
    socklen_t socklen;              // 0: conf->addr
    ngx_uint_t next_address;        // of the name's addresses, the one to try next
    ngx_msec_t connect_start;       // connect_timeout covers TCP and TLS
    size_t received;                // bytes read on this connection
    ngx_log_t connection_log;       // the connection's log: nginx's lines name Redis

    ngx_event_t error_summary;  // timer set: error replies are counted, not logged
    ngx_uint_t errors_unlogged;
    u_char last_error[160];     // the last one counted, escaped
    size_t last_error_len;
    u_char wait_timeout[NGX_INT_T_LEN];  // WAIT's timeout: half the directive's, in ms
    size_t wait_timeout_len;
};

// Both live in the link's pool, freed with it, never destroyed.
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_pending_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_link_t>);

static void ngx_http_resend_confirmation_link_fail(ngx_http_resend_confirmation_link_t *link,
                                                   const char *why) noexcept;
static void ngx_http_resend_confirmation_link_write(ngx_event_t *wev) noexcept;
static void ngx_http_resend_confirmation_link_read(ngx_event_t *rev) noexcept;
static bool ngx_http_resend_confirmation_link_connect_peer(ngx_http_resend_confirmation_link_t *link) noexcept;
static bool ngx_http_resend_confirmation_link_resolve(ngx_http_resend_confirmation_link_t *link) noexcept;
static void ngx_http_resend_confirmation_link_close_connection(ngx_http_resend_confirmation_link_t *link) noexcept;
static void ngx_http_resend_confirmation_link_secure(ngx_http_resend_confirmation_link_t *link,
                                                     ngx_connection_t *c) noexcept;
static u_char *ngx_http_resend_confirmation_link_log_context(ngx_log_t *log, u_char *buf, size_t len) noexcept;
static void ngx_http_resend_confirmation_link_finish(ngx_http_resend_confirmation_link_t *link,
                                                     ngx_http_resend_confirmation_pending_t *entry,
                                                     const resend::redis_reply *reply,
                                                     ngx_http_resend_confirmation_fate_t fate) noexcept;
static void ngx_http_resend_confirmation_link_watch_kept(ngx_http_resend_confirmation_link_t *link) noexcept;
static void ngx_http_resend_confirmation_link_requeue(ngx_http_resend_confirmation_link_t *link) noexcept;
static bool ngx_http_resend_confirmation_link_master(ngx_http_resend_confirmation_link_t *link,
                                                     const resend::redis_reply &reply) noexcept;
static bool ngx_http_resend_confirmation_link_same(ngx_http_resend_confirmation_link_t *link,
                                                   ngx_atomic_uint_t connection) noexcept;
static void ngx_http_resend_confirmation_link_flush(ngx_http_resend_confirmation_link_t *link) noexcept;
static bool ngx_http_resend_confirmation_link_replicated(ngx_http_resend_confirmation_link_t *link,
                                                        const resend::redis_reply &reply,
                                                        ngx_atomic_uint_t connection) noexcept;
static void ngx_http_resend_confirmation_link_unreplicated(ngx_http_resend_confirmation_link_t *link,
                                                          ngx_http_resend_confirmation_fate_t fate) noexcept;
static void ngx_http_resend_confirmation_link_arm_overdue(ngx_http_resend_confirmation_link_t *link) noexcept;

// --- output buffer --------------------------------------------------------------

static bool ngx_http_resend_confirmation_link_reserve(ngx_http_resend_confirmation_link_t *link,
                                                      size_t more) noexcept {
    if (link->out_sent == link->out_size) link->out_sent = link->out_size = 0;
    if (link->out_size + more <= link->out_capacity) return true;
    // Grows to the largest burst seen and stays there: no allocation per
    // request once the worker is warm.
    size_t capacity = ngx_max(link->out_capacity * 2, link->out_size + more);
    capacity = ngx_max(capacity, (size_t) 4096);
    auto *bigger = static_cast<u_char *>(ngx_alloc(capacity, link->log));
    if (bigger == nullptr) return false;
    if (link->out != nullptr) {
        ngx_memcpy(bigger, link->out + link->out_sent, link->out_size - link->out_sent);
        ngx_free(link->out);
    }
    link->out_size -= link->out_sent;
    link->out_sent = 0;
    link->out = bigger;
    link->out_capacity = capacity;
    return true;
}

// The link's commands in flight are now `count`; the metrics add up the
// change (a cluster's links to its masters share one name).
static void ngx_http_resend_confirmation_link_count_in_flight(ngx_http_resend_confirmation_link_t *link,
                                                              ngx_uint_t count) noexcept {
    ngx_http_resend_confirmation_metrics_in_flight(
        link->conf->metrics, static_cast<ngx_int_t>(count) - static_cast<ngx_int_t>(link->in_flight));
    link->in_flight = count;
}

// Writes `args` to the output buffer for `entry` (its deadline set), which
// goes in flight.
static bool ngx_http_resend_confirmation_link_encode(ngx_http_resend_confirmation_link_t *link,
                                                     ngx_http_resend_confirmation_pending_t *entry,
                                                     std::span<const std::string_view> args) noexcept {
    if (!ngx_http_resend_confirmation_link_reserve(link, resend::resp_size(args))) return false;
    u_char *end = reinterpret_cast<u_char *>(
        resend::resp_write(reinterpret_cast<char *>(link->out + link->out_size), args));
    entry->start = link->appended;
    link->appended += end - (link->out + link->out_size);
    entry->end = link->appended;
    link->out_size = end - link->out;
    entry->command = args[0];
    ngx_queue_insert_tail(&link->pending, &entry->queue);
    ngx_http_resend_confirmation_link_count_in_flight(link, link->in_flight + 1);
    // The overdue timer stays at or before every deadline in flight: only a
    // command due before it (one sent again by a redirect, or queued behind
    // a handshake command with a later deadline) moves it.
    if (!link->overdue.timer_set ||
        static_cast<ngx_msec_int_t>(link->overdue.timer.key - entry->deadline) > 0) {
        if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
        ngx_msec_int_t left = static_cast<ngx_msec_int_t>(entry->deadline - ngx_current_msec);
        ngx_add_timer(&link->overdue, left > 0 ? left : 1);
    }
    return true;
}

static ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_append(ngx_http_resend_confirmation_link_t *link,
                                         std::span<const std::string_view> args,
                                         ngx_http_request_t *r, ngx_msec_t deadline,
                                         bool handshake = false,
                                         ngx_http_resend_confirmation_link_done_pt done = nullptr,
                                         void *data = nullptr) noexcept {
    ngx_http_resend_confirmation_pending_t *entry;
    if (!ngx_queue_empty(&link->spare)) {
        ngx_queue_t *q = ngx_queue_head(&link->spare);
        ngx_queue_remove(q);
        entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
    } else {
        entry = static_cast<ngx_http_resend_confirmation_pending_t *>(
            ngx_palloc(link->pool, sizeof(ngx_http_resend_confirmation_pending_t)));
        if (entry == nullptr) return nullptr;
    }
    entry->deadline = deadline;
    entry->queued = ngx_current_msec;
    if (!ngx_http_resend_confirmation_link_encode(link, entry, args)) {
        ngx_queue_insert_head(&link->spare, &entry->queue);
        return nullptr;
    }
    entry->r = r;
    entry->handshake = handshake;
    entry->args = r != nullptr ? args : std::span<const std::string_view>();
    entry->redirects = 0;
    entry->done = done;
    entry->data = data;
    entry->holder = nullptr;
    entry->wait = false;
    entry->replay = false;
    if (r != nullptr) ++link->unwaited;
    return entry;
}

// --- connection ---------------------------------------------------------------------

static void ngx_http_resend_confirmation_link_close(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->state == link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::closed);
    }
    ngx_http_resend_confirmation_link_close_connection(link);
    link->state = link_state::down;
    link->out_size = link->out_sent = 0;
    link->handshake_unsent = 0;
    link->handshake_left = 0;
    link->appended = link->written = 0;
    link->replicas = link->unwaited = 0;
    link->reader->reset();
}

static bool ngx_http_resend_confirmation_link_handshake(ngx_http_resend_confirmation_link_t *link) noexcept {
    auto *conf = link->conf;
    ngx_uint_t commands = 0;
    ngx_msec_t deadline = ngx_current_msec + conf->connect_timeout + conf->timeout;
    if (conf->password.len != 0) {
        std::string_view auth[3] = {"AUTH"};
        size_t n = 1;
        if (conf->user.len != 0) {
            auth[n++] = {reinterpret_cast<const char *>(conf->user.data), conf->user.len};
        }
        auth[n++] = {reinterpret_cast<const char *>(conf->password.data), conf->password.len};
        if (ngx_http_resend_confirmation_link_append(link, {auth, n}, nullptr, deadline, true) == nullptr) {
            return false;
        }
        ++commands;
    }
    if (conf->db_text.len != 0) {
        std::string_view select[2] = {"SELECT",
                                      {reinterpret_cast<const char *>(conf->db_text.data),
                                       conf->db_text.len}};
        if (ngx_http_resend_confirmation_link_append(link, select, nullptr, deadline, true) == nullptr) {
            return false;
        }
        ++commands;
    }
    if (conf->sentinel != nullptr) {
        // The address Sentinel gave must be the master's still.
        std::string_view role[1] = {"ROLE"};
        if (ngx_http_resend_confirmation_link_append(link, role, nullptr, deadline, true) == nullptr) {
            return false;
        }
        ++commands;
    }
    link->handshake_unsent = link->out_size;  // the buffer was empty before
    link->handshake_left = commands;
    if (conf->script.len != 0) {
        // Not part of the handshake (a refusal is logged, not fatal): the
        // first command once it is accepted, so that EVALSHA finds the script.
        std::string_view load[3] = {"SCRIPT", "LOAD",
                                    {reinterpret_cast<const char *>(conf->script.data), conf->script.len}};
        if (ngx_http_resend_confirmation_link_append(link, load, nullptr, deadline) == nullptr) {
            return false;
        }
    }
    return true;
}

static bool ngx_http_resend_confirmation_link_connect(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (!link->reader->valid()) {  // reset() could not allocate
        link->reader->reset();
        if (!link->reader->valid()) {
            ngx_http_resend_confirmation_link_fail(link, "out of memory");
            return false;
        }
    }
    // AUTH/SELECT first in the buffer, before any command queued while
    // the name resolves or the connection is made.
    if (!ngx_http_resend_confirmation_link_handshake(link)) {
        ngx_http_resend_confirmation_link_fail(link, "out of memory");
        return false;
    }
    ngx_http_resend_confirmation_link_requeue(link);
    if (link->conf->sentinel != nullptr) {
        link->state = link_state::resolving;
        ngx_http_resend_confirmation_sentinel_discover(link, link->conf, &link->sentinel);
        return link->state != link_state::down;
    }
    if (link->conf->host.len != 0 && !link->fixed) return ngx_http_resend_confirmation_link_resolve(link);
    return ngx_http_resend_confirmation_link_connect_peer(link);
}

// The requests kept from the last connection go after the new handshake,
// in their order, with their deadlines; those whose client left are dropped.
static void ngx_http_resend_confirmation_link_requeue(ngx_http_resend_confirmation_link_t *link) noexcept {
    while (!ngx_queue_empty(&link->kept)) {
        ngx_queue_t *q = ngx_queue_head(&link->kept);
        ngx_queue_remove(q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (entry->r == nullptr) {
            ngx_queue_insert_tail(&link->spare, q);
        } else if (!ngx_http_resend_confirmation_link_encode(link, entry, entry->args)) {
            ngx_queue_insert_tail(&link->spare, q);
            ngx_http_resend_confirmation_link_finish(link, entry, nullptr, ngx_http_resend_confirmation_fate_t::unsent);
        } else {
            ++link->unwaited;  // confirmed by the next WAIT, as when it was first queued
        }
    }
}

// Opens the TCP connection to the current address.
static bool ngx_http_resend_confirmation_link_connect_peer(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_peer_connection_t *peer = &link->peer;
    ngx_memzero(peer, sizeof(ngx_peer_connection_t));
    if (link->socklen != 0) {
        peer->sockaddr = &link->sockaddr.sockaddr;
        peer->socklen = link->socklen;
    } else {
        peer->sockaddr = link->conf->addr.sockaddr;
        peer->socklen = link->conf->addr.socklen;
    }
    peer->name = &link->name;
    peer->get = ngx_event_get_peer;
    peer->log = &link->connection_log;
    peer->log_error = NGX_ERROR_ERR;
    // A peer that vanished silently (NAT, failover) is noticed on an idle
    // link too: nginx sets SO_KEEPALIVE before connecting.
    peer->so_keepalive = peer->sockaddr->sa_family != AF_UNIX;
    link->connection_log.action = const_cast<char *>("connecting");
    link->connect_start = ngx_current_msec;
    link->received = 0;

    ngx_int_t rc = ngx_event_connect_peer(peer);
    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_resend_confirmation_link_fail(link, "cannot connect");
        return false;
    }
    ngx_connection_t *c = peer->connection;
    c->data = link;
    c->log = &link->connection_log;
    c->read->log = c->log;
    c->write->log = c->log;
    if (link->conf->tls != nullptr) {
        // TLS keeps its state in the connection's pool; it goes on close.
        c->pool = ngx_create_pool(1024, c->log);
        if (c->pool == nullptr) {
            ngx_http_resend_confirmation_link_fail(link, "out of memory");
            return false;
        }
    }
    c->read->handler = ngx_http_resend_confirmation_link_read;
    c->write->handler = ngx_http_resend_confirmation_link_write;
    link->state = link_state::connecting;
    if (peer->sockaddr->sa_family != AF_UNIX) {
        // Small pipelined writes go out at once. The connection is new
        // (tcp_nodelay unset), so this sets TCP_NODELAY; a failure is
        // logged by nginx and only costs latency.
        (void) ngx_tcp_nodelay(c);
    }

    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, link->conf->connect_timeout);
    } else {
        ngx_post_event(c->write, &ngx_posted_events);
    }
    return true;
}

// Answers every request in flight through the failure policy, closes the
// connection and starts the hold-down.
static void ngx_http_resend_confirmation_link_fail(ngx_http_resend_confirmation_link_t *link,
                                                   const char *why) noexcept {
    ngx_log_error(NGX_LOG_ERR, link->log, 0, "resend_confirmation: redis %V: %s",
                  &link->name, why);
    if (link->state != link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connect_failed);
    }
    size_t written = link->written;  // close() starts the count afresh
    // Stored on a master no replica confirmed: written, fate unknown.
    ngx_http_resend_confirmation_link_unreplicated(link, ngx_http_resend_confirmation_fate_t::unknown);
    ngx_http_resend_confirmation_link_close(link);
    if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
    ngx_add_timer(&link->hold_down, hold_down_time);

    // Take the waiting entries out first: answering a request may, in
    // principle, send a new command on this link.
    ngx_queue_t failed;
    ngx_queue_init(&failed);
    if (!ngx_queue_empty(&link->pending)) {
        ngx_queue_add(&failed, &link->pending);
        ngx_queue_init(&link->pending);
    }
    ngx_http_resend_confirmation_link_count_in_flight(link, 0);
    while (!ngx_queue_empty(&failed)) {
        ngx_queue_t *q = ngx_queue_head(&failed);
        ngx_queue_remove(q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        // Written whole: Redis may have run it. Less: a partial command is
        // dropped by Redis with the connection.
        bool unsent = written < entry->end;
        if (unsent && link->conf->sentinel != nullptr && entry->r != nullptr &&
            static_cast<ngx_msec_int_t>(entry->deadline - ngx_current_msec) > 0) {
            // The master Sentinel names next may still take it.
            ngx_queue_insert_tail(&link->kept, q);
            continue;
        }
        ngx_queue_insert_tail(&link->spare, q);
        ngx_http_resend_confirmation_link_finish(link, entry, nullptr,
                                                 unsent ? ngx_http_resend_confirmation_fate_t::unsent
                                                        : ngx_http_resend_confirmation_fate_t::unknown);
    }
    ngx_http_resend_confirmation_link_watch_kept(link);
}

// An entry is over: its reply (null: none) and fate go back to whoever
// sent it, unless nobody waits any more.
static void ngx_http_resend_confirmation_link_finish(ngx_http_resend_confirmation_link_t *link,
                                                     ngx_http_resend_confirmation_pending_t *entry,
                                                     const resend::redis_reply *reply,
                                                     ngx_http_resend_confirmation_fate_t fate) noexcept {
    if (entry->holder != nullptr) {
        *entry->holder = nullptr;
        entry->holder = nullptr;
    }
    if (entry->done != nullptr) entry->done(link, entry->data, reply, fate);
}

// Kept requests wait for the hold-down to end (it then connects) and no
// longer than their deadline (the overdue timer answers them).
static void ngx_http_resend_confirmation_link_watch_kept(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (ngx_queue_empty(&link->kept)) return;
    auto *oldest = ngx_queue_data(ngx_queue_head(&link->kept), ngx_http_resend_confirmation_pending_t, queue);
    if (link->overdue.timer_set) {
        if (static_cast<ngx_msec_int_t>(link->overdue.timer.key - oldest->deadline) <= 0) return;
        ngx_del_timer(&link->overdue);
    }
    ngx_msec_int_t left = static_cast<ngx_msec_int_t>(oldest->deadline - ngx_current_msec);
    ngx_add_timer(&link->overdue, left > 0 ? left : 1);
}

// Redis closed a connection with nothing in flight (its idle `timeout`, a
// CLIENT KILL, a proxy): not a failure; the next command reconnects.
static void ngx_http_resend_confirmation_link_drop_idle(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_log_error(NGX_LOG_INFO, link->log, 0, "resend_confirmation: redis %V closed an idle connection",
                  &link->name);
    ngx_http_resend_confirmation_link_close(link);
}

// --- events ---------------------------------------------------------------------------

// The connection is open (and secured, with tls): AUTH/SELECT may go, or,
// without them, the link is ready.
static void ngx_http_resend_confirmation_link_opened(ngx_http_resend_confirmation_link_t *link) noexcept {
    link->state = link->handshake_left > 0 ? link_state::handshaking : link_state::up;
    if (link->state == link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connected);
    }
}

static bool ngx_http_resend_confirmation_link_connected(ngx_http_resend_confirmation_link_t *link,
                                                        ngx_connection_t *c) noexcept {
    int err = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) err = ngx_socket_errno;
    if (err != 0) {
        ngx_log_error(NGX_LOG_ERR, link->log, err, "resend_confirmation: connect() to redis %V failed",
                      &link->name);
        return false;
    }
    if (link->conf->tls == nullptr) ngx_http_resend_confirmation_link_opened(link);
    return true;
}

static void ngx_http_resend_confirmation_link_write(ngx_event_t *wev) noexcept {
    auto *c = static_cast<ngx_connection_t *>(wev->data);
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(c->data);

    if (wev->timedout) {
        ngx_http_resend_confirmation_link_fail(link, "connect timed out");
        return;
    }
    if (wev->timer_set) ngx_del_timer(wev);
    if (link->state == link_state::connecting) {
        if (!ngx_http_resend_confirmation_link_connected(link, c)) {
            ngx_http_resend_confirmation_link_fail(link, "connection refused or unreachable");
            return;
        }
        c->log->action = nullptr;
        if (link->conf->tls != nullptr) {
            ngx_http_resend_confirmation_link_secure(link, c);
            return;
        }
    }

    if (link->state == link_state::up && link->replicas > 0 && link->unwaited > 0) {
        // The batch's requests are acknowledged once a replica has them.
        std::string_view wait[3] = {"WAIT", "1", {reinterpret_cast<const char *>(link->wait_timeout),
                                                  link->wait_timeout_len}};
        auto *entry = ngx_http_resend_confirmation_link_append(link, wait, nullptr,
                                                               ngx_current_msec + link->conf->timeout);
        if (entry == nullptr) {
            ngx_http_resend_confirmation_link_fail(link, "out of memory");
            return;
        }
        entry->wait = true;
        link->unwaited = 0;
    }
    for (;;) {
        // Until the handshake is accepted, only its own bytes may go.
        size_t writable = link->out_size - link->out_sent;
        if (link->state != link_state::up) writable = ngx_min(writable, link->handshake_unsent);
        if (writable == 0) break;
        ssize_t n = c->send(c, link->out + link->out_sent, writable);
        if (n == NGX_ERROR) {
            if (link->received == 0) ngx_http_resend_confirmation_tls_hint(link->log, link->conf, link->name, nullptr, n);
            ngx_http_resend_confirmation_link_fail(link, "write failed");
            return;
        }
        if (n == NGX_AGAIN) break;
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, link->log, 0,
                       "resend_confirmation: redis write %z bytes, %ui commands in flight", n,
                       link->in_flight);
        link->out_sent += n;
        link->written += n;
        link->handshake_unsent -= ngx_min(link->handshake_unsent, static_cast<size_t>(n));
    }
    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_resend_confirmation_link_fail(link, "cannot watch for writing");
    }
}

// An error reply (OOM, LOADING, READONLY, WRONGTYPE...): the first is
// logged; while Redis keeps refusing, the rest are counted and summed up in
// one line a second. Redis's text is escaped: it cannot forge log lines.
static void ngx_http_resend_confirmation_link_log_refusal(ngx_http_resend_confirmation_link_t *link,
                                                          ngx_http_resend_confirmation_pending_t *entry,
                                                          std::string_view error) noexcept {
    link->last_error_len = resend::escape_for_log(error, reinterpret_cast<char *>(link->last_error),
                                                  sizeof(link->last_error));
    if (link->error_summary.timer_set) {
        ++link->errors_unlogged;
        return;
    }
    ngx_log_error(NGX_LOG_ERR, link->log, 0, "resend_confirmation: redis %V refused %*s: %*s",
                  &link->name, entry->command.size(), entry->command.data(),
                  link->last_error_len, link->last_error);
    ngx_add_timer(&link->error_summary, error_summary_interval);
}

static void ngx_http_resend_confirmation_link_error_summary(ngx_event_t *ev) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ev->data);
    if (link->errors_unlogged == 0) return;  // quiet for a second: the next error is logged
    ngx_log_error(NGX_LOG_ERR, link->log, 0,
                  "resend_confirmation: redis %V refused %ui more commands in the last second, "
                  "the last: %*s",
                  &link->name, link->errors_unlogged, link->last_error_len,
                  link->last_error);
    link->errors_unlogged = 0;
    ngx_add_timer(&link->error_summary, error_summary_interval);
}

// The reply to the oldest command in flight.
static bool ngx_http_resend_confirmation_link_deliver(ngx_http_resend_confirmation_link_t *link,
                                                      const resend::redis_reply &reply) noexcept {
    if (ngx_queue_empty(&link->pending)) {
        ngx_http_resend_confirmation_link_fail(link, "reply without a command");
        return false;
    }
    ngx_atomic_uint_t connection = link->peer.connection->number;
    ngx_queue_t *q = ngx_queue_head(&link->pending);
    ngx_queue_remove(q);
    ngx_queue_insert_tail(&link->spare, q);
    ngx_http_resend_confirmation_link_count_in_flight(link, link->in_flight - 1);
    auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);

    bool ok = reply.kind != resend::reply_kind::error;
    if (entry->handshake && !ok) {
        // A handshake command (AUTH or SELECT) refused: nothing will work.
        u_char text[sizeof(link->last_error)];
        size_t len = resend::escape_for_log(reply.error, reinterpret_cast<char *>(text), sizeof(text));
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "resend_confirmation: redis %V refused the connection handshake: %*s",
                      &link->name, len, text);
        ngx_http_resend_confirmation_link_fail(link, "handshake failed");
        return false;
    }
    if (entry->handshake && entry->command == "ROLE" && !ngx_http_resend_confirmation_link_master(link, reply)) {
        return false;
    }
    if (entry->handshake && --link->handshake_left == 0) {
        // Redis accepted AUTH/SELECT: release the commands queued meanwhile
        // (their deadlines run from when they were queued).
        link->state = link_state::up;
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connected);
        ngx_post_event(link->peer.connection->write, &ngx_posted_events);
    }
    if (!entry->handshake) {
        ngx_http_resend_confirmation_metrics_reply_time(link->conf->metrics,
                                                        ngx_current_msec - entry->queued);
    }
    if (!ok && (entry->r != nullptr || entry->replay) && link->conf->sentinel != nullptr &&
        resend::is_not_master(reply.error)) {
        // Not executed: the master changed. Sent again once Sentinel names
        // the new one, with the requests not yet written; a replay command
        // is busy (the spool keeps its record and replays it later).
        u_char text[sizeof(link->last_error)];
        size_t len = resend::escape_for_log(reply.error, reinterpret_cast<char *>(text), sizeof(text));
        ngx_log_error(NGX_LOG_WARN, link->log, 0, "resend_confirmation: redis %V is no longer the master: %*s",
                      &link->name, len, text);
        if (entry->replay) {
            ngx_http_resend_confirmation_link_finish(link, entry, &reply, ngx_http_resend_confirmation_fate_t::busy);
        } else {
            ngx_queue_remove(q);
            ngx_queue_insert_tail(&link->kept, q);
        }
        ngx_http_resend_confirmation_link_fail(link, "master changed, asking Sentinel again");
        return false;
    }
    resend::redis_redirect to{};
    if (!ok && (entry->r != nullptr || entry->replay) && link->cluster != nullptr) {
        to = resend::parse_redirect(reply.error);
    }
    if (to.kind != resend::redis_redirect::kind_t::none) {
        // Not executed here: the node named serves the slot (an address
        // and a number: nothing to escape).
        ngx_log_error(NGX_LOG_INFO, link->log, 0, "resend_confirmation: redis %V: %*s", &link->name,
                      reply.error.size(), reply.error.data());
    } else if (!ok) {
        ngx_http_resend_confirmation_metrics_refusal(link->conf->metrics, reply.error);
        if (reply.error.starts_with("NOSCRIPT ")) {
            // Answered by sending the script in full (shared limits): not a failure.
            ngx_log_error(NGX_LOG_NOTICE, link->log, 0,
                          "resend_confirmation: redis %V refused %*s: NOSCRIPT, sending the script in full",
                          &link->name, entry->command.size(), entry->command.data());
        } else {
            ngx_http_resend_confirmation_link_log_refusal(link, entry, reply.error);
        }
    }

    // The overdue timer stays where it is (at or before every deadline in
    // flight): when it fires with nothing overdue, it is set again. With
    // nothing in flight, it goes, unless requests wait for WAIT.
    if (ngx_queue_empty(&link->pending) && ngx_queue_empty(&link->replicating) && link->overdue.timer_set) {
        ngx_del_timer(&link->overdue);
    }
    if (entry->wait) return ngx_http_resend_confirmation_link_replicated(link, reply, connection);
    if (ok && (entry->r != nullptr || entry->replay) && link->replicas > 0) {
        // Stored on the master: answered once WAIT says a replica has it.
        entry->held_kind = reply.kind;
        entry->held_integer = reply.integer;
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&link->replicating, q);
        // Its WAIT is in flight behind it, and with it the overdue timer;
        // should it not be, the request is still answered at its deadline.
        if (!link->overdue.timer_set) ngx_http_resend_confirmation_link_arm_overdue(link);
        return true;
    }
    if (to.kind != resend::redis_redirect::kind_t::none && entry->replay) {
        // The spool sends it again from its first unacknowledged record,
        // to the node the map names by then.
        (void) ngx_http_resend_confirmation_cluster_learn(link->cluster, link, to);
        ngx_http_resend_confirmation_link_finish(link, entry, &reply, ngx_http_resend_confirmation_fate_t::unsent);
    } else if (to.kind != resend::redis_redirect::kind_t::none) {
        ngx_http_resend_confirmation_pending_t **holder = entry->holder;
        entry->holder = nullptr;  // the command goes on in another entry, or is over
        if (holder != nullptr) *holder = nullptr;  // (this one is spare now)
        ngx_http_resend_confirmation_cluster_redirect(link->cluster, link, entry->r, entry->args, entry->deadline,
                                                      entry->redirects, to, entry->done, holder);
    } else if (!entry->handshake) {
        // A refusal Redis may not give later (LOADING, OOM, READONLY,
        // MASTERDOWN) is busy: the spool keeps the record.
        ngx_http_resend_confirmation_link_finish(
            link, entry, &reply,
            ok                                            ? ngx_http_resend_confirmation_fate_t::stored
            : resend::redis_cannot_write_now(reply.error) ? ngx_http_resend_confirmation_fate_t::busy
                                                          : ngx_http_resend_confirmation_fate_t::refused);
    }
    return ngx_http_resend_confirmation_link_same(link, connection);
}

// WAIT's reply: the requests stored since the last one are acknowledged
// if a replica has them. If none has, the master may have been replaced by
// its replica (whose replication stopped): they are answered as written but
// unconfirmed, and the link asks Sentinel again.
static bool ngx_http_resend_confirmation_link_replicated(ngx_http_resend_confirmation_link_t *link,
                                                        const resend::redis_reply &reply,
                                                        ngx_atomic_uint_t connection) noexcept {
    bool replicated = reply.kind == resend::reply_kind::integer && reply.integer >= 1;
    if (!replicated) {
        ngx_memcpy(&link->shortfall, &link->sockaddr, link->socklen);
        link->shortfall_len = link->socklen;
        link->shortfall_time = ngx_current_msec;
        ngx_http_resend_confirmation_link_fail(link, "no replica acknowledged the writes: the master may have changed");
        return false;
    }
    ngx_http_resend_confirmation_link_unreplicated(link, ngx_http_resend_confirmation_fate_t::stored);
    return ngx_http_resend_confirmation_link_same(link, connection);
}

// Answers the requests stored and waiting for WAIT with `fate`.
static void ngx_http_resend_confirmation_link_unreplicated(ngx_http_resend_confirmation_link_t *link,
                                                          ngx_http_resend_confirmation_fate_t fate) noexcept {
    ngx_queue_t done;
    ngx_queue_init(&done);
    if (!ngx_queue_empty(&link->replicating)) {
        ngx_queue_add(&done, &link->replicating);
        ngx_queue_init(&link->replicating);
    }
    while (!ngx_queue_empty(&done)) {
        ngx_queue_t *q = ngx_queue_head(&done);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&link->spare, q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        // A replicated reply goes to its handler as Redis sent it (kind and
        // integer: what a script's answer is read by).
        resend::redis_reply held{.kind = entry->held_kind, .error = {}, .integer = entry->held_integer,
                                 .elements = {}, .truncated = false};
        ngx_http_resend_confirmation_link_finish(
            link, entry, fate == ngx_http_resend_confirmation_fate_t::stored ? &held : nullptr, fate);
    }
}

// Whether the link still has the connection numbered `connection`: what
// a reply set off may have failed it (and connected anew).
static bool ngx_http_resend_confirmation_link_same(ngx_http_resend_confirmation_link_t *link,
                                                   ngx_atomic_uint_t connection) noexcept {
    return link->peer.connection != nullptr && link->peer.connection->number == connection;
}

// ROLE's reply on a link to the master Sentinel named: false (and the
// connection failed) unless it says "master".
static bool ngx_http_resend_confirmation_link_master(ngx_http_resend_confirmation_link_t *link,
                                                     const resend::redis_reply &reply) noexcept {
    resend::redis_role role{};
    bool shortfall = link->shortfall_len == link->socklen &&
                     ngx_memcmp(&link->shortfall, &link->sockaddr, link->socklen) == 0 &&
                     ngx_current_msec - link->shortfall_time < shortfall_hold;
    if (resend::parse_role(reply.elements, role) && role.role == "master" && (role.replicas > 0 || !shortfall)) {
        link->replicas = role.replicas;
        return true;
    }
    if (role.role == "master") {
        ngx_log_error(NGX_LOG_WARN, link->log, 0,
                      "resend_confirmation: redis %V: the master Sentinel gave has lost its replicas; "
                      "waiting for Sentinel to name another", &link->name);
        ngx_http_resend_confirmation_link_fail(link, "master without replicas");
        return false;
    }
    u_char text[sizeof(link->last_error)];
    size_t len = resend::escape_for_log(role.role, reinterpret_cast<char *>(text), sizeof(text));
    ngx_log_error(NGX_LOG_WARN, link->log, 0,
                  "resend_confirmation: redis %V: the address Sentinel gave is not the master (ROLE: %*s)",
                  &link->name, len, text);
    ngx_http_resend_confirmation_link_fail(link, "not the master");
    return false;
}

static void ngx_http_resend_confirmation_link_read(ngx_event_t *rev) noexcept {
    auto *c = static_cast<ngx_connection_t *>(rev->data);
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(c->data);
    u_char buffer[4096];

    if (c->close) {
        // worker_shutdown_timeout passed: nginx asks every connection to go.
        if (ngx_queue_empty(&link->pending)) {
            ngx_http_resend_confirmation_link_drop_idle(link);
        } else {
            ngx_http_resend_confirmation_link_fail(link, "worker shutting down");
        }
        return;
    }

    for (;;) {
        ssize_t n = c->recv(c, buffer, sizeof(buffer));
        if (n == NGX_AGAIN) break;
        if (link->received == 0 && !ngx_queue_empty(&link->pending)) {
            ngx_http_resend_confirmation_tls_hint(link->log, link->conf, link->name, buffer, n);
        }
        if (n > 0) link->received += n;
        if (n == 0 || n == NGX_ERROR) {
            if (ngx_queue_empty(&link->pending)) {
                ngx_http_resend_confirmation_link_drop_idle(link);
            } else {
                ngx_http_resend_confirmation_link_fail(link, n == 0 ? "connection closed by redis"
                                                                    : "read failed");
            }
            return;
        }
        if (!link->reader->feed(reinterpret_cast<const char *>(buffer), n)) {
            ngx_http_resend_confirmation_link_fail(link, "cannot buffer the reply");
            return;
        }
        resend::redis_reply reply;
        for (;;) {
            auto status = link->reader->next(reply);
            if (status == resend::reply_reader::status::incomplete) break;
            if (status == resend::reply_reader::status::protocol_error) {
                ngx_http_resend_confirmation_link_fail(link, link->reader->failure());
                return;
            }
            if (!ngx_http_resend_confirmation_link_deliver(link, reply)) return;
        }
    }
    if (link->close_when_idle && ngx_queue_empty(&link->pending)) {
        ngx_http_resend_confirmation_link_close(link);  // a Sentinel's answers are in
        return;
    }
    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_resend_confirmation_link_fail(link, "cannot watch for reading");
    }
}

// Takes the commands first..last (consecutive, none of their bytes
// written) out of the link, and answers their requests: never sent.
static void ngx_http_resend_confirmation_link_take_back(ngx_http_resend_confirmation_link_t *link,
                                                        ngx_http_resend_confirmation_pending_t *first,
                                                        ngx_http_resend_confirmation_pending_t *last) noexcept {
    size_t len = last->end - first->start;
    u_char *from = link->out + link->out_sent + (first->start - link->written);
    u_char *to = link->out + link->out_sent + (last->end - link->written);
    ngx_memmove(from, to, link->out + link->out_size - to);
    link->out_size -= len;
    link->appended -= len;

    ngx_queue_t taken;
    ngx_queue_init(&taken);
    ngx_queue_t *q = &first->queue;
    ngx_uint_t count = 0;
    for (;;) {
        ngx_queue_t *next = ngx_queue_next(q);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&taken, q);
        ++count;
        if (q == &last->queue) break;
        q = next;
    }
    ngx_http_resend_confirmation_link_count_in_flight(link, link->in_flight - count);
    for (q = ngx_queue_head(&link->pending); q != ngx_queue_sentinel(&link->pending); q = ngx_queue_next(q)) {
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (entry->start >= first->start) {
            entry->start -= len;
            entry->end -= len;
        }
    }
    while (!ngx_queue_empty(&taken)) {
        q = ngx_queue_head(&taken);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&link->spare, q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        ngx_http_resend_confirmation_link_finish(link, entry, nullptr, ngx_http_resend_confirmation_fate_t::unsent);
    }
}

// Sets the overdue timer to the earliest deadline in flight, whatever the
// order of the queue: a command sent again (MOVED, ASK) keeps its
// request's deadline, earlier than those of the commands queued before it.
static void ngx_http_resend_confirmation_link_arm_overdue(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
    ngx_http_resend_confirmation_link_watch_kept(link);
    auto watch = [link](ngx_queue_t *queue, bool requests_only) {
        for (ngx_queue_t *q = ngx_queue_head(queue); q != ngx_queue_sentinel(queue); q = ngx_queue_next(q)) {
            auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
            if (requests_only && entry->r == nullptr) continue;
            if (link->overdue.timer_set &&
                static_cast<ngx_msec_int_t>(link->overdue.timer.key - entry->deadline) <= 0) {
                continue;
            }
            if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
            ngx_msec_int_t left = static_cast<ngx_msec_int_t>(entry->deadline - ngx_current_msec);
            ngx_add_timer(&link->overdue, left > 0 ? left : 1);
        }
    };
    watch(&link->pending, false);
    watch(&link->replicating, true);  // those answered alone wait for WAIT with nobody behind them
}

// Answers the request of `entry` now, as written but unconfirmed; the
// entry stays where it is, for its reply, with nobody waiting for it.
static void ngx_http_resend_confirmation_link_answer_alone(ngx_http_resend_confirmation_link_t *link,
                                                           ngx_http_resend_confirmation_pending_t *entry) noexcept {
    ngx_http_resend_confirmation_pending_t alone = *entry;
    ngx_http_resend_confirmation_link_detach(entry);
    ngx_http_resend_confirmation_link_finish(link, &alone, nullptr, ngx_http_resend_confirmation_fate_t::unknown);
}

// One step of the overdue scan, oldest command first; false when nothing
// (more) is overdue. Answering a request may send commands or fail the
// link, so every step that answers one starts the scan again.
static bool ngx_http_resend_confirmation_link_overdue_step(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_http_resend_confirmation_pending_t *first = nullptr, *last = nullptr;
    for (ngx_queue_t *q = ngx_queue_head(&link->pending); q != ngx_queue_sentinel(&link->pending);
         q = ngx_queue_next(q)) {
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        bool due = static_cast<ngx_msec_int_t>(entry->deadline - ngx_current_msec) <= 0;
        if (!entry->handshake && link->written <= entry->start) {
            // Not written yet (behind connecting or the handshake): the
            // overdue ones, consecutive, are taken back and answered alone.
            if (due) {
                if (first == nullptr) first = entry;
                last = entry;
                continue;
            }
            if (first != nullptr) break;
            continue;
        }
        if (!due) continue;
        if (static_cast<ngx_msec_int_t>(entry->deadline - entry->queued) >=
            static_cast<ngx_msec_int_t>(link->conf->timeout)) {
            // Written with the link's whole timeout, or a handshake
            // command: Redis is stalled.
            ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                      ngx_http_resend_confirmation_link_event_t::timed_out);
            ngx_http_resend_confirmation_link_fail(link, "no reply in time");
            return false;
        }
        // Sent again (here by MOVED or ASK, or the script in full after
        // NOSCRIPT) with what was left of its request's time: the request
        // is answered alone, and this Redis, which may be healthy, has the
        // whole timeout to reply before it counts as stalled.
        if (entry->r != nullptr) {  // else the client had gone (or it is the ASKING before one)
            ngx_log_error(NGX_LOG_ERR, link->log, 0,
                          "resend_confirmation: redis %V: no reply in time to a command sent %s", &link->name,
                          entry->redirects > 1   ? "here by redirects"
                          : entry->redirects > 0 ? "here by a redirect"
                                                 : "again with what was left of its request's time");
        }
        entry->redirects = 0;
        entry->deadline = ngx_current_msec + link->conf->timeout;
        entry->queued = ngx_current_msec;
        ngx_http_resend_confirmation_link_answer_alone(link, entry);
        return true;
    }
    if (first != nullptr) {
        ngx_http_resend_confirmation_link_take_back(link, first, last);
        return true;
    }
    // Stored on the master, its WAIT not answered yet: the request's time
    // is up, so it is answered alone as written but unconfirmed.
    for (ngx_queue_t *q = ngx_queue_head(&link->replicating); q != ngx_queue_sentinel(&link->replicating);
         q = ngx_queue_next(q)) {
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (entry->r == nullptr || static_cast<ngx_msec_int_t>(entry->deadline - ngx_current_msec) > 0) continue;
        ngx_http_resend_confirmation_link_answer_alone(link, entry);
        return true;
    }
    return false;
}

// A deadline passed. A command written with the link's whole timeout (or a
// handshake one) overdue means Redis is stalled: the connection fails.
// Commands still queued unwritten, and those sent here again by a
// redirect, are answered alone.
static void ngx_http_resend_confirmation_link_overdue(ngx_event_t *ev) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ev->data);
    // Kept requests (sentinel=) whose time is up, never sent again.
    while (!ngx_queue_empty(&link->kept)) {
        ngx_queue_t *q = ngx_queue_head(&link->kept);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (static_cast<ngx_msec_int_t>(entry->deadline - ngx_current_msec) > 0) break;
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&link->spare, q);
        ngx_http_resend_confirmation_link_finish(link, entry, nullptr, ngx_http_resend_confirmation_fate_t::unsent);
    }
    while (ngx_http_resend_confirmation_link_overdue_step(link)) {
    }
    ngx_http_resend_confirmation_link_arm_overdue(link);
}

// The hold-down is a timer used as a flag: while it is set, send() answers
// at once instead of reconnecting. When it ends, the link reconnects if
// requests were kept for it; otherwise the next command does.
static void ngx_http_resend_confirmation_link_hold_down_over(ngx_event_t *ev) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ev->data);
    if (link->state == link_state::down && !ngx_queue_empty(&link->kept)) {
        (void) ngx_http_resend_confirmation_link_connect(link);
    }
}

// --- names, TLS, the connection ------------------------------------------------------

// The end of nginx's own log lines about the link's connection (connect(),
// recv(), SSL errors): what it was doing, and which Redis.
static u_char *ngx_http_resend_confirmation_link_log_context(ngx_log_t *log, u_char *buf, size_t len) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(log->data);
    u_char *p = buf;
    if (log->action != nullptr) {
        p = ngx_snprintf(p, len, " while %s", log->action);
        len -= p - buf;
    }
    return ngx_snprintf(p, len, ", redis: %V", &link->name);
}

static void ngx_http_resend_confirmation_link_close_connection(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->resolving != nullptr) {
        ngx_resolve_name_done(link->resolving);
        link->resolving = nullptr;
    }
    ngx_connection_t *c = link->peer.connection;
    if (c == nullptr) return;
    link->peer.connection = nullptr;
    ngx_http_resend_confirmation_tls_shutdown(c);
    ngx_pool_t *pool = c->pool;
    ngx_close_connection(c);
    if (pool != nullptr) ngx_destroy_pool(pool);
}

// The name's addresses: connect to the next one (each reconnect moves on,
// so that a dead address among several is not retried forever).
static void ngx_http_resend_confirmation_link_resolved(ngx_resolver_ctx_t *ctx) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ctx->data);
    link->resolving = nullptr;
    if (ctx->state != NGX_OK || ctx->naddrs == 0) {
        u_char why[NGX_MAX_ERROR_STR];
        u_char *end = ngx_snprintf(why, sizeof(why) - 1, "\"%V\" could not be resolved (%i: %s)",
                                   &ctx->name, ctx->state, ngx_resolver_strerror(ctx->state));
        *end = '\0';
        ngx_resolve_name_done(ctx);
        ngx_http_resend_confirmation_link_fail(link, reinterpret_cast<const char *>(why));
        return;
    }
    ngx_resolver_addr_t *addr = &ctx->addrs[link->next_address++ % ctx->naddrs];
    ngx_memcpy(&link->sockaddr, addr->sockaddr, addr->socklen);
    link->socklen = addr->socklen;
    ngx_inet_set_port(&link->sockaddr.sockaddr, link->conf->port);
    ngx_resolve_name_done(ctx);
#if (NGX_DEBUG)
    u_char text[NGX_SOCKADDR_STRLEN];
    size_t n = ngx_sock_ntop(&link->sockaddr.sockaddr, link->socklen, text, sizeof(text), 1);
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, link->log, 0, "resend_confirmation: redis %V resolved to %*s",
                   &link->name, n, text);
#endif
    ngx_http_resend_confirmation_link_connect_peer(link);
}

// Resolves the name with the resolver of the directive's level, then
// connects; without a resolver, connects to the address found at start.
static bool ngx_http_resend_confirmation_link_resolve(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_http_core_loc_conf_t *core = link->conf->core;
    ngx_resolver_ctx_t *ctx = core->resolver != nullptr ? ngx_resolve_start(core->resolver, nullptr)
                                                       : static_cast<ngx_resolver_ctx_t *>(NGX_NO_RESOLVER);
    if (ctx == NGX_NO_RESOLVER) {
        if (link->conf->addr.sockaddr == nullptr) {  // postconfiguration refuses this
            ngx_http_resend_confirmation_link_fail(link, "no resolver for its name");
            return false;
        }
        return ngx_http_resend_confirmation_link_connect_peer(link);
    }
    if (ctx == nullptr) {
        ngx_http_resend_confirmation_link_fail(link, "out of memory");
        return false;
    }
    ctx->name = link->conf->host;
    ctx->handler = ngx_http_resend_confirmation_link_resolved;
    ctx->data = link;
    ctx->timeout = core->resolver_timeout != NGX_CONF_UNSET_MSEC ? core->resolver_timeout : 30000;
    link->state = link_state::resolving;
    link->resolving = ctx;
    if (ngx_resolve_name(ctx) != NGX_OK) {
        link->resolving = nullptr;
        ngx_http_resend_confirmation_link_fail(link, "cannot start resolving its name");
        return false;
    }
    // The answer may have come at once (cached) and the connection failed.
    return link->state != link_state::down;
}

// TCP is connected: the TLS handshake, in what is left of connect_timeout.
static void ngx_http_resend_confirmation_link_secure(ngx_http_resend_confirmation_link_t *link,
                                                     ngx_connection_t *c) noexcept {
    link->state = link_state::securing;
    ngx_msec_t elapsed = ngx_current_msec - link->connect_start;
    ngx_msec_t timeout = link->conf->connect_timeout;
    ngx_http_resend_confirmation_tls_handshake(c, link->conf, elapsed < timeout ? timeout - elapsed : 1);
}

void ngx_http_resend_confirmation_link_secured(ngx_connection_t *c, const char *failure) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(c->data);
    if (failure != nullptr) {
        ngx_http_resend_confirmation_link_fail(link, failure);
        return;
    }
    if (c->write->timer_set) ngx_del_timer(c->write);
    c->log->action = nullptr;
    c->read->handler = ngx_http_resend_confirmation_link_read;
    c->write->handler = ngx_http_resend_confirmation_link_write;
    ngx_http_resend_confirmation_link_opened(link);
    // Now AUTH/SELECT (or the commands queued meanwhile) may go.
    ngx_post_event(c->write, &ngx_posted_events);
}

// --- interface --------------------------------------------------------------------

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_link_create(ngx_http_resend_confirmation_redis_conf_t *conf,
                                         ngx_cycle_t *cycle, const ngx_addr_t *at,
                                         ngx_http_resend_confirmation_cluster_t *cluster) noexcept {
    ngx_pool_t *pool = ngx_create_pool(4096, cycle->log);
    if (pool == nullptr) return nullptr;
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(
        ngx_pcalloc(pool, sizeof(ngx_http_resend_confirmation_link_t)));
    if (link == nullptr) return nullptr;
    link->conf = conf;
    link->name = conf->addr.name;
    link->cycle = cycle;
    link->log = cycle->log;
    link->pool = pool;
    link->close_when_idle = conf->is_sentinel;
    if (at != nullptr) {
        ngx_memcpy(&link->sockaddr, at->sockaddr, at->socklen);
        link->socklen = at->socklen;
        link->name = at->name;
        link->fixed = true;
    }
    link->reader = new (std::nothrow) resend::reply_reader();
    if (link->reader == nullptr || !link->reader->valid()) return nullptr;
    ngx_queue_init(&link->pending);
    ngx_queue_init(&link->spare);
    ngx_queue_init(&link->kept);
    ngx_queue_init(&link->replicating);
    link->wait_timeout_len = ngx_sprintf(link->wait_timeout, "%M", ngx_max(conf->timeout / 2, (ngx_msec_t) 1)) -
                             link->wait_timeout;
    link->cluster = cluster;
    if (conf->cluster != nullptr && cluster == nullptr) {
        // The directive's link: its first seed, and the cluster's state.
        link->cluster = ngx_http_resend_confirmation_cluster_create(conf, cycle, link);
        if (link->cluster == nullptr) return nullptr;
    }


    // Not cancelable: a shutting-down worker waits for replies in flight
    // (at most `timeout`).
    link->overdue.handler = ngx_http_resend_confirmation_link_overdue;
    link->overdue.data = link;
    link->overdue.log = cycle->log;
    // Cancelable: a shutting-down worker does not wait for a backoff to end.
    link->hold_down.handler = ngx_http_resend_confirmation_link_hold_down_over;
    link->hold_down.data = link;
    link->hold_down.log = cycle->log;
    link->hold_down.cancelable = 1;
    link->connection_log = *cycle->log;
    link->connection_log.handler = ngx_http_resend_confirmation_link_log_context;
    link->connection_log.data = link;
    link->error_summary.handler = ngx_http_resend_confirmation_link_error_summary;
    link->error_summary.data = link;
    link->error_summary.log = cycle->log;
    link->error_summary.cancelable = 1;
    return link;
}

void ngx_http_resend_confirmation_link_destroy(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->cluster != nullptr && link->conf->cluster != nullptr &&
        ngx_http_resend_confirmation_cluster_head(link->cluster) == link) {
        ngx_http_resend_confirmation_cluster_destroy(link->cluster);
    }
    if (link->sentinel != nullptr) ngx_http_resend_confirmation_sentinel_destroy(link->sentinel);
    ngx_http_resend_confirmation_link_close(link);

    if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
    if (link->hold_down.timer_set) ngx_del_timer(&link->hold_down);
    if (link->error_summary.timer_set) ngx_del_timer(&link->error_summary);
    delete link->reader;
    if (link->out != nullptr) ngx_free(link->out);
    ngx_destroy_pool(link->pool);
}

ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_send(ngx_http_resend_confirmation_link_t *link,
                                       ngx_http_request_t *r,
                                       std::span<const std::string_view> args,
                                       ngx_http_resend_confirmation_link_done_pt done,
                                       ngx_http_resend_confirmation_pending_t **holder, ngx_msec_t since) noexcept {
    ngx_msec_t deadline = since + link->conf->timeout;
    ngx_http_resend_confirmation_pending_t *entry =
        link->cluster != nullptr
            ? ngx_http_resend_confirmation_cluster_send(link->cluster, r, args, deadline, 0, done)
            : ngx_http_resend_confirmation_link_queue(link, r, args, deadline, 0, false, done, r);
    if (entry != nullptr) ngx_http_resend_confirmation_link_hold(entry, holder);
    return entry;
}

void ngx_http_resend_confirmation_link_hold(ngx_http_resend_confirmation_pending_t *entry,
                                            ngx_http_resend_confirmation_pending_t **holder) noexcept {
    entry->holder = holder;
    if (holder != nullptr) *holder = entry;
}

ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_queue(ngx_http_resend_confirmation_link_t *link, ngx_http_request_t *r,
                                        std::span<const std::string_view> args, ngx_msec_t deadline,
                                        ngx_uint_t redirects, bool asking,
                                        ngx_http_resend_confirmation_link_done_pt done, void *data) noexcept {
    if (link->state == link_state::down) {
        if (link->hold_down.timer_set) return nullptr;  // just failed: answer at once
        if (!ngx_http_resend_confirmation_link_connect(link)) return nullptr;
    }
    if (asking) {
        // ASK: this one command may run on the node importing the slot.
        std::string_view asking_args[1] = {"ASKING"};
        ngx_http_resend_confirmation_pending_t *asking_entry =
            ngx_http_resend_confirmation_link_append(link, asking_args, nullptr, deadline);
        if (asking_entry == nullptr) return nullptr;
        asking_entry->redirects = redirects;  // its deadline is the redirected command's
    }
    ngx_http_resend_confirmation_pending_t *entry =
        ngx_http_resend_confirmation_link_append(link, args, r, deadline, false, done, data);
    if (entry == nullptr) return nullptr;
    entry->redirects = redirects;
    ngx_http_resend_confirmation_link_flush(link);
    return entry;
}

bool ngx_http_resend_confirmation_link_command(ngx_http_resend_confirmation_link_t *link,
                                               std::span<const std::string_view> args,
                                               ngx_http_resend_confirmation_link_done_pt done,
                                               void *data) noexcept {
    return ngx_http_resend_confirmation_link_queue(link, nullptr, args, ngx_current_msec + link->conf->timeout,
                                                   0, false, done, data) != nullptr;
}

// Flush after this loop turn, with whatever else was queued in it.
static void ngx_http_resend_confirmation_link_flush(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->state == link_state::up && !link->peer.connection->write->posted) {
        ngx_post_event(link->peer.connection->write, &ngx_posted_events);
    }
}

void ngx_http_resend_confirmation_link_found(ngx_http_resend_confirmation_link_t *link, const ngx_addr_t *at,
                                             const char *failure) noexcept {
    if (link->state != link_state::resolving) return;  // failed meanwhile
    if (at == nullptr) {
        ngx_http_resend_confirmation_link_fail(link, failure);
        return;
    }
    ngx_memcpy(&link->sockaddr, at->sockaddr, at->socklen);
    link->socklen = at->socklen;
    ngx_http_resend_confirmation_link_connect_peer(link);
}

bool ngx_http_resend_confirmation_endpoint_sockaddr(const resend::redis_endpoint &at, ngx_sockaddr_t *out,
                                                   socklen_t *len) noexcept {
    ngx_memzero(out, sizeof(ngx_sockaddr_t));
    auto *host = reinterpret_cast<u_char *>(const_cast<char *>(at.host.data()));
    in_addr_t v4 = ngx_inet_addr(host, at.host.size());
    if (v4 != INADDR_NONE) {
        out->sockaddr_in.sin_family = AF_INET;
        out->sockaddr_in.sin_addr.s_addr = v4;
        *len = sizeof(struct sockaddr_in);
#if (NGX_HAVE_INET6)
    } else if (ngx_inet6_addr(host, at.host.size(), out->sockaddr_in6.sin6_addr.s6_addr) == NGX_OK) {
        out->sockaddr_in6.sin6_family = AF_INET6;
        *len = sizeof(struct sockaddr_in6);
#endif
    } else {
        return false;
    }
    ngx_inet_set_port(&out->sockaddr, static_cast<in_port_t>(at.port));
    return true;
}

ngx_str_t ngx_http_resend_confirmation_link_name(ngx_http_resend_confirmation_link_t *link) noexcept {
    return link->name;
}

ngx_cycle_t *ngx_http_resend_confirmation_link_cycle(ngx_http_resend_confirmation_link_t *link) noexcept {
    return link->cycle;
}

void ngx_http_resend_confirmation_link_detach(ngx_http_resend_confirmation_pending_t *entry) noexcept {
    entry->r = nullptr;
    entry->done = nullptr;
    entry->holder = nullptr;
}

bool ngx_http_resend_confirmation_link_ready(ngx_http_resend_confirmation_link_t *link) noexcept {
    return link->state == link_state::up && !link->hold_down.timer_set;
}

bool ngx_http_resend_confirmation_link_connecting(ngx_http_resend_confirmation_link_t *link) noexcept {
    return link->state != link_state::down && link->state != link_state::up;
}

void ngx_http_resend_confirmation_link_wake(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->state == link_state::down && !link->hold_down.timer_set) {
        (void) ngx_http_resend_confirmation_link_connect(link);
    }
}

bool ngx_http_resend_confirmation_link_send_replay(ngx_http_resend_confirmation_link_t *link,
                                                   std::span<const std::string_view> args,
                                                   ngx_http_resend_confirmation_link_done_pt done,
                                                   void *data) noexcept {
    if (!ngx_http_resend_confirmation_link_ready(link)) return false;
    ngx_http_resend_confirmation_pending_t *entry =
        ngx_http_resend_confirmation_link_send(link, nullptr, args, done, nullptr, ngx_current_msec);
    if (entry == nullptr) return false;
    entry->replay = true;
    entry->data = data;
    // Acknowledged, like a request's, once WAIT says a replica has it
    // (sentinel=); a cluster's node is the entry's own link, without WAIT.
    if (link->cluster == nullptr) ++link->unwaited;
    return true;
}
