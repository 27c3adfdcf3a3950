// Answers: the fixed JSON bodies of src/core/outcome.hpp with their headers,
// and a header/body filter pair that puts the same JSON in place of an error
// page nginx itself sends for one of our requests (a chunked or HTTP/2 body
// passing the limit is finalized by nginx's body reader with 413).

#include "ngx_http_resend_confirmation.h"

static ngx_http_output_header_filter_pt ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt ngx_http_next_body_filter;

static ngx_str_t json_type = ngx_string("application/json");

static ngx_int_t ngx_http_resend_confirmation_add_header(ngx_http_request_t *r, ngx_str_t name,
                                                         ngx_str_t value) noexcept {
    auto *h = static_cast<ngx_table_elt_t *>(ngx_list_push(&r->headers_out.headers));
    if (h == nullptr) return NGX_ERROR;
    h->hash = 1;
    h->key = name;
    h->value = value;
#if nginx_version >= 1023000
    h->next = nullptr;
#endif
    return NGX_OK;
}

// Status, Content-Type, Content-Length, Cache-Control (Allow for 405,
// Retry-After for 503: the link retries Redis within a second or two; for a
// limit, the seconds until a request would pass).
static ngx_int_t ngx_http_resend_confirmation_set_headers(ngx_http_request_t *r,
                                                          ngx_http_resend_confirmation_ctx_t *ctx,
                                                          const resend::reply &reply) noexcept {
    r->headers_out.status = ctx->status != 0 ? ctx->status : reply.status;
    r->headers_out.content_type = json_type;
    r->headers_out.content_type_len = json_type.len;
    r->headers_out.content_type_lowcase = nullptr;
    r->headers_out.charset.len = 0;
    r->headers_out.content_length_n = static_cast<off_t>(reply.body.size());
    if (r->headers_out.content_length != nullptr) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = nullptr;
    }

    if (ngx_http_resend_confirmation_add_header(r, ngx_string("Cache-Control"),
                                                ngx_string("no-store")) != NGX_OK) {
        return NGX_ERROR;
    }
    if (reply.status == NGX_HTTP_SERVICE_UNAVAILABLE &&
        ngx_http_resend_confirmation_add_header(r, ngx_string("Retry-After"), ngx_string("1")) !=
            NGX_OK) {
        return NGX_ERROR;
    }
    if (ctx->retry_after != 0) {
        auto *seconds = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_INT_T_LEN));
        if (seconds == nullptr) return NGX_ERROR;
        ngx_str_t value = {static_cast<size_t>(ngx_sprintf(seconds, "%ui", ctx->retry_after) - seconds),
                           seconds};
        if (ngx_http_resend_confirmation_add_header(r, ngx_string("Retry-After"), value) != NGX_OK) {
            return NGX_ERROR;
        }
    }
    if (reply.status == NGX_HTTP_NOT_ALLOWED &&
        ngx_http_resend_confirmation_add_header(r, ngx_string("Allow"), ngx_string("POST")) !=
            NGX_OK) {
        return NGX_ERROR;
    }
    return NGX_OK;
}

// One buffer pointing at the static body, the last of the response.
static ngx_chain_t *ngx_http_resend_confirmation_body_chain(ngx_http_request_t *r,
                                                           const resend::reply &reply) noexcept {
    auto *b = static_cast<ngx_buf_t *>(ngx_calloc_buf(r->pool));
    ngx_chain_t *out = ngx_alloc_chain_link(r->pool);
    if (b == nullptr || out == nullptr) return nullptr;
    // The bodies are static strings: nginx only reads them.
    b->pos = reinterpret_cast<u_char *>(const_cast<char *>(reply.body.data()));
    b->last = b->pos + reply.body.size();
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out->buf = b;
    out->next = nullptr;
    return out;
}

ngx_int_t ngx_http_resend_confirmation_reply(ngx_http_request_t *r,
                                             ngx_http_resend_confirmation_ctx_t *ctx,
                                             resend::outcome result) noexcept {
    const resend::reply &reply = resend::reply_for(result);
    ctx->outcome = result;
    ctx->replied = 1;

    if (ngx_http_resend_confirmation_set_headers(r, ctx, reply) != NGX_OK) return NGX_ERROR;
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) return rc;
    ngx_chain_t *body = ngx_http_resend_confirmation_body_chain(r, reply);
    return body != nullptr ? ngx_http_output_filter(r, body) : NGX_ERROR;
}

static ngx_http_resend_confirmation_ctx_t *
ngx_http_resend_confirmation_ctx_to_substitute(ngx_http_request_t *r) noexcept {
    auto *ctx = static_cast<ngx_http_resend_confirmation_ctx_t *>(
        ngx_http_get_module_ctx(r, ngx_http_resend_confirmation_module));
    return (ctx != nullptr && ctx->substitute) ? ctx : nullptr;
}

static ngx_int_t ngx_http_resend_confirmation_header_filter(ngx_http_request_t *r) noexcept {
    if (r->headers_out.status != NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        return ngx_http_next_header_filter(r);
    }
    auto *ctx = static_cast<ngx_http_resend_confirmation_ctx_t *>(
        ngx_http_get_module_ctx(r, ngx_http_resend_confirmation_module));
    if (ctx == nullptr) {
        // nginx refused a Content-Length over client_max_body_size before
        // our handler ran: still our endpoint, still our JSON.
        auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(
            ngx_http_get_module_loc_conf(r, ngx_http_resend_confirmation_module));
        if (!lcf->enabled) return ngx_http_next_header_filter(r);
        ctx = static_cast<ngx_http_resend_confirmation_ctx_t *>(
            ngx_pcalloc(r->pool, sizeof(ngx_http_resend_confirmation_ctx_t)));
        if (ctx == nullptr) return NGX_ERROR;
        ngx_http_set_ctx(r, ctx, ngx_http_resend_confirmation_module);
    }
    if (ctx->replied) return ngx_http_next_header_filter(r);
    // nginx's own 413 page for our request: answer our JSON instead.
    ctx->outcome = resend::outcome::payload_too_large;
    ctx->substitute = 1;
    if (ngx_http_resend_confirmation_set_headers(r, ctx, resend::reply_for(ctx->outcome)) != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_next_header_filter(r);
}

static ngx_int_t ngx_http_resend_confirmation_body_filter(ngx_http_request_t *r,
                                                          ngx_chain_t *in) noexcept {
    auto *ctx = ngx_http_resend_confirmation_ctx_to_substitute(r);
    if (ctx == nullptr) return ngx_http_next_body_filter(r, in);

    // Swallow nginx's page; send ours once, when the page's last buffer passes.
    bool last = false;
    for (ngx_chain_t *cl = in; cl != nullptr; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        last = last || cl->buf->last_buf || cl->buf->last_in_chain;
    }
    if (!last) return NGX_OK;
    ctx->substitute = 0;
    ctx->replied = 1;
    ngx_chain_t *body = ngx_http_resend_confirmation_body_chain(r, resend::reply_for(ctx->outcome));
    return body != nullptr ? ngx_http_next_body_filter(r, body) : NGX_ERROR;
}

ngx_int_t ngx_http_resend_confirmation_reply_filters_init(ngx_conf_t *) noexcept {
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = ngx_http_resend_confirmation_header_filter;
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = ngx_http_resend_confirmation_body_filter;
    return NGX_OK;
}
