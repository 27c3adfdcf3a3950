// The record step of the flow: decides the stream entry of an accepted
// request, its fields and their order,
//   XADD <stream> MAXLEN ~ <maxlen> * email <as sent> ip <$remote_addr>
//        request_id <$request_id> received_at <ms since epoch> [<field> <value>]...
// and the answer once Redis has it, or could not take it (the failure policy:
// 503, 200 "lost", or 200 "spooled" once the spool keeps it; the email
// limits' count is given back only where the record surely is not in
// Redis), or the client has gone (499). With shared limits the same XADD
// runs inside their script (shared_limit.cpp), which may silence the
// request instead.
// A request a local zone silenced takes the same way (record_silence()):
// one command on the same link, whose fate decides its answer as a
// record's does, so that neither its time nor its status tells.

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"
#include "limit/ngx_http_resend_confirmation_limit.h"
#include "redis/ngx_http_resend_confirmation_redis.h"
#include "spool/ngx_http_resend_confirmation_spool.h"

#include "core/shared_limit.hpp"

#include <charconv>

namespace {

void record_cleanup(void *data) noexcept {
    auto *ctx = static_cast<ngx_http_resend_confirmation_ctx_t *>(data);
    if (ctx->pending != nullptr) {
        ngx_http_resend_confirmation_link_detach(ctx->pending);
        ctx->pending = nullptr;
    }
}

// While the record is in flight: has the client gone (closed or shut down
// its side after a complete request)? Then the request ends at once, 499
// `client_closed`, nothing sent; its command stays in the link (detached by
// the cleanup above) and still reaches Redis. Readable data is not EOF: a
// keep-alive client may have pipelined its next request.
void record_watch_client(ngx_http_request_t *r) noexcept {
    ngx_connection_t *c = r->connection;
    ngx_event_t *rev = c->read;
    ngx_err_t err = 0;
#if (NGX_HTTP_V2)
    if (r->stream != nullptr) {
        if (!c->error) return;  // nginx marks a stream the client reset or closed
    } else
#endif
#if (NGX_HTTP_V3)
    if (c->quic != nullptr) {
        if (!rev->error) return;
    } else
#endif
#if (NGX_HAVE_EPOLLRDHUP)
    if ((ngx_event_flags & NGX_USE_EPOLL_EVENT) && ngx_use_epoll_rdhup) {
        // The kernel says whether the peer shut down its side (EPOLLRDHUP).
        if (!rev->pending_eof) return;
        socklen_t len = sizeof(err);  // a reset rather than a FIN: say so in the log
        if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) == -1) err = ngx_socket_errno;
    } else
#endif
    {
        u_char byte;
        ssize_t n = recv(c->fd, &byte, 1, MSG_PEEK);
        err = ngx_socket_errno;
        if (n > 0 || (n == -1 && err == NGX_EAGAIN)) {
            // Still there. With level-triggered events a pipelined request
            // would wake us on every loop turn: stop watching (the answer
            // goes out when Redis replies; nginx reads on afterwards).
            if (n > 0 && (ngx_event_flags & NGX_USE_LEVEL_EVENT) && rev->active) {
                if (ngx_del_event(rev, NGX_READ_EVENT, 0) != NGX_OK) {
                    ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
                }
            }
            return;
        }
        if (n == 0) err = 0;
    }

    rev->eof = 1;
    c->error = 1;
    ngx_log_error(NGX_LOG_INFO, c->log, err,
                  "client prematurely closed connection while its record was sent to redis");
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    ctx->outcome = resend::outcome::client_closed;
    ctx->stage = ngx_http_resend_confirmation_stage_t::answered;
    ngx_http_finalize_request(r, NGX_HTTP_CLIENT_CLOSED_REQUEST);
}

}  // namespace

size_t ngx_http_resend_confirmation_record_command(std::string_view stream, std::string_view maxlen,
                                                   std::span<const std::string_view> fields,
                                                   std::string_view *args) noexcept {
    size_t n = 0;
    args[n++] = "XADD";
    args[n++] = stream;
    args[n++] = "MAXLEN";
    args[n++] = "~";
    args[n++] = maxlen;
    args[n++] = "*";
    for (std::string_view field : fields) args[n++] = field;
    return n;
}

namespace {

// What a request a local zone silenced sends in place of its record,
// built from it so that nginx does the same work: with shared limits, their
// script with dry run argument 2 (it takes its silencing way: the buckets
// read and set again as they were, an entry to the silence stream); without
// them, that entry alone,
//   XADD <silence stream> MAXLEN ~ 1 * limit 0
// about an XADD's cost as the record's, nothing of the request. A write in
// the stream's slot, so the same node, refusals (OOM, READONLY, ...) and
// WAIT as the record. Its fields, not the request's, are what the spool
// keeps should Redis not answer: replayed, they record nothing.
bool record_silence(ngx_http_request_t *r,
                    ngx_http_resend_confirmation_ctx_t *ctx,
                    std::string_view *args,
                    std::span<const std::string_view> *command) noexcept {
    static constexpr std::string_view fields[] = {"limit", "0"};
    std::string_view stream = ngx_http_resend_confirmation_view(ngx_http_resend_confirmation_loc_conf(r)->stream);
    size_t size = resend::shared_limit_silence_key_size(stream);
    auto *key = static_cast<char *>(ngx_pnalloc(r->pool, size));
    if (key == nullptr) return false;
    resend::shared_limit_silence_key_write(key, stream);
    ctx->silence_key = {key, size};
    ctx->fields = fields;
    ctx->nfields = std::size(fields);
    if (ngx_http_resend_confirmation_loc_conf(r)->shared_limits != nullptr) return true;
    *command = {args, ngx_http_resend_confirmation_record_command(ctx->silence_key, "1", fields, args)};
    return true;
}

}  // namespace

namespace {

// The record's fields (name, value, ...): email, ip, request_id,
// received_at and the configured ones, kept in ctx for the spool should
// Redis not take them in time. False when out of memory.
bool record_fields(ngx_http_request_t *r, ngx_http_resend_confirmation_ctx_t *ctx, std::string_view *fields) noexcept {
    auto *lcf = ngx_http_resend_confirmation_loc_conf(r);
    ngx_uint_t extra = lcf->fields != nullptr ? lcf->fields->nelts : 0;
    auto *received_at = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_INT64_LEN));
    if (received_at == nullptr) return false;
    ngx_time_t *now = ngx_timeofday();
    // std::to_chars rather than ngx_sprintf: this runs for every accepted request.
    auto *received_at_end = reinterpret_cast<u_char *>(
        std::to_chars(reinterpret_cast<char *>(received_at),
                      reinterpret_cast<char *>(received_at) + NGX_INT64_LEN,
                      static_cast<uint64_t>(now->sec) * 1000 + now->msec)
            .ptr);
    ngx_http_variable_value_t *request_id = ngx_http_resend_confirmation_request_id(r);

    size_t n = 0;
    fields[n++] = "email";
    fields[n++] = ngx_http_resend_confirmation_view(ctx->email);
    fields[n++] = "ip";
    fields[n++] = ngx_http_resend_confirmation_view(r->connection->addr_text);
    fields[n++] = "request_id";
    fields[n++] = (request_id != nullptr && !request_id->not_found)
                      ? std::string_view(reinterpret_cast<const char *>(request_id->data), request_id->len)
                      : std::string_view();
    fields[n++] = "received_at";
    fields[n++] = {reinterpret_cast<const char *>(received_at),
                   static_cast<size_t>(received_at_end - received_at)};
    for (ngx_uint_t i = 0; i < extra; ++i) {
        auto *field = static_cast<ngx_http_resend_confirmation_field_t *>(lcf->fields->elts) + i;
        ngx_str_t value;
        if (ngx_http_complex_value(r, &field->value, &value) != NGX_OK) return false;
        fields[n++] = ngx_http_resend_confirmation_view(field->name);
        fields[n++] = ngx_http_resend_confirmation_view(value);
    }
    ctx->fields = fields;
    ctx->nfields = n;
    return true;
}

// The command is on its way: its entry is detached when the request goes
// (cleanup), and a client that leaves while we wait is noticed. Its FIN
// may have come with the body, and an edge-triggered event will not tell
// it again: look once now, after this loop turn's writes (the command's
// among them).
void watch_while_recording(ngx_http_request_t *r, ngx_http_resend_confirmation_ctx_t *ctx,
                           ngx_http_cleanup_t *cleanup) noexcept {
    cleanup->handler = record_cleanup;
    cleanup->data = ctx;
    r->read_event_handler = record_watch_client;
#if (NGX_HTTP_V2)
    if (r->stream != nullptr) return;  // nginx tells of the stream's end
#endif
#if (NGX_HTTP_V3)
    if (r->connection->quic != nullptr) return;
#endif
    ngx_post_event(r->connection->read, &ngx_posted_events);
}

}  // namespace

bool ngx_http_resend_confirmation_record(ngx_http_request_t *r,
                                         ngx_http_resend_confirmation_ctx_t *ctx) noexcept {
    auto *lcf = ngx_http_resend_confirmation_loc_conf(r);
    ngx_uint_t extra = lcf->fields != nullptr ? lcf->fields->nelts : 0;
    size_t nfields = 8 + 2 * extra;
    auto *fields = static_cast<std::string_view *>(ngx_palloc(r->pool, nfields * sizeof(std::string_view)));
    auto *args = static_cast<std::string_view *>(ngx_palloc(
        r->pool, ngx_http_resend_confirmation_record_command_args(nfields) * sizeof(std::string_view)));
    ngx_http_cleanup_t *cleanup = ngx_http_cleanup_add(r, 0);
    if (fields == nullptr || args == nullptr || cleanup == nullptr || !record_fields(r, ctx, fields)) return false;

    size_t argc = ngx_http_resend_confirmation_record_command(ngx_http_resend_confirmation_view(lcf->stream),
                                                              ngx_http_resend_confirmation_view(lcf->maxlen_text),
                                                              {ctx->fields, ctx->nfields}, args);
    std::span<const std::string_view> command{args, argc};
    ngx_http_resend_confirmation_link_done_pt done = ngx_http_resend_confirmation_record_done;
    if (!ngx_http_resend_confirmation_shared_limit_command(r, ctx, &command, &done)) return false;
    if (ctx->silenced && !record_silence(r, ctx, args, &command)) return false;
    ctx->redis_sent = ngx_current_msec;
    if (ngx_http_resend_confirmation_link_send(ngx_http_resend_confirmation_worker_link(lcf->redis), r, command,
                                               done, &ctx->pending, ctx->redis_sent) == nullptr) {
        return false;
    }
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "resend_confirmation: record sent to redis %V", &lcf->redis->addr.name);
    watch_while_recording(r, ctx, cleanup);
    return true;
}

ngx_int_t ngx_http_resend_confirmation_answer_unrecorded(ngx_http_request_t *r,
                                                        ngx_http_resend_confirmation_ctx_t *ctx,
                                                        ngx_http_resend_confirmation_fate_t fate) noexcept {
    auto *lcf = ngx_http_resend_confirmation_loc_conf(r);
    // Written and never answered: Redis may hold it (it may only have been
    // slow), so the email limits keep their count either way.
    bool unknown = fate == ngx_http_resend_confirmation_fate_t::unknown;
    if (static_cast<ngx_http_resend_confirmation_redis_failure_t>(lcf->redis_failure) ==
            ngx_http_resend_confirmation_redis_failure_t::spool &&
        fate != ngx_http_resend_confirmation_fate_t::refused && ctx->fields != nullptr) {
        // Redis could not take it in time (down, busy, slow): the spool
        // keeps it until Redis can, and the client gets the 200. A command
        // written but not answered is kept too: delivery is at least once.
        // A silenced request's entry is kept in its place: the same work,
        // the same answer (a 503 when the spool is full), nothing recorded.
        ngx_int_t rc = ngx_http_resend_confirmation_spool_append(r, ctx);
        if (rc == NGX_OK) return ngx_http_resend_confirmation_answer(r, ctx, ngx_http_resend_confirmation_spooled(ctx));
        if (rc == NGX_AGAIN) return NGX_DONE;  // answered once the fsync is over
        // In the file, not known to be on disk: as a failed fsync (the
        // email limits keep their count; it may still be replayed).
        if (rc == NGX_BUSY) return ngx_http_resend_confirmation_answer(r, ctx, resend::outcome::redis_timeout);
        // Not kept (the spool is full, or its disk failed): as `reject`.
    }
    if (static_cast<ngx_http_resend_confirmation_redis_failure_t>(lcf->redis_failure) ==
        ngx_http_resend_confirmation_redis_failure_t::accept) {
        // Nothing of a silenced request was to be recorded: nothing lost.
        if (ctx->silenced) return ngx_http_resend_confirmation_answer(r, ctx, resend::outcome::silenced);
        // Answered as accepted: the email limits keep their count.
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      unknown ? "resend_confirmation: request perhaps not recorded (no reply in time), "
                                "answered 200 (resend_confirmation_redis_failure accept)"
                              : "resend_confirmation: request not recorded, answered 200 "
                                "(resend_confirmation_redis_failure accept)");
        // The 200 of `lost` either way; the variable tells the unknown case apart.
        return ngx_http_resend_confirmation_answer_as(
            r, ctx, unknown ? resend::outcome::redis_timeout : resend::outcome::lost, resend::outcome::lost);
    }
    if (unknown) return ngx_http_resend_confirmation_answer(r, ctx, resend::outcome::redis_timeout);
    // Surely not recorded: the email quota it took goes back, so that a retry
    // (or the next request for the address) is not silenced for nothing.
    ngx_http_resend_confirmation_limit_refund(ctx);
    return ngx_http_resend_confirmation_answer(r, ctx, resend::outcome::redis_error);
}

void ngx_http_resend_confirmation_recorded(ngx_http_request_t *r,
                                           ngx_http_resend_confirmation_fate_t fate) noexcept {
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    ctx->redis_time = ngx_current_msec - ctx->redis_sent;
    ctx->redis_answered = 1;
    ngx_log_debug2(NGX_LOG_DEBUG_HTTP, r->connection->log, 0, "resend_confirmation: record %s after %M ms",
                   fate == ngx_http_resend_confirmation_fate_t::stored    ? "stored"
                   : fate == ngx_http_resend_confirmation_fate_t::refused ? "refused"
                   : fate == ngx_http_resend_confirmation_fate_t::unsent  ? "unsent"
                   : fate == ngx_http_resend_confirmation_fate_t::busy    ? "busy"
                                                                          : "unknown",
                   ctx->redis_time);
    ngx_connection_t *c = r->connection;
    resend::outcome accepted = ctx->silenced          ? resend::outcome::silenced
                               : ctx->dry_run_limited ? resend::outcome::dry_run_limited
                                                      : resend::outcome::accepted;
    ngx_int_t rc = fate == ngx_http_resend_confirmation_fate_t::stored
                       ? ngx_http_resend_confirmation_answer(r, ctx, accepted)
                       : ngx_http_resend_confirmation_answer_unrecorded(r, ctx, fate);
    ngx_http_finalize_request(r, rc);
    // We run from the Redis connection's event, not the client's: let
    // nginx finish what the request posted (as upstream handlers do).
    ngx_http_run_posted_requests(c);
}

void ngx_http_resend_confirmation_record_done(ngx_http_resend_confirmation_link_t *, void *data,
                                              const resend::redis_reply *,
                                              ngx_http_resend_confirmation_fate_t fate) noexcept {
    ngx_http_resend_confirmation_recorded(static_cast<ngx_http_request_t *>(data), fate);
}
