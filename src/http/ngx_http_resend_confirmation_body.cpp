// The request body: a request body filter that counts the body as it
// arrives and stops reading once the module's limit is passed (chunked and
// HTTP/2 bodies declare no length up front; what then happens is
// ngx_http_resend_confirmation_too_large()'s), or drops it while a refused
// HTTP/2 request drains; and the flattening of what nginx kept, in memory
// or in a temp file, into one padded buffer for the JSON parser.

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"

static ngx_http_request_body_filter_pt ngx_http_next_request_body_filter;

namespace {

ngx_int_t request_body_filter(ngx_http_request_t *r, ngx_chain_t *in) noexcept {
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    if (ctx == nullptr) return ngx_http_next_request_body_filter(r, in);

    if (ctx->stage == ngx_http_resend_confirmation_stage_t::draining) {
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

    for (ngx_chain_t *cl = in; cl != nullptr; cl = cl->next) {
        ctx->body_received += ngx_buf_size(cl->buf);
    }
    if (ctx->body_received > static_cast<off_t>(ngx_http_resend_confirmation_loc_conf(r)->max_body_size)) {
        return ngx_http_resend_confirmation_too_large(r, ctx,
                                                      ngx_http_resend_confirmation_too_large_t::counted);
    }
    return ngx_http_next_request_body_filter(r, in);
}

}  // namespace

ngx_int_t ngx_http_resend_confirmation_body_filter_init(ngx_conf_t *) noexcept {
    ngx_http_next_request_body_filter = ngx_http_top_request_body_filter;
    ngx_http_top_request_body_filter = request_body_filter;
    return NGX_OK;
}

// The body filter above has counted every byte of it, so the body is within
// the limit here.
u_char *ngx_http_resend_confirmation_body_flatten(ngx_http_request_t *r, size_t *size) noexcept {
    ngx_chain_t *bufs = r->request_body != nullptr ? r->request_body->bufs : nullptr;

    off_t total = 0;
    for (ngx_chain_t *cl = bufs; cl != nullptr; cl = cl->next) total += ngx_buf_size(cl->buf);

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
        // was just written (page cache) and is within the limit.
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
