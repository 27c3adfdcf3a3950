// The HTTP answers: the fixed JSON bodies of src/core/outcome.hpp with their
// headers, sent by ngx_http_resend_confirmation_answer(); and a header/body
// filter pair that puts the same JSON 413 in place of the page nginx itself
// sends for one of our requests that is too large (when and why:
// ngx_http_resend_confirmation_too_large()).

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"

static ngx_http_output_header_filter_pt ngx_http_next_header_filter;
static ngx_http_output_body_filter_pt ngx_http_next_body_filter;

static ngx_str_t json_type = ngx_string("application/json");

namespace {

ngx_int_t add_header(ngx_http_request_t *r, ngx_str_t name, ngx_str_t value) noexcept {
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
// Retry-After for 503: the link tries Redis again 100 ms after a failure; for a
// limit, the seconds until a request would pass).
ngx_int_t set_headers(ngx_http_request_t *r, ngx_http_resend_confirmation_ctx_t *ctx, resend::outcome sent) noexcept {
    const resend::answer &answer = resend::answer_for(sent);
    // A limit's refusal has resend_confirmation_limit_status (429 by default).
    bool limited = sent == resend::outcome::client_limited || sent == resend::outcome::email_limited;
    r->headers_out.status = limited ? ngx_http_resend_confirmation_loc_conf(r)->limit_status : answer.status;
    r->headers_out.content_type = json_type;
    r->headers_out.content_type_len = json_type.len;
    r->headers_out.content_type_lowcase = nullptr;
    r->headers_out.charset.len = 0;
    r->headers_out.content_length_n = static_cast<off_t>(answer.body.size());
    if (r->headers_out.content_length != nullptr) {
        r->headers_out.content_length->hash = 0;
        r->headers_out.content_length = nullptr;
    }

    if (add_header(r, ngx_string("Cache-Control"),
                   ngx_string("no-store")) != NGX_OK) {
        return NGX_ERROR;
    }
    if (answer.status == NGX_HTTP_SERVICE_UNAVAILABLE &&
        add_header(r, ngx_string("Retry-After"), ngx_string("1")) !=
            NGX_OK) {
        return NGX_ERROR;
    }
    if (ctx->retry_after != 0) {
        auto *seconds = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_INT_T_LEN));
        if (seconds == nullptr) return NGX_ERROR;
        ngx_str_t value = {static_cast<size_t>(ngx_sprintf(seconds, "%ui", ctx->retry_after) - seconds),
                           seconds};
        if (add_header(r, ngx_string("Retry-After"), value) != NGX_OK) {
            return NGX_ERROR;
        }
    }
    if (answer.status == NGX_HTTP_NOT_ALLOWED &&
        add_header(r, ngx_string("Allow"), ngx_string("POST")) !=
            NGX_OK) {
        return NGX_ERROR;
    }
    return NGX_OK;
}

// One buffer pointing at the static body, the last of the response.
ngx_chain_t *body_chain(ngx_http_request_t *r, const resend::answer &answer) noexcept {
    auto *b = static_cast<ngx_buf_t *>(ngx_calloc_buf(r->pool));
    ngx_chain_t *out = ngx_alloc_chain_link(r->pool);
    if (b == nullptr || out == nullptr) return nullptr;
    // The bodies are static strings: nginx only reads them.
    b->pos = reinterpret_cast<u_char *>(const_cast<char *>(answer.body.data()));
    b->last = b->pos + answer.body.size();
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;

    out->buf = b;
    out->next = nullptr;
    return out;
}

}  // namespace

ngx_int_t ngx_http_resend_confirmation_answer(ngx_http_request_t *r,
                                             ngx_http_resend_confirmation_ctx_t *ctx,
                                             resend::outcome result) noexcept {
    return ngx_http_resend_confirmation_answer_as(r, ctx, result, result);
}

ngx_int_t ngx_http_resend_confirmation_answer_as(ngx_http_request_t *r,
                                                ngx_http_resend_confirmation_ctx_t *ctx,
                                                resend::outcome result, resend::outcome sent) noexcept {
    const resend::answer &answer = resend::answer_for(sent);
    ctx->outcome = result;
    ctx->stage = ngx_http_resend_confirmation_stage_t::answered;
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, r->connection->log, 0, "resend_confirmation: answer %ui %*s",
                   answer.status, answer.word.size(), answer.word.data());

    if (set_headers(r, ctx, sent) != NGX_OK) return NGX_ERROR;
    ngx_int_t rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only) return rc;
    ngx_chain_t *body = body_chain(r, answer);
    return body != nullptr ? ngx_http_output_filter(r, body) : NGX_ERROR;
}

namespace {

ngx_int_t header_filter(ngx_http_request_t *r) noexcept {
    if (r->headers_out.status != NGX_HTTP_REQUEST_ENTITY_TOO_LARGE) {
        return ngx_http_next_header_filter(r);
    }
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    if (ctx == nullptr) {
        // nginx refused the request before our handler ran: still our
        // endpoint, still our JSON.
        if (!ngx_http_resend_confirmation_loc_conf(r)->enabled) return ngx_http_next_header_filter(r);
        ctx = ngx_http_resend_confirmation_create_ctx(r);
        if (ctx == nullptr) return NGX_ERROR;
    }
    if (ctx->stage == ngx_http_resend_confirmation_stage_t::answered) {
        return ngx_http_next_header_filter(r);  // our own 413
    }
    // nginx's own 413 page for our request: our JSON goes in its place.
    if (ngx_http_resend_confirmation_too_large(r, ctx, ngx_http_resend_confirmation_too_large_t::by_nginx) !=
            NGX_OK ||
        set_headers(r, ctx, ctx->outcome) != NGX_OK) {
        return NGX_ERROR;
    }
    return ngx_http_next_header_filter(r);
}

ngx_int_t body_filter(ngx_http_request_t *r, ngx_chain_t *in) noexcept {
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    if (ctx == nullptr || ctx->stage != ngx_http_resend_confirmation_stage_t::replacing) {
        return ngx_http_next_body_filter(r, in);
    }

    // Swallow nginx's page; send ours once, when the page's last buffer passes.
    bool last = false;
    for (ngx_chain_t *cl = in; cl != nullptr; cl = cl->next) {
        cl->buf->pos = cl->buf->last;
        last = last || cl->buf->last_buf || cl->buf->last_in_chain;
    }
    if (!last) return NGX_OK;
    ctx->stage = ngx_http_resend_confirmation_stage_t::answered;
    ngx_chain_t *body = body_chain(r, resend::answer_for(ctx->outcome));
    return body != nullptr ? ngx_http_next_body_filter(r, body) : NGX_ERROR;
}

}  // namespace

ngx_int_t ngx_http_resend_confirmation_answer_filters_init(ngx_conf_t *) noexcept {
    ngx_http_next_header_filter = ngx_http_top_header_filter;
    ngx_http_top_header_filter = header_filter;
    ngx_http_next_body_filter = ngx_http_top_body_filter;
    ngx_http_top_body_filter = body_filter;
    return NGX_OK;
}
