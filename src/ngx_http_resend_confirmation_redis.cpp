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
// - Any error (connect, write, protocol, a handshake refusal, the oldest
//   command outliving its timeout, Redis closing) fails the connection:
//   every pending request is answered at once through the failure policy,
//   and the next attempt waits a backoff that doubles up to a ceiling.

#include "ngx_http_resend_confirmation.h"

#include "core/redis_command.hpp"
#include "core/redis_reply.hpp"

#include <new>

static const ngx_msec_t backoff_first = 100;
static const ngx_msec_t backoff_ceiling = 2000;

struct ngx_http_resend_confirmation_pending_s {
    ngx_queue_t queue;      // in link->pending (in flight) or link->spare
    ngx_http_request_t *r;  // null: a handshake command, or the request went away
    ngx_msec_t deadline;    // when its reply is overdue
    ngx_msec_t queued;      // when it was handed to the link (reply time)
    std::string_view command;  // its name (args[0], a literal), for the log
    bool handshake;         // AUTH or SELECT: an error fails the connection
    ngx_http_resend_confirmation_reply_pt on_reply;  // null: ngx_http_resend_confirmation_recorded()
};

namespace {
enum class link_state : unsigned char { down, connecting, handshaking, up };
}  // namespace

struct ngx_http_resend_confirmation_link_s {
    ngx_http_resend_confirmation_redis_conf_t *conf;
    ngx_log_t *log;
    ngx_pool_t *pool;  // pending entries and the output buffer
    ngx_peer_connection_t peer;
    link_state state;
    resend::reply_reader *reader;

    u_char *out;  // RESP bytes not yet written: out[sent .. size)
    size_t out_size, out_sent, out_capacity;
    size_t handshake_unsent;   // the first bytes of out[sent ..] that are AUTH/SELECT
    ngx_uint_t handshake_left; // AUTH/SELECT replies still to come

    ngx_queue_t pending;  // commands in flight, oldest first
    ngx_uint_t in_flight; // entries in `pending`
    ngx_queue_t spare;    // recycled entries
    ngx_event_t overdue;  // fires at the oldest command's deadline
    ngx_event_t hold_down;  // timer set: Redis was just found down; answer at once, do not reconnect
    ngx_msec_t backoff;
};

// Both live in the link's pool, freed with it, never destroyed.
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_pending_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_link_t>);

static void ngx_http_resend_confirmation_link_fail(ngx_http_resend_confirmation_link_t *link,
                                                   const char *why) noexcept;
static void ngx_http_resend_confirmation_link_write(ngx_event_t *wev) noexcept;
static void ngx_http_resend_confirmation_link_read(ngx_event_t *rev) noexcept;

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

static ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_append(ngx_http_resend_confirmation_link_t *link,
                                         std::span<const std::string_view> args,
                                         ngx_http_request_t *r, ngx_msec_t timeout,
                                         bool handshake = false,
                                         ngx_http_resend_confirmation_reply_pt on_reply = nullptr) noexcept {
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
    if (!ngx_http_resend_confirmation_link_reserve(link, resend::resp_size(args))) {
        ngx_queue_insert_head(&link->spare, &entry->queue);
        return nullptr;
    }
    u_char *end = reinterpret_cast<u_char *>(
        resend::resp_write(reinterpret_cast<char *>(link->out + link->out_size), args));
    link->out_size = end - link->out;

    entry->r = r;
    entry->command = args[0];
    entry->handshake = handshake;
    entry->on_reply = on_reply;
    entry->deadline = ngx_current_msec + timeout;
    entry->queued = ngx_current_msec;
    ngx_queue_insert_tail(&link->pending, &entry->queue);
    ++link->in_flight;
    ngx_http_resend_confirmation_metrics_in_flight(link->conf->metrics, link->in_flight);
    if (!link->overdue.timer_set) ngx_add_timer(&link->overdue, timeout);
    return entry;
}

// --- connection ---------------------------------------------------------------------

static void ngx_http_resend_confirmation_link_close(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->state == link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::closed);
    }
    if (link->peer.connection != nullptr) {
        ngx_close_connection(link->peer.connection);
        link->peer.connection = nullptr;
    }
    link->state = link_state::down;
    link->out_size = link->out_sent = 0;
    link->handshake_unsent = 0;
    link->handshake_left = 0;
    link->reader->reset();
}

static bool ngx_http_resend_confirmation_link_handshake(ngx_http_resend_confirmation_link_t *link) noexcept {
    auto *conf = link->conf;
    ngx_uint_t commands = 0;
    if (conf->password.len != 0) {
        std::string_view auth[3] = {"AUTH"};
        size_t n = 1;
        if (conf->user.len != 0) {
            auth[n++] = {reinterpret_cast<const char *>(conf->user.data), conf->user.len};
        }
        auth[n++] = {reinterpret_cast<const char *>(conf->password.data), conf->password.len};
        if (ngx_http_resend_confirmation_link_append(link, {auth, n}, nullptr,
                                                     conf->connect_timeout + conf->timeout,
                                                     true) == nullptr) {
            return false;
        }
        ++commands;
    }
    if (conf->db_text.len != 0) {
        std::string_view select[2] = {"SELECT",
                                      {reinterpret_cast<const char *>(conf->db_text.data),
                                       conf->db_text.len}};
        if (ngx_http_resend_confirmation_link_append(link, select, nullptr,
                                                     conf->connect_timeout + conf->timeout,
                                                     true) == nullptr) {
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
        if (ngx_http_resend_confirmation_link_append(link, load, nullptr,
                                                     conf->connect_timeout + conf->timeout) == nullptr) {
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
    ngx_peer_connection_t *peer = &link->peer;
    ngx_memzero(peer, sizeof(ngx_peer_connection_t));
    peer->sockaddr = link->conf->addr.sockaddr;
    peer->socklen = link->conf->addr.socklen;
    peer->name = &link->conf->addr.name;
    peer->get = ngx_event_get_peer;
    peer->log = link->log;
    peer->log_error = NGX_ERROR_ERR;
    // A peer that vanished silently (NAT, failover) is noticed on an idle
    // link too: nginx sets SO_KEEPALIVE before connecting.
    peer->so_keepalive = peer->sockaddr->sa_family != AF_UNIX;

    ngx_int_t rc = ngx_event_connect_peer(peer);
    if (rc == NGX_ERROR || rc == NGX_BUSY || rc == NGX_DECLINED) {
        ngx_http_resend_confirmation_link_fail(link, "cannot connect");
        return false;
    }
    ngx_connection_t *c = peer->connection;
    c->data = link;
    c->log = link->log;
    c->read->log = link->log;
    c->write->log = link->log;
    c->read->handler = ngx_http_resend_confirmation_link_read;
    c->write->handler = ngx_http_resend_confirmation_link_write;
    link->state = link_state::connecting;
    if (peer->sockaddr->sa_family != AF_UNIX) {
        // Small pipelined writes go out at once. The connection is new
        // (tcp_nodelay unset), so this sets TCP_NODELAY; a failure is
        // logged by nginx and only costs latency.
        (void) ngx_tcp_nodelay(c);
    }

    if (!ngx_http_resend_confirmation_link_handshake(link)) {
        ngx_http_resend_confirmation_link_fail(link, "out of memory");
        return false;
    }
    if (rc == NGX_AGAIN) {
        ngx_add_timer(c->write, link->conf->connect_timeout);
    } else {
        ngx_post_event(c->write, &ngx_posted_events);
    }
    return true;
}

// Answers every request in flight through the failure policy, closes the
// connection and starts the backoff.
static void ngx_http_resend_confirmation_link_fail(ngx_http_resend_confirmation_link_t *link,
                                                   const char *why) noexcept {
    ngx_log_error(NGX_LOG_ERR, link->log, 0, "resend_confirmation: redis %V: %s",
                  &link->conf->addr.name, why);
    if (link->state != link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connect_failed);
    }
    ngx_http_resend_confirmation_link_close(link);
    if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
    link->backoff = link->backoff == 0 ? backoff_first : ngx_min(link->backoff * 2, backoff_ceiling);
    ngx_add_timer(&link->hold_down, link->backoff);

    // Take the waiting entries out first: answering a request may, in
    // principle, send a new command on this link.
    ngx_queue_t failed;
    ngx_queue_init(&failed);
    if (!ngx_queue_empty(&link->pending)) {
        ngx_queue_add(&failed, &link->pending);
        ngx_queue_init(&link->pending);
    }
    link->in_flight = 0;
    ngx_http_resend_confirmation_metrics_in_flight(link->conf->metrics, 0);
    while (!ngx_queue_empty(&failed)) {
        ngx_queue_t *q = ngx_queue_head(&failed);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&link->spare, q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (entry->r != nullptr) ngx_http_resend_confirmation_recorded(entry->r, false);
    }
}

// Redis closed a connection with nothing in flight (its idle `timeout`, a
// CLIENT KILL, a proxy): not a failure; the next command reconnects.
static void ngx_http_resend_confirmation_link_drop_idle(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_log_error(NGX_LOG_INFO, link->log, 0, "resend_confirmation: redis %V closed an idle connection",
                  &link->conf->addr.name);
    ngx_http_resend_confirmation_link_close(link);
}

// --- events ---------------------------------------------------------------------------

static bool ngx_http_resend_confirmation_link_connected(ngx_http_resend_confirmation_link_t *link,
                                                        ngx_connection_t *c) noexcept {
    int err = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) err = ngx_socket_errno;
    if (err != 0) {
        ngx_log_error(NGX_LOG_ERR, link->log, err, "resend_confirmation: connect() to redis %V failed",
                      &link->conf->addr.name);
        return false;
    }
    link->state = link->handshake_left > 0 ? link_state::handshaking : link_state::up;
    if (link->state == link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connected);
    }
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
    if (link->state == link_state::connecting &&
        !ngx_http_resend_confirmation_link_connected(link, c)) {
        ngx_http_resend_confirmation_link_fail(link, "connection refused or unreachable");
        return;
    }

    for (;;) {
        // Until the handshake is accepted, only its own bytes may go.
        size_t writable = link->out_size - link->out_sent;
        if (link->state != link_state::up) writable = ngx_min(writable, link->handshake_unsent);
        if (writable == 0) break;
        ssize_t n = c->send(c, link->out + link->out_sent, writable);
        if (n == NGX_ERROR) {
            ngx_http_resend_confirmation_link_fail(link, "write failed");
            return;
        }
        if (n == NGX_AGAIN) break;
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, link->log, 0,
                       "resend_confirmation: redis write %z bytes, %ui commands in flight", n,
                       link->in_flight);
        link->out_sent += n;
        link->handshake_unsent -= ngx_min(link->handshake_unsent, static_cast<size_t>(n));
    }
    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_resend_confirmation_link_fail(link, "cannot watch for writing");
    }
}

// The reply to the oldest command in flight.
static bool ngx_http_resend_confirmation_link_deliver(ngx_http_resend_confirmation_link_t *link,
                                                      const resend::redis_reply &reply) noexcept {
    if (ngx_queue_empty(&link->pending)) {
        ngx_http_resend_confirmation_link_fail(link, "reply without a command");
        return false;
    }
    ngx_queue_t *q = ngx_queue_head(&link->pending);
    ngx_queue_remove(q);
    ngx_queue_insert_tail(&link->spare, q);
    --link->in_flight;
    auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
    ngx_http_resend_confirmation_metrics_in_flight(link->conf->metrics, link->in_flight);

    bool ok = reply.kind != resend::reply_kind::error;
    if (entry->handshake && !ok) {
        // A handshake command (AUTH or SELECT) refused: nothing will work.
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "resend_confirmation: redis %V refused the connection handshake: %*s",
                      &link->conf->addr.name, reply.error.size(), reply.error.data());
        ngx_http_resend_confirmation_link_fail(link, "handshake failed");
        return false;
    }
    if (entry->handshake && --link->handshake_left == 0) {
        // Redis accepted AUTH/SELECT: release the commands queued meanwhile,
        // their time counted from now (connecting is not their wait).
        link->state = link_state::up;
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connected);
        ngx_post_event(link->peer.connection->write, &ngx_posted_events);
        for (ngx_queue_t *p = ngx_queue_head(&link->pending); p != ngx_queue_sentinel(&link->pending);
             p = ngx_queue_next(p)) {
            auto *waiting = ngx_queue_data(p, ngx_http_resend_confirmation_pending_t, queue);
            waiting->deadline = ngx_current_msec + link->conf->timeout;
        }
    }
    if (!entry->handshake) {
        ngx_http_resend_confirmation_metrics_reply_time(link->conf->metrics,
                                                        ngx_current_msec - entry->queued);
    }
    if (!ok) {
        ngx_http_resend_confirmation_metrics_refusal(link->conf->metrics, reply.error);
        // NOSCRIPT is answered by sending the script in full (shared limits).
        ngx_uint_t level = reply.error.starts_with("NOSCRIPT ") ? NGX_LOG_NOTICE : NGX_LOG_ERR;
        ngx_log_error(level, link->log, 0,
                      "resend_confirmation: redis %V refused %*s: %*s",
                      &link->conf->addr.name, entry->command.size(), entry->command.data(),
                      reply.error.size(), reply.error.data());
    }
    link->backoff = 0;  // Redis answers: the next failure starts the backoff afresh

    if (ngx_queue_empty(&link->pending)) {
        if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
    } else {
        auto *oldest = ngx_queue_data(ngx_queue_head(&link->pending),
                                      ngx_http_resend_confirmation_pending_t, queue);
        ngx_msec_int_t left = static_cast<ngx_msec_int_t>(oldest->deadline - ngx_current_msec);
        ngx_add_timer(&link->overdue, left > 0 ? left : 1);
    }
    if (entry->r != nullptr && entry->on_reply != nullptr) {
        entry->on_reply(entry->r, reply);
    } else if (entry->r != nullptr) {
        ngx_http_resend_confirmation_recorded(entry->r, ok);
    }
    return true;
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
                ngx_http_resend_confirmation_link_fail(link, "protocol error");
                return;
            }
            if (!ngx_http_resend_confirmation_link_deliver(link, reply)) return;
        }
    }
    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_resend_confirmation_link_fail(link, "cannot watch for reading");
    }
}

static void ngx_http_resend_confirmation_link_overdue(ngx_event_t *ev) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ev->data);
    ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                              ngx_http_resend_confirmation_link_event_t::timed_out);
    ngx_http_resend_confirmation_link_fail(link, "no reply in time");
}

// The hold-down is a timer used as a flag: while it is set, send() answers
// at once instead of reconnecting. When it ends there is nothing to do: the
// next command reconnects.
static void ngx_http_resend_confirmation_link_hold_down_over(ngx_event_t *) noexcept {}

// --- interface --------------------------------------------------------------------

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_link_create(ngx_http_resend_confirmation_redis_conf_t *conf,
                                         ngx_cycle_t *cycle) noexcept {
    ngx_pool_t *pool = ngx_create_pool(4096, cycle->log);
    if (pool == nullptr) return nullptr;
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(
        ngx_pcalloc(pool, sizeof(ngx_http_resend_confirmation_link_t)));
    if (link == nullptr) return nullptr;
    link->conf = conf;
    link->log = cycle->log;
    link->pool = pool;
    link->reader = new (std::nothrow) resend::reply_reader();
    if (link->reader == nullptr || !link->reader->valid()) return nullptr;
    ngx_queue_init(&link->pending);
    ngx_queue_init(&link->spare);

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
    return link;
}

void ngx_http_resend_confirmation_link_destroy(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_http_resend_confirmation_link_close(link);
    if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
    if (link->hold_down.timer_set) ngx_del_timer(&link->hold_down);
    delete link->reader;
    if (link->out != nullptr) ngx_free(link->out);
    ngx_destroy_pool(link->pool);
}

ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_send(ngx_http_resend_confirmation_link_t *link,
                                       ngx_http_request_t *r,
                                       std::span<const std::string_view> args,
                                       ngx_http_resend_confirmation_reply_pt on_reply) noexcept {
    if (link->state == link_state::down) {
        if (link->hold_down.timer_set) return nullptr;  // just failed: answer at once
        if (!ngx_http_resend_confirmation_link_connect(link)) return nullptr;
    }
    ngx_http_resend_confirmation_pending_t *entry =
        ngx_http_resend_confirmation_link_append(link, args, r, link->conf->timeout, false, on_reply);
    if (entry == nullptr) return nullptr;

    ngx_event_t *wev = link->peer.connection->write;
    if (link->state == link_state::up && !wev->posted) {
        // Flush after this loop turn, with whatever else was queued in it.
        ngx_post_event(wev, &ngx_posted_events);
    }
    return entry;
}

void ngx_http_resend_confirmation_link_detach(ngx_http_resend_confirmation_pending_t *entry) noexcept {
    entry->r = nullptr;
}
