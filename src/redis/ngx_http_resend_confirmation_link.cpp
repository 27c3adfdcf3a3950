// The Redis link's transport: one connection per worker and Redis address,
// on nginx's own event loop (ngx_event_connect_peer, nginx timers), never
// blocking. It connects (resolving the name again where a resolver is, TLS
// where asked), writes what is queued, reads replies in command order and
// fails the connection on any error; it knows nothing of XADD, of HTTP, of
// Sentinel or of Cluster: the topology it is given says where to connect,
// where a record goes and what a MOVED or READONLY means, and the
// acknowledgement rule (redis_ack.cpp) when a stored record counts.
//
// - Commands of concurrent requests go into one output buffer, written
//   together from a posted write event: one write per loop turn.
// - The handshake (AUTH, SELECT, ROLE) is queued first on every connect;
//   nothing else is written until Redis has accepted it: a command
//   pipelined behind a refused AUTH would run as the default user.
// - Any error (connect, write, protocol, a handshake refusal, a stalled
//   Redis, Redis closing) fails the connection: every pending command is
//   answered at once, told whether it was written (then Redis may have it),
//   and for 100 ms no new connection is tried (requests are answered at once).
// - Error replies are logged once, then summed up at most once a second.
// Deadlines and pending entries: link_deadlines.cpp.

#include "redis/ngx_http_resend_confirmation_link.h"

#include "core/log_text.hpp"
#include "core/redis_command.hpp"
#include "core/redis_topology.hpp"

#include <new>

namespace {

using link_state = ngx_http_resend_confirmation_link_state_t;
using kind = ngx_http_resend_confirmation_pending_kind_t;
using fate = ngx_http_resend_confirmation_fate_t;

// After a failure, the link answers at once for this long, then the next
// request tries to connect again: at most one attempt per 100 ms.
constexpr ngx_msec_t hold_down_time = 100;
// Error replies after the first are summed up once per this interval.
constexpr ngx_msec_t error_summary_interval = 1000;

void on_write(ngx_event_t *wev) noexcept;
void on_read(ngx_event_t *rev) noexcept;
bool connect_peer(ngx_http_resend_confirmation_link_t *link) noexcept;
bool resolve(ngx_http_resend_confirmation_link_t *link) noexcept;
void close_connection(ngx_http_resend_confirmation_link_t *link) noexcept;

// --- connecting -------------------------------------------------------------------

void close(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->state == link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::closed);
    }
    close_connection(link);
    link->state = link_state::down;
    link->out.size = link->out.sent = 0;
    link->out.handshake_unsent = 0;
    link->out.appended = link->out.written = 0;
    link->handshake_left = 0;
    ngx_http_resend_confirmation_ack_reset(link);
    link->reader->reset();
}

// AUTH, SELECT and ROLE: the commands every connection begins with.
bool queue_handshake(ngx_http_resend_confirmation_link_t *link) noexcept {
    auto *conf = link->conf;
    ngx_uint_t commands = 0;
    ngx_msec_t deadline = ngx_current_msec + conf->connect_timeout + conf->timeout;
    auto add = [&](std::span<const std::string_view> args) {
        ++commands;
        return ngx_http_resend_confirmation_link_append(link, args, kind::handshake, nullptr, deadline) != nullptr;
    };
    if (conf->password.len != 0) {
        std::string_view auth[3] = {"AUTH"};
        size_t n = 1;
        if (conf->user.len != 0) auth[n++] = ngx_http_resend_confirmation_view(conf->user);
        auth[n++] = ngx_http_resend_confirmation_view(conf->password);
        if (!add({auth, n})) return false;
    }
    std::string_view select[2] = {"SELECT", ngx_http_resend_confirmation_view(conf->db_text)};
    if (conf->db_text.len != 0 && !add(select)) return false;
    // The node must be a master with its replicas (redis_ack.cpp).
    std::string_view role[1] = {"ROLE"};
    if (ngx_http_resend_confirmation_ack_asks_role(link) && !add(role)) return false;
    link->out.handshake_unsent = link->out.size;  // the buffer was empty before
    link->handshake_left = commands;
    if (conf->script.len != 0) {
        // Not part of the handshake (a refusal is logged, not fatal): the
        // first command once it is accepted, so that EVALSHA finds the script.
        std::string_view load[3] = {"SCRIPT", "LOAD", ngx_http_resend_confirmation_view(conf->script)};
        if (ngx_http_resend_confirmation_link_append(link, load, kind::command, nullptr, deadline) == nullptr) {
            return false;
        }
    }
    return true;
}

// The records kept from the last connection go after the new handshake,
// in their order, with their deadlines; those whose client left are dropped.
void requeue(ngx_http_resend_confirmation_link_t *link) noexcept {
    while (!ngx_queue_empty(&link->kept)) {
        ngx_queue_t *q = ngx_queue_head(&link->kept);
        ngx_queue_remove(q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (entry->r == nullptr) {
            ngx_queue_insert_tail(&link->spare, q);
        } else if (!ngx_http_resend_confirmation_link_encode(link, entry, entry->args)) {
            ngx_queue_insert_tail(&link->spare, q);
            ngx_http_resend_confirmation_link_finish(link, entry, nullptr, fate::unsent);
        } else {
            ngx_http_resend_confirmation_ack_queued(link, entry);  // confirmed by the next WAIT
        }
    }
}

bool connect(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (!link->reader->valid()) {  // reset() could not allocate
        link->reader->reset();
        if (!link->reader->valid()) {
            ngx_http_resend_confirmation_link_fail(link, "out of memory");
            return false;
        }
    }
    // The handshake first in the buffer, before any command queued while
    // the address is found or the connection is made.
    if (!queue_handshake(link)) {
        ngx_http_resend_confirmation_link_fail(link, "out of memory");
        return false;
    }
    requeue(link);
    if (link->topology != nullptr && link->topology->locate != nullptr) {
        link->state = link_state::resolving;
        link->topology->locate(link);
        return link->state != link_state::down;
    }
    if (link->conf->host.len != 0 && !link->fixed) return resolve(link);
    return connect_peer(link);
}

// Opens the TCP connection to the current address.
bool connect_peer(ngx_http_resend_confirmation_link_t *link) noexcept {
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
    c->read->handler = on_read;
    c->write->handler = on_write;
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

// Redis closed a connection with nothing in flight (its idle `timeout`, a
// CLIENT KILL, a proxy): not a failure; the next command reconnects.
void drop_idle(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_log_error(NGX_LOG_INFO, link->log, 0, "resend_confirmation: redis %V closed an idle connection",
                  &link->name);
    close(link);
}

// The connection is open (and secured, with tls): the handshake may go,
// or, without one, the link is ready.
void opened(ngx_http_resend_confirmation_link_t *link) noexcept {
    link->state = link->handshake_left > 0 ? link_state::handshaking : link_state::up;
    if (link->state == link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connected);
    }
}

bool connected(ngx_http_resend_confirmation_link_t *link, ngx_connection_t *c) noexcept {
    int err = 0;
    socklen_t len = sizeof(int);
    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) err = ngx_socket_errno;
    if (err != 0) {
        ngx_log_error(NGX_LOG_ERR, link->log, err, "resend_confirmation: connect() to redis %V failed",
                      &link->name);
        return false;
    }
    if (link->conf->tls == nullptr) opened(link);
    return true;
}

// TCP is connected: the TLS handshake, in what is left of connect_timeout.
void secure(ngx_http_resend_confirmation_link_t *link, ngx_connection_t *c) noexcept {
    link->state = link_state::securing;
    ngx_msec_t elapsed = ngx_current_msec - link->connect_start;
    ngx_msec_t timeout = link->conf->connect_timeout;
    ngx_http_resend_confirmation_tls_handshake(c, link->conf, elapsed < timeout ? timeout - elapsed : 1);
}

// --- writing -----------------------------------------------------------------------

void on_write(ngx_event_t *wev) noexcept {
    auto *c = static_cast<ngx_connection_t *>(wev->data);
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(c->data);

    if (wev->timedout) {
        ngx_http_resend_confirmation_link_fail(link, "connect timed out");
        return;
    }
    if (wev->timer_set) ngx_del_timer(wev);
    if (link->state == link_state::connecting) {
        if (!connected(link, c)) {
            ngx_http_resend_confirmation_link_fail(link, "connection refused or unreachable");
            return;
        }
        c->log->action = nullptr;
        if (link->conf->tls != nullptr) {
            secure(link, c);
            return;
        }
    }
    if (link->state == link_state::up && !ngx_http_resend_confirmation_ack_end_batch(link)) {
        ngx_http_resend_confirmation_link_fail(link, "out of memory");
        return;
    }
    for (;;) {
        // Until the handshake is accepted, only its own bytes may go.
        size_t writable = link->out.size - link->out.sent;
        if (link->state != link_state::up) writable = ngx_min(writable, link->out.handshake_unsent);
        if (writable == 0) break;
        ssize_t n = c->send(c, link->out.data + link->out.sent, writable);
        if (n == NGX_ERROR) {
            if (link->received == 0) ngx_http_resend_confirmation_tls_hint(link->log, link->conf, link->name, nullptr, n);
            ngx_http_resend_confirmation_link_fail(link, "write failed");
            return;
        }
        if (n == NGX_AGAIN) break;
        ngx_log_debug2(NGX_LOG_DEBUG_HTTP, link->log, 0,
                       "resend_confirmation: redis write %z bytes, %ui commands in flight", n,
                       link->in_flight);
        link->out.sent += n;
        link->out.written += n;
        link->out.handshake_unsent -= ngx_min(link->out.handshake_unsent, static_cast<size_t>(n));
    }
    if (ngx_handle_write_event(wev, 0) != NGX_OK) {
        ngx_http_resend_confirmation_link_fail(link, "cannot watch for writing");
    }
}

// --- reading -----------------------------------------------------------------------

// An error reply (OOM, LOADING, READONLY, WRONGTYPE...): the first is
// logged; while Redis keeps refusing, the rest are counted and summed up in
// one line a second.
void log_refusal(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *entry,
                 std::string_view error) noexcept {
    auto &refusals = link->refusals;
    refusals.last_len = ngx_http_resend_confirmation_link_escape(error, refusals.last);
    if (refusals.summary.timer_set) {
        ++refusals.unlogged;
        return;
    }
    ngx_log_error(NGX_LOG_ERR, link->log, 0, "resend_confirmation: redis %V refused %*s: %*s", &link->name,
                  entry->command.size(), entry->command.data(), refusals.last_len, refusals.last);
    ngx_add_timer(&refusals.summary, error_summary_interval);
}

void error_summary(ngx_event_t *ev) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ev->data);
    auto &refusals = link->refusals;
    if (refusals.unlogged == 0) return;  // quiet for a second: the next error is logged
    ngx_log_error(NGX_LOG_ERR, link->log, 0,
                  "resend_confirmation: redis %V refused %ui more commands in the last second, the last: %*s",
                  &link->name, refusals.unlogged, refusals.last_len, refusals.last);
    refusals.unlogged = 0;
    ngx_add_timer(&refusals.summary, error_summary_interval);
}

// A handshake command's reply: false when the connection failed.
bool handshake_reply(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *entry,
                     const resend::redis_reply &reply) noexcept {
    if (reply.kind == resend::reply_kind::error) {
        // AUTH or SELECT refused: nothing will work.
        u_char text[160];
        size_t len = ngx_http_resend_confirmation_link_escape(reply.error, text);
        ngx_log_error(NGX_LOG_ERR, link->log, 0,
                      "resend_confirmation: redis %V refused the connection handshake: %*s", &link->name, len, text);
        ngx_http_resend_confirmation_link_fail(link, "handshake failed");
        return false;
    }
    if (entry->command == "ROLE" && !ngx_http_resend_confirmation_ack_role(link, reply)) return false;
    if (--link->handshake_left == 0) {
        // Accepted: release the commands queued meanwhile (their deadlines
        // run from when they were queued).
        link->state = link_state::up;
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connected);
        ngx_post_event(link->peer.connection->write, &ngx_posted_events);
    }
    return true;
}

void count_refusal(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *entry,
                   const resend::redis_reply &reply) noexcept {
    ngx_http_resend_confirmation_metrics_refusal(link->conf->metrics, reply.error);
    if (reply.error.starts_with("NOSCRIPT ")) {
        // Answered by sending the script in full (shared limits): not a failure.
        ngx_log_error(NGX_LOG_NOTICE, link->log, 0,
                      "resend_confirmation: redis %V refused %*s: NOSCRIPT, sending the script in full",
                      &link->name, entry->command.size(), entry->command.data());
    } else {
        log_refusal(link, entry, reply.error);
    }
}

// The reply to the oldest command in flight; false when the connection
// failed (or is another one) since.
bool deliver(ngx_http_resend_confirmation_link_t *link, const resend::redis_reply &reply) noexcept {
    ngx_atomic_uint_t connection = link->peer.connection->number;
    if (ngx_queue_empty(&link->pending)) {
        if (link->push == nullptr) {
            ngx_http_resend_confirmation_link_fail(link, "reply without a command");
            return false;
        }
        link->push(link, reply);
        return ngx_http_resend_confirmation_link_same(link, connection);
    }
    ngx_queue_t *q = ngx_queue_head(&link->pending);
    ngx_queue_remove(q);
    ngx_queue_insert_tail(&link->spare, q);
    ngx_http_resend_confirmation_link_count_in_flight(link, link->in_flight - 1);
    auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);

    // The overdue timer stays where it is (at or before every deadline in
    // flight): when it fires with nothing overdue, it is set again. With
    // nothing in flight, it goes, unless records wait for WAIT.
    if (ngx_queue_empty(&link->pending) && ngx_queue_empty(&link->ack.replicating) && link->overdue.timer_set) {
        ngx_del_timer(&link->overdue);
    }
    if (entry->kind == kind::handshake) return handshake_reply(link, entry, reply);
    ngx_http_resend_confirmation_metrics_reply_time(link->conf->metrics, ngx_current_msec - entry->queued);
    if (entry->kind == kind::wait) return ngx_http_resend_confirmation_ack_waited(link, reply);

    bool ok = reply.kind != resend::reply_kind::error;
    bool record = ngx_http_resend_confirmation_carries_record(entry);
    if (!ok && record && link->topology != nullptr && link->topology->not_here != nullptr) {
        ngx_queue_remove(q);  // the topology takes it on
        if (link->topology->not_here(link, entry, reply)) return ngx_http_resend_confirmation_link_same(link, connection);
        ngx_queue_insert_tail(&link->spare, q);
    }
    if (!ok) count_refusal(link, entry, reply);
    if (ok && record && ngx_http_resend_confirmation_ack_hold(link, entry, reply)) return true;
    // A refusal Redis may not give later (LOADING, OOM, READONLY,
    // MASTERDOWN) is busy: the spool keeps the record.
    ngx_http_resend_confirmation_link_finish(link, entry, &reply,
                                             ok                                            ? fate::stored
                                             : resend::redis_cannot_write_now(reply.error) ? fate::busy
                                                                                           : fate::refused);
    return ngx_http_resend_confirmation_link_same(link, connection);
}

void on_read(ngx_event_t *rev) noexcept {
    auto *c = static_cast<ngx_connection_t *>(rev->data);
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(c->data);
    u_char buffer[4096];

    if (c->close) {
        // worker_shutdown_timeout passed: nginx asks every connection to go.
        if (ngx_queue_empty(&link->pending)) {
            drop_idle(link);
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
                drop_idle(link);
            } else {
                ngx_http_resend_confirmation_link_fail(link, n == 0 ? "connection closed by redis" : "read failed");
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
            if (!deliver(link, reply)) return;
        }
    }
    if (ngx_handle_read_event(rev, 0) != NGX_OK) {
        ngx_http_resend_confirmation_link_fail(link, "cannot watch for reading");
    }
}

// The hold-down is a timer used as a flag: while it is set, send() answers
// at once instead of reconnecting. When it ends, the link reconnects if
// records were kept for it; otherwise the next command does.
void hold_down_over(ngx_event_t *ev) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ev->data);
    if (link->state == link_state::down && !ngx_queue_empty(&link->kept)) (void) connect(link);
}

// --- names and the connection's end -----------------------------------------------

// The end of nginx's own log lines about the link's connection (connect(),
// recv(), SSL errors): what it was doing, and which Redis.
u_char *log_context(ngx_log_t *log, u_char *buf, size_t len) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(log->data);
    u_char *p = buf;
    if (log->action != nullptr) {
        p = ngx_snprintf(p, len, " while %s", log->action);
        len -= p - buf;
    }
    return ngx_snprintf(p, len, ", redis: %V", &link->name);
}

void close_connection(ngx_http_resend_confirmation_link_t *link) noexcept {
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
void resolved(ngx_resolver_ctx_t *ctx) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ctx->data);
    link->resolving = nullptr;
    if (ctx->state != NGX_OK || ctx->naddrs == 0) {
        u_char why[NGX_MAX_ERROR_STR];
        u_char *end = ngx_snprintf(why, sizeof(why) - 1, "\"%V\" could not be resolved (%i: %s)", &ctx->name,
                                   ctx->state, ngx_resolver_strerror(ctx->state));
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
    connect_peer(link);
}

// Resolves the name with the resolver of the directive's level, then
// connects; without a resolver, connects to the address found at start.
bool resolve(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_http_core_loc_conf_t *core = link->conf->core;
    ngx_resolver_ctx_t *ctx = core->resolver != nullptr ? ngx_resolve_start(core->resolver, nullptr)
                                                       : static_cast<ngx_resolver_ctx_t *>(NGX_NO_RESOLVER);
    if (ctx == NGX_NO_RESOLVER) {
        if (link->conf->addr.sockaddr == nullptr) {  // postconfiguration refuses this
            ngx_http_resend_confirmation_link_fail(link, "no resolver for its name");
            return false;
        }
        return connect_peer(link);
    }
    if (ctx == nullptr) {
        ngx_http_resend_confirmation_link_fail(link, "out of memory");
        return false;
    }
    ctx->name = link->conf->host;
    ctx->handler = resolved;
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

void init_event(ngx_event_t *ev, ngx_event_handler_pt handler, ngx_http_resend_confirmation_link_t *link,
                bool cancelable) noexcept {
    ev->handler = handler;
    ev->data = link;
    ev->log = link->log;
    ev->cancelable = cancelable;
}

}  // namespace

// --- failing ---------------------------------------------------------------------

// Answers every command in flight (or keeps the records not yet written,
// where the topology says another master may take them), closes the
// connection and starts the hold-down.
void ngx_http_resend_confirmation_link_fail(ngx_http_resend_confirmation_link_t *link, const char *why) noexcept {
    ngx_log_error(NGX_LOG_ERR, link->log, 0, "resend_confirmation: redis %V: %s", &link->name, why);
    if (link->state != link_state::up) {
        ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                  ngx_http_resend_confirmation_link_event_t::connect_failed);
    }
    size_t written = link->out.written;  // close() starts the count afresh
    // Stored on a master, not acknowledged: written, fate unknown.
    ngx_http_resend_confirmation_ack_release(link, fate::unknown);
    close(link);
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
    bool keeps = link->topology != nullptr && link->topology->keeps_unsent;
    while (!ngx_queue_empty(&failed)) {
        ngx_queue_t *q = ngx_queue_head(&failed);
        ngx_queue_remove(q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        // Written whole: Redis may have run it. Less: a partial command is
        // dropped by Redis with the connection.
        bool unsent = written < entry->end;
        if (unsent && keeps && entry->kind == kind::request && entry->r != nullptr &&
            ngx_http_resend_confirmation_before(entry->deadline)) {
            ngx_http_resend_confirmation_link_keep(link, entry);
            continue;
        }
        ngx_queue_insert_tail(&link->spare, q);
        ngx_http_resend_confirmation_link_finish(link, entry, nullptr, unsent ? fate::unsent : fate::unknown);
    }
    ngx_http_resend_confirmation_link_arm_overdue(link);
    if (link->topology != nullptr && link->topology->failed != nullptr) link->topology->failed(link);
}

void ngx_http_resend_confirmation_link_keep(ngx_http_resend_confirmation_link_t *link,
                                            ngx_http_resend_confirmation_pending_t *entry) noexcept {
    ngx_queue_insert_tail(&link->kept, &entry->queue);
}

void ngx_http_resend_confirmation_link_spare(ngx_http_resend_confirmation_link_t *link,
                                             ngx_http_resend_confirmation_pending_t *entry) noexcept {
    ngx_queue_insert_tail(&link->spare, &entry->queue);
}

void ngx_http_resend_confirmation_link_finish(ngx_http_resend_confirmation_link_t *link,
                                              ngx_http_resend_confirmation_pending_t *entry,
                                              const resend::redis_reply *reply,
                                              ngx_http_resend_confirmation_fate_t result) noexcept {
    if (entry->holder != nullptr) {
        *entry->holder = nullptr;
        entry->holder = nullptr;
    }
    if (entry->done != nullptr) entry->done(link, entry->data, reply, result);
}

size_t ngx_http_resend_confirmation_link_escape(std::string_view text, u_char (&out)[160]) noexcept {
    return resend::escape_for_log(text, reinterpret_cast<char *>(out), sizeof(out));
}

void ngx_http_resend_confirmation_link_secured(ngx_connection_t *c, const char *failure) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(c->data);
    if (failure != nullptr) {
        ngx_http_resend_confirmation_link_fail(link, failure);
        return;
    }
    if (c->write->timer_set) ngx_del_timer(c->write);
    c->log->action = nullptr;
    c->read->handler = on_read;
    c->write->handler = on_write;
    opened(link);
    // Now the handshake (or the commands queued meanwhile) may go.
    ngx_post_event(c->write, &ngx_posted_events);
}

// --- interface --------------------------------------------------------------------

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_link_create(ngx_http_resend_confirmation_redis_conf_t *conf, ngx_cycle_t *cycle,
                                         const ngx_addr_t *at,
                                         const ngx_http_resend_confirmation_topology_t *topology,
                                         void *data) noexcept {
    ngx_pool_t *pool = ngx_create_pool(4096, cycle->log);
    if (pool == nullptr) return nullptr;
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(
        ngx_pcalloc(pool, sizeof(ngx_http_resend_confirmation_link_t)));
    if (link == nullptr) return nullptr;
    link->conf = conf;
    link->topology = topology;
    link->topology_data = data;
    link->name = conf->addr.name;
    link->cycle = cycle;
    link->log = cycle->log;
    link->pool = pool;
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
    ngx_http_resend_confirmation_ack_init(link);

    // Not cancelable: a shutting-down worker waits for replies in flight
    // (at most `timeout`). Cancelable: it does not wait for a backoff.
    init_event(&link->overdue, ngx_http_resend_confirmation_link_overdue, link, false);
    init_event(&link->hold_down, hold_down_over, link, true);
    init_event(&link->refusals.summary, error_summary, link, true);
    link->connection_log = *cycle->log;
    link->connection_log.handler = log_context;
    link->connection_log.data = link;
    return link;
}

void ngx_http_resend_confirmation_link_destroy(ngx_http_resend_confirmation_link_t *link) noexcept {
    close(link);
    if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
    if (link->hold_down.timer_set) ngx_del_timer(&link->hold_down);
    if (link->refusals.summary.timer_set) ngx_del_timer(&link->refusals.summary);
    delete link->reader;
    if (link->out.data != nullptr) ngx_free(link->out.data);
    ngx_destroy_pool(link->pool);
}

void *ngx_http_resend_confirmation_link_topology_data(ngx_http_resend_confirmation_link_t *link) noexcept {
    return link->topology_data;
}

ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_send(ngx_http_resend_confirmation_link_t *link, ngx_http_request_t *r,
                                       std::span<const std::string_view> args,
                                       ngx_http_resend_confirmation_link_done_pt done,
                                       ngx_http_resend_confirmation_pending_t **holder, ngx_msec_t since) noexcept {
    ngx_msec_t deadline = since + link->conf->timeout;
    ngx_http_resend_confirmation_pending_t *entry =
        link->topology != nullptr && link->topology->route != nullptr
            ? link->topology->route(link, r, args, kind::request, deadline, done, r)
            : ngx_http_resend_confirmation_link_queue(link, r, args, kind::request, deadline, 0, false, done, r);
    if (entry != nullptr) ngx_http_resend_confirmation_link_hold(entry, holder);
    return entry;
}

bool ngx_http_resend_confirmation_link_send_replay(ngx_http_resend_confirmation_link_t *link,
                                                   std::span<const std::string_view> args,
                                                   ngx_http_resend_confirmation_link_done_pt done,
                                                   void *data) noexcept {
    if (!ngx_http_resend_confirmation_link_ready(link)) return false;
    ngx_msec_t deadline = ngx_current_msec + link->conf->timeout;
    ngx_http_resend_confirmation_pending_t *entry =
        link->topology != nullptr && link->topology->route != nullptr
            ? link->topology->route(link, nullptr, args, kind::replay, deadline, done, data)
            : ngx_http_resend_confirmation_link_queue(link, nullptr, args, kind::replay, deadline, 0, false, done,
                                                      data);
    return entry != nullptr;
}

void ngx_http_resend_confirmation_link_hold(ngx_http_resend_confirmation_pending_t *entry,
                                            ngx_http_resend_confirmation_pending_t **holder) noexcept {
    entry->holder = holder;
    if (holder != nullptr) *holder = entry;
}

ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_queue(ngx_http_resend_confirmation_link_t *link, ngx_http_request_t *r,
                                        std::span<const std::string_view> args,
                                        ngx_http_resend_confirmation_pending_kind_t what, ngx_msec_t deadline,
                                        ngx_uint_t redirects, bool asking,
                                        ngx_http_resend_confirmation_link_done_pt done, void *data) noexcept {
    if (link->state == link_state::down) {
        if (link->hold_down.timer_set) return nullptr;  // just failed: answer at once
        if (!connect(link)) return nullptr;
    }
    if (asking) {
        // ASK: this one command may run on the node importing the slot.
        std::string_view asking_args[1] = {"ASKING"};
        ngx_http_resend_confirmation_pending_t *asking_entry =
            ngx_http_resend_confirmation_link_append(link, asking_args, kind::command, nullptr, deadline);
        if (asking_entry == nullptr) return nullptr;
        asking_entry->redirects = redirects;  // its deadline is the redirected command's
    }
    ngx_http_resend_confirmation_pending_t *entry =
        ngx_http_resend_confirmation_link_append(link, args, what, r, deadline, done, data);
    if (entry == nullptr) return nullptr;
    entry->redirects = redirects;
    ngx_http_resend_confirmation_link_flush(link);
    return entry;
}

bool ngx_http_resend_confirmation_link_command(ngx_http_resend_confirmation_link_t *link,
                                               std::span<const std::string_view> args,
                                               ngx_http_resend_confirmation_link_done_pt done, void *data) noexcept {
    return ngx_http_resend_confirmation_link_queue(link, nullptr, args, kind::command,
                                                   ngx_current_msec + link->conf->timeout, 0, false, done,
                                                   data) != nullptr;
}

// After this loop turn, with whatever else was queued in it.
void ngx_http_resend_confirmation_link_flush(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->state == link_state::up && !link->peer.connection->write->posted) {
        ngx_post_event(link->peer.connection->write, &ngx_posted_events);
    }
}

bool ngx_http_resend_confirmation_link_subscribe(ngx_http_resend_confirmation_link_t *link,
                                                 std::span<const std::string_view> args,
                                                 ngx_http_resend_confirmation_link_push_pt push) noexcept {
    link->push = push;
    return ngx_http_resend_confirmation_link_command(link, args, nullptr, nullptr);
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
    connect_peer(link);
}

bool ngx_http_resend_confirmation_link_elsewhere(ngx_http_resend_confirmation_link_t *link,
                                                 const ngx_sockaddr_t &at, socklen_t len) noexcept {
    if (link->state == link_state::down || link->state == link_state::resolving) return false;
    return ngx_cmp_sockaddr(&link->sockaddr.sockaddr, link->socklen, const_cast<struct sockaddr *>(&at.sockaddr),
                            len, 1) != NGX_OK;
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

ngx_http_resend_confirmation_redis_conf_t *
ngx_http_resend_confirmation_link_conf(ngx_http_resend_confirmation_link_t *link) noexcept {
    return link->conf;
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
    if (link->state == link_state::down && !link->hold_down.timer_set) (void) connect(link);
}
