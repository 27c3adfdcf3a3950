// The request flow, one function per step:
// handler -> method/media checks -> client limits -> read body ->
// parse+validate -> email limits -> record (async,
// ngx_http_resend_confirmation_record.cpp) -> respond.

#include "ngx_http_resend_confirmation.h"

#include "core/media_type.hpp"

static void ngx_http_resend_confirmation_body_ready(ngx_http_request_t *r) noexcept;

// HTTP/2's default initial window: a client may send this much unasked.
static const off_t http2_drain_limit = 65535;

static ngx_http_resend_confirmation_ctx_t *
ngx_http_resend_confirmation_create_ctx(ngx_http_request_t *r) noexcept {
    auto *ctx = static_cast<ngx_http_resend_confirmation_ctx_t *>(
        ngx_pcalloc(r->pool, sizeof(ngx_http_resend_confirmation_ctx_t)));
    if (ctx != nullptr) ngx_http_set_ctx(r, ctx, ngx_http_resend_confirmation_module);
    return ctx;
}

// The checks that need no body: the method, then the declared media type.
static resend::outcome ngx_http_resend_confirmation_check_headers(ngx_http_request_t *r) noexcept {
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
// answer needs (status, Retry-After).
static resend::outcome ngx_http_resend_confirmation_limited(ngx_http_request_t *r,
                                                            ngx_http_resend_confirmation_ctx_t *ctx,
                                                            ngx_http_resend_confirmation_limit_verdict_t limited,
                                                            ngx_http_resend_confirmation_limit_phase_t phase) noexcept {
    if (limited.result == ngx_http_resend_confirmation_limit_verdict_t::silenced) return resend::outcome::silenced;
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_resend_confirmation_module));
    ctx->status = lcf->limit_status;
    ctx->retry_after = limited.retry_after;
    return phase == ngx_http_resend_confirmation_limit_phase_t::client ? resend::outcome::client_limited
                                        : resend::outcome::email_limited;
}

// Refuse without reading the body.
static ngx_int_t ngx_http_resend_confirmation_refuse_early(
    ngx_http_request_t *r, ngx_http_resend_confirmation_ctx_t *ctx,
    resend::outcome result) noexcept {
#if (NGX_HTTP_V2)
    // HTTP/2 and a body small enough to be in flight already (within the
    // initial flow-control window): answering before it ends makes nginx
    // close the stream with RST_STREAM(NO_ERROR), which RFC 9113 allows but
    // some clients (curl 7.88) report as an error instead of our answer.
    // Take the body in, drop it as it comes, then answer.
    if (r->stream != nullptr && r->headers_in.content_length_n > 0 &&
        r->headers_in.content_length_n <= http2_drain_limit) {
        ctx->draining = 1;
        ctx->refusal = result;
        ngx_int_t rc = ngx_http_read_client_request_body(r, ngx_http_resend_confirmation_body_ready);
        return rc >= NGX_HTTP_SPECIAL_RESPONSE ? rc : NGX_DONE;
    }
    bool http2 = r->stream != nullptr;
#else
    bool http2 = false;
#endif
    if (result == resend::outcome::payload_too_large && !http2) {
        // As nginx's own client_max_body_size: no "100 Continue", so the
        // client need not send what we would only throw away; no keep-alive,
        // and a lingering close that half-closes at once, so the client sees
        // the end of the answer without waiting for us to drain its body.
        // (An HTTP/2 stream just skips its DATA frames: discarded below.)
        r->expect_tested = 1;
        r->keepalive = 0;
        r->lingering_close = 1;
    } else if (ngx_http_discard_request_body(r) != NGX_OK) {
        // Discarding keeps the framing of the connection (the next
        // pipelined request starts after this body); when even that fails,
        // the connection cannot be reused.
        r->keepalive = 0;
    }
    return ngx_http_resend_confirmation_reply(r, ctx, result);
}

ngx_int_t ngx_http_resend_confirmation_handler(ngx_http_request_t *r) noexcept {
    auto *ctx = ngx_http_resend_confirmation_create_ctx(r);
    if (ctx == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;

    resend::outcome refused = ngx_http_resend_confirmation_check_headers(r);
    if (refused != resend::outcome::none) {
        return ngx_http_resend_confirmation_refuse_early(r, ctx, refused);
    }

    ngx_http_resend_confirmation_limit_verdict_t limited =
        ngx_http_resend_confirmation_limit_check(r, ctx, ngx_http_resend_confirmation_limit_phase_t::client);
    if (limited.result == ngx_http_resend_confirmation_limit_verdict_t::silenced) {
        // A silent client limit: the answer must not tell, so the body is
        // still read and validated; a valid one then gets the silent 200.
        ctx->silenced = 1;
    } else if (limited.result != ngx_http_resend_confirmation_limit_verdict_t::passed) {
        return ngx_http_resend_confirmation_refuse_early(
            r, ctx, ngx_http_resend_confirmation_limited(r, ctx, limited, ngx_http_resend_confirmation_limit_phase_t::client));
    }

    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_resend_confirmation_module));
    if (r->headers_in.content_length_n > static_cast<off_t>(lcf->max_body_size)) {
        return ngx_http_resend_confirmation_refuse_early(r, ctx,
                                                         resend::outcome::payload_too_large);
    }

    ngx_int_t rc = ngx_http_read_client_request_body(r, ngx_http_resend_confirmation_body_ready);
    if (rc >= NGX_HTTP_SPECIAL_RESPONSE) {
        // The body filter saw too many bytes while nginx was reading what
        // arrived with the headers: answer it ourselves, in JSON.
        if (ctx->outcome == resend::outcome::payload_too_large) {
            r->keepalive = 0;
            return ngx_http_resend_confirmation_reply(r, ctx, resend::outcome::payload_too_large);
        }
        return rc;
    }
    return NGX_DONE;
}

// Called by nginx's body reader once the whole body is in (memory or file).
static void ngx_http_resend_confirmation_body_ready(ngx_http_request_t *r) noexcept {
    auto *ctx = static_cast<ngx_http_resend_confirmation_ctx_t *>(
        ngx_http_get_module_ctx(r, ngx_http_resend_confirmation_module));
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_resend_confirmation_module));

    if (ctx->draining) {  // refused before the body (HTTP/2): now answer
        ngx_http_finalize_request(r, ngx_http_resend_confirmation_reply(r, ctx, ctx->refusal));
        return;
    }

    size_t size = 0;
    bool too_large = false;
    u_char *body = ngx_http_resend_confirmation_body_flatten(r, lcf->max_body_size, &size,
                                                             &too_large);
    if (too_large) {
        r->keepalive = 0;
        ngx_http_finalize_request(
            r, ngx_http_resend_confirmation_reply(r, ctx, resend::outcome::payload_too_large));
        return;
    }
    if (body == nullptr) {
        ngx_http_finalize_request(r, NGX_HTTP_INTERNAL_SERVER_ERROR);
        return;
    }

    resend::parsed_request request =
        ngx_http_resend_confirmation_parser()->parse(reinterpret_cast<const char *>(body), size);

    if (request.result != resend::outcome::accepted) {
        ngx_http_finalize_request(r, ngx_http_resend_confirmation_reply(r, ctx, request.result));
        return;
    }

    if (ctx->silenced) {
        ngx_http_finalize_request(
            r, ngx_http_resend_confirmation_reply(r, ctx, resend::outcome::silenced));
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

    ngx_http_resend_confirmation_limit_verdict_t limited = ngx_http_resend_confirmation_limit_check(r, ctx, ngx_http_resend_confirmation_limit_phase_t::email);
    if (limited.result != ngx_http_resend_confirmation_limit_verdict_t::passed) {
        ngx_http_finalize_request(
            r, ngx_http_resend_confirmation_reply(
                   r, ctx, ngx_http_resend_confirmation_limited(r, ctx, limited, ngx_http_resend_confirmation_limit_phase_t::email)));
        return;
    }

    // The answer waits for Redis: ngx_http_resend_confirmation_recorded()
    // finalizes the request. The reference taken by the body reader keeps
    // it alive meanwhile.
    if (!ngx_http_resend_confirmation_record(r, ctx)) {
        ngx_http_finalize_request(r, ngx_http_resend_confirmation_reply_unrecorded(r, ctx));
    }
}
