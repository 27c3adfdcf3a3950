// The request flow, one function per step:
// handler -> method/media checks -> client limits -> read body ->
// parse+validate -> email limits -> record (async,
// ngx_http_resend_confirmation_record.cpp) -> answer.
// It decides every refusal: those before the body in
// refuse_before_body(), and what happens to a
// request that is too large, wherever that is found, in
// ngx_http_resend_confirmation_too_large().

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"
#include "limit/ngx_http_resend_confirmation_limit.h"
#include "redis/ngx_http_resend_confirmation_redis.h"

#include "core/media_type.hpp"

#if (NGX_HTTP_V2)
extern "C" {
#include <ngx_http_v2_module.h>
}
#endif

namespace {

void body_ready(ngx_http_request_t *r) noexcept;

// The checks that need no body: the method, then the declared media type.
resend::outcome check_headers(ngx_http_request_t *r) noexcept {
    if (r->method != NGX_HTTP_POST) return resend::outcome::method_not_allowed;

    ngx_table_elt_t *content_type = r->headers_in.content_type;
    if (content_type == nullptr ||
        !resend::media_type_is_json({reinterpret_cast<const char *>(content_type->value.data),
                                     content_type->value.len})) {
        return resend::outcome::unsupported_media_type;
    }
    return resend::outcome::none;
}

// The outcome of a request a limit refused or silenced; sets what the
// answer needs (Retry-After).
resend::outcome limit_outcome(
    ngx_http_resend_confirmation_ctx_t *ctx,
    ngx_http_resend_confirmation_limit_verdict_t limited,
    ngx_http_resend_confirmation_limit_phase_t phase) noexcept {
    if (limited.result == ngx_http_resend_confirmation_limit_verdict_t::silenced) {
        return resend::outcome::silenced;
    }
    ctx->retry_after = limited.retry_after;
    return phase == ngx_http_resend_confirmation_limit_phase_t::client
               ? resend::outcome::client_limited
               : resend::outcome::email_limited;
}

// HTTP/2, a refusal before the body, and a declared body small enough to be
// in flight already: answering before it ends makes nginx close the stream
// with RST_STREAM(NO_ERROR), which RFC 9113 allows but some clients (curl
// 7.88) report as an error instead of our answer. So the body is taken in
// and dropped as it comes (the body filter, while draining), then `result`
// is answered (body_ready). "In flight already" is what a client may send
// before any window update: nginx advertises http2_body_preread_size as the
// initial window. False when this does not apply.
bool drain_first(ngx_http_request_t *r,
                 ngx_http_resend_confirmation_ctx_t *ctx,
                 resend::outcome result,
                 ngx_int_t *rc) noexcept {
#if (NGX_HTTP_V2)
    if (r->stream == nullptr || r->headers_in.content_length_n <= 0) return false;
    auto *h2scf = static_cast<ngx_http_v2_srv_conf_t *>(
        r->stream->connection->http_connection->conf_ctx->srv_conf[ngx_http_v2_module.ctx_index]);
    if (r->headers_in.content_length_n > static_cast<off_t>(h2scf->preread_size)) return false;
    ctx->stage = ngx_http_resend_confirmation_stage_t::draining;
    ctx->outcome = result;
    *rc = ngx_http_read_client_request_body(r, body_ready);
    if (*rc < NGX_HTTP_SPECIAL_RESPONSE) *rc = NGX_DONE;
    return true;
#else
    (void) r, (void) ctx, (void) result, (void) rc;
    return false;
#endif
}

// Every refusal decided before the body is read (405, 415, 429, and a
// declared 413 over HTTP/2): the body is drained first over HTTP/2 when it
// is within the initial window; otherwise discarded, which keeps the framing
// of a keep-alive connection (the next pipelined request starts after it)
// and makes an HTTP/2 stream skip its DATA frames.
ngx_int_t refuse_before_body(
    ngx_http_request_t *r, ngx_http_resend_confirmation_ctx_t *ctx,
    resend::outcome result) noexcept {
    ngx_int_t rc;
    if (drain_first(r, ctx, result, &rc)) return rc;
    if (ngx_http_discard_request_body(r) != NGX_OK) {
        r->keepalive = 0;  // even discarding failed: the connection cannot be reused
    }
    return ngx_http_resend_confirmation_answer(r, ctx, result);
}

}  // namespace

// What happens to a request that is too large. Every 413 is decided here,
// whichever way it is found:
//
// - declared: the Content-Length is over resend_confirmation_max_body_size
//   (the handler, before reading anything). Over HTTP/1 the answer goes at
//   once, as nginx's own client_max_body_size refusal: no "100 Continue"
//   (the client need not send what would only be thrown away), no
//   keep-alive, and a lingering close that half-closes at once, so that the
//   client sees the end of the answer without waiting for its body to be
//   drained. Over HTTP/2 it is refused as any refusal before the body
//   (refuse_before_body).
// - counted: the body filter counted past the limit while reading (chunked
//   and HTTP/2 bodies declare no length up front). Reading stops, the rest
//   of the body stays unread, and nginx finalizes the request with 413.
// - by_nginx: nginx is sending its own 413 page for our request: after
//   `counted`, or when client_max_body_size refused the request before the
//   handler ran (the context is then created by the header filter).
//
// The JSON 413 is answered by the handler for `declared`; for the other two,
// the answer filters (answer.cpp) put it in place of nginx's page.
ngx_int_t ngx_http_resend_confirmation_too_large(ngx_http_request_t *r,
                                                 ngx_http_resend_confirmation_ctx_t *ctx,
                                                 ngx_http_resend_confirmation_too_large_t when) noexcept {
    ctx->outcome = resend::outcome::payload_too_large;
    switch (when) {
    case ngx_http_resend_confirmation_too_large_t::declared:
#if (NGX_HTTP_V2)
        if (r->stream != nullptr) {  // drained first, or its DATA frames skipped
            return refuse_before_body(r, ctx, ctx->outcome);
        }
#endif
        r->expect_tested = 1;
        r->keepalive = 0;
        r->lingering_close = 1;
        return ngx_http_resend_confirmation_answer(r, ctx, ctx->outcome);
    case ngx_http_resend_confirmation_too_large_t::counted:
        r->lingering_close = 1;
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    case ngx_http_resend_confirmation_too_large_t::by_nginx:
        ctx->stage = ngx_http_resend_confirmation_stage_t::replacing;
        return NGX_OK;
    }
    return NGX_ERROR;
}

ngx_int_t ngx_http_resend_confirmation_handler(ngx_http_request_t *r) noexcept {
    auto *ctx = ngx_http_resend_confirmation_create_ctx(r);
    if (ctx == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;

    resend::outcome refused = check_headers(r);
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "resend_confirmation: method and media type %s",
                   refused == resend::outcome::none ? "pass" : "refused");
    if (refused != resend::outcome::none) {
        return refuse_before_body(r, ctx, refused);
    }

    ngx_http_resend_confirmation_limit_verdict_t limited = ngx_http_resend_confirmation_limit_check(
        r, ctx, ngx_http_resend_confirmation_limit_phase_t::client);
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "resend_confirmation: client limits: %d (0 pass, 1 refused, 2 silenced)",
                   static_cast<int>(limited.result));
    if (limited.result == ngx_http_resend_confirmation_limit_verdict_t::silenced) {
        // A silent client limit: the answer must not tell, so the body is
        // still read and validated; a valid one then gets the silent 200.
        ctx->silenced = 1;
    } else if (limited.result != ngx_http_resend_confirmation_limit_verdict_t::passed) {
        return refuse_before_body(
            r, ctx,
            limit_outcome(ctx, limited, ngx_http_resend_confirmation_limit_phase_t::client));
    }

    if (r->headers_in.content_length_n >
        static_cast<off_t>(ngx_http_resend_confirmation_loc_conf(r)->max_body_size)) {
        return ngx_http_resend_confirmation_too_large(
            r, ctx, ngx_http_resend_confirmation_too_large_t::declared);
    }

    // A 413 from the body filter (too_large, counted) comes back as rc: nginx
    // finalizes the request with it and the answer filters answer in JSON.
    ngx_int_t rc = ngx_http_read_client_request_body(r, body_ready);
    return rc >= NGX_HTTP_SPECIAL_RESPONSE ? rc : NGX_DONE;
}

namespace {

// Called by nginx's body reader once the whole body is in (memory or file).
void body_ready(ngx_http_request_t *r) noexcept {
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);

    if (ctx->stage == ngx_http_resend_confirmation_stage_t::draining) {
        // Refused before the body (HTTP/2), which is now all in: answer.
        ngx_http_finalize_request(r, ngx_http_resend_confirmation_answer(r, ctx, ctx->outcome));
        return;
    }

    size_t size = 0;
    u_char *body = ngx_http_resend_confirmation_body_flatten(r, &size);
    if (body == nullptr) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    resend::parsed_request request =
        ngx_http_resend_confirmation_parser()->parse(reinterpret_cast<const char *>(body), size);
    // No address in debug lines either: only sizes and verdicts.
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "resend_confirmation: body of %uz bytes parsed: %*s", size,
                   resend::answer_for(request.result).word.size(),
                   resend::answer_for(request.result).word.data());

    if (request.result != resend::outcome::accepted) {
        ngx_http_finalize_request(r, ngx_http_resend_confirmation_answer(r, ctx, request.result));
        return;
    }

    // The parser's copy lives only until the next parse: keep our own.
    ctx->email.len = request.email.size();
    ctx->email.data = static_cast<u_char *>(ngx_pnalloc(r->pool, request.email.size()));
    if (ctx->email.data == nullptr) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }
    ngx_memcpy(ctx->email.data, request.email.data(), request.email.size());

    // A request silenced by a client zone is not counted by the email zones.
    ngx_http_resend_confirmation_limit_verdict_t limited{ngx_http_resend_confirmation_limit_verdict_t::passed, 0};
    if (!ctx->silenced) {
        limited = ngx_http_resend_confirmation_limit_check(r, ctx, ngx_http_resend_confirmation_limit_phase_t::email);
    }
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0,
                   "resend_confirmation: email limits: %d (0 pass, 1 refused, 2 silenced)",
                   static_cast<int>(limited.result));
    if (limited.result == ngx_http_resend_confirmation_limit_verdict_t::silenced) {
        ctx->silenced = 1;
    } else if (limited.result != ngx_http_resend_confirmation_limit_verdict_t::passed) {
        ngx_http_finalize_request(
            r, ngx_http_resend_confirmation_answer(
                   r, ctx,
                   limit_outcome(
                       ctx, limited, ngx_http_resend_confirmation_limit_phase_t::email)));
        return;
    }

    // A silenced request goes to Redis too, the same way as a recorded one
    // (record.cpp): its answer waits for the same round trip, whose fate
    // decides it, so that neither its time nor its status tells.
    // The answer waits for Redis: ngx_http_resend_confirmation_recorded()
    // finalizes the request. The reference taken by the body reader keeps
    // it alive meanwhile.
    if (!ngx_http_resend_confirmation_record(r, ctx)) {
        ngx_http_finalize_request(r, ngx_http_resend_confirmation_answer_unrecorded(
                                        r, ctx, ngx_http_resend_confirmation_fate_t::unsent));
    }
}

}  // namespace
