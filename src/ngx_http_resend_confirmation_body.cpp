// The request body: a request body filter that stops reading once the
// module's limit is passed (chunked and HTTP/2 bodies declare no length up
// front), and the flattening of what nginx kept, in memory or in a temp
// file, into one padded buffer for the JSON parser.

#include "ngx_http_resend_confirmation.h"

static ngx_http_request_body_filter_pt ngx_http_next_request_body_filter;

static ngx_int_t ngx_http_resend_confirmation_request_body_filter(ngx_http_request_t *r,
                                                                  ngx_chain_t *in) noexcept {
    auto *ctx = static_cast<ngx_http_resend_confirmation_ctx_t *>(
        ngx_http_get_module_ctx(r, ngx_http_resend_confirmation_module));
    if (ctx == nullptr) return ngx_http_next_request_body_filter(r, in);

    if (ctx->draining) {
        // Drop the data; let only the end of the body through, so that
        // nginx sees the body complete and calls the post handler.
        ngx_chain_t *last = nullptr;
        for (ngx_chain_t *cl = in; cl != nullptr; cl = cl->next) {
            cl->buf->pos = cl->buf->last;
            if (cl->buf->last_buf) last = cl;
        }
        if (last == nullptr) return NGX_OK;
        ngx_chain_t end = {last->buf, nullptr};
        return ngx_http_next_request_body_filter(r, &end);
    }

    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_resend_confirmation_module));
    for (ngx_chain_t *cl = in; cl != nullptr; cl = cl->next) {
        ctx->body_received += ngx_buf_size(cl->buf);
    }
    if (ctx->body_received > static_cast<off_t>(lcf->max_body_size)) {
        // nginx stops reading and finalizes with 413; the reply filters
        // turn its page into our JSON. The rest of the body stays unread.
        ctx->outcome = resend::outcome::payload_too_large;
        r->lingering_close = 1;
        return NGX_HTTP_REQUEST_ENTITY_TOO_LARGE;
    }
    return ngx_http_next_request_body_filter(r, in);
}

ngx_int_t ngx_http_resend_confirmation_body_filter_init(ngx_conf_t *) noexcept {
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = ngx_http_resend_confirmation_request_body_filter;
    return NGX_OK;
}

u_char *ngx_http_resend_confirmation_body_flatten(ngx_http_request_t *r, size_t limit,
                                                  size_t *size, bool *too_large) noexcept {
    ngx_chain_t *bufs = r->request_body != nullptr ? r->request_body->bufs : nullptr;

    off_t total = 0;
    for (ngx_chain_t *cl = bufs; cl != nullptr; cl = cl->next) total += ngx_buf_size(cl->buf);
    if (total > static_cast<off_t>(limit)) {
        *too_large = true;
        return nullptr;
    }

    // The parser reads ahead past the end: give it resend::body_padding bytes.
    auto *body = static_cast<u_char *>(ngx_pnalloc(r->pool, total + resend::body_padding));
    if (body == nullptr) return nullptr;

    u_char *p = body;
    for (ngx_chain_t *cl = bufs; cl != nullptr; cl = cl->next) {
        ngx_buf_t *b = cl->buf;
        if (ngx_buf_in_memory(b)) {
            p = ngx_cpymem(p, b->pos, b->last - b->pos);
            continue;
        }
        if (!b->in_file) continue;  // e.g. the empty last_buf closing a chunked body
        // client_body_in_file_only, or a body larger than
        // client_body_buffer_size: nginx wrote it to a temp file. The file
        // was just written (page cache) and is at most `limit` bytes.
        size_t want = static_cast<size_t>(b->file_last - b->file_pos);
        ssize_t n = ngx_read_file(b->file, p, want, b->file_pos);
        if (n != static_cast<ssize_t>(want)) {
            ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                          "resend_confirmation: short read of the request body temp file");
            return nullptr;
        }
        p += n;
    }
    ngx_memzero(p, resend::body_padding);
    *size = static_cast<size_t>(total);
    return body;
}
