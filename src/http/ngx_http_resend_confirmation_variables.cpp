// Variables for access logs and for later steps of the flow, and what they
// show when:
//   $resend_confirmation_outcome  one word per outcome (core/outcome.hpp),
//                                 once the answer is decided and not draining
//   $resend_confirmation_email    the validated email, normalized
//                                 (lowercased); empty until the body is valid
//   $resend_confirmation_mailbox  the same, in canonical mailbox form (no
//                                 +tag; gmail without dots), for limit keys
//   $resend_confirmation_client_prefix  the client address masked to its
//                                 prefix (resend_confirmation_client_prefix),
//                                 binary like $binary_remote_addr
//   $resend_confirmation_redis_time  seconds (ms resolution) from handing the
//                                 record to the link to Redis's reply or the
//                                 link's failure; empty when nothing was sent

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"

#include "core/email.hpp"
#include "core/shared_limit.hpp"

namespace {

ngx_int_t outcome_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t) noexcept {
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    // A refusal decided while the body drains is not sent yet: a client that
    // leaves meanwhile had no answer.
    if (ctx == nullptr || ctx->outcome == resend::outcome::none ||
        ctx->stage == ngx_http_resend_confirmation_stage_t::draining) {
        v->not_found = 1;
        return NGX_OK;
    }
    std::string_view word = resend::answer_for(ctx->outcome).word;
    v->data = reinterpret_cast<u_char *>(const_cast<char *>(word.data()));
    v->len = word.size();
    v->valid = 1;
    v->no_cacheable = 1;  // it changes as the request goes on
    v->not_found = 0;
    return NGX_OK;
}

// $resend_confirmation_email (data 0) and $resend_confirmation_mailbox (1).
ngx_int_t email_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t mailbox) noexcept {
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    if (ctx == nullptr || ctx->email.len == 0) {
        v->not_found = 1;
        return NGX_OK;
    }
    // Made on demand: only configurations that use the variable pay.
    auto *normalized = static_cast<u_char *>(ngx_pnalloc(r->pool, ctx->email.len));
    if (normalized == nullptr) return NGX_ERROR;
    std::string_view email{reinterpret_cast<const char *>(ctx->email.data), ctx->email.len};
    v->len = ctx->email.len;
    if (mailbox) {
        v->len = resend::email_mailbox(email, reinterpret_cast<char *>(normalized));
    } else {
        resend::email_normalize(email, reinterpret_cast<char *>(normalized));
    }
    v->data = normalized;
    v->valid = 1;
    v->no_cacheable = 1;  // not found until the body is validated
    v->not_found = 0;
    return NGX_OK;
}

ngx_int_t redis_time_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t) noexcept {
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    if (ctx == nullptr || !ctx->redis_answered) {
        v->not_found = 1;
        return NGX_OK;
    }
    // As $upstream_response_time: seconds with milliseconds.
    auto *text = static_cast<u_char *>(ngx_pnalloc(r->pool, NGX_TIME_T_LEN + 4));
    if (text == nullptr) return NGX_ERROR;
    v->len = ngx_sprintf(text, "%T.%03M", static_cast<time_t>(ctx->redis_time / 1000),
                         ctx->redis_time % 1000) - text;
    v->data = text;
    v->valid = 1;
    v->no_cacheable = 1;
    v->not_found = 0;
    return NGX_OK;
}

ngx_int_t client_prefix_variable(ngx_http_request_t *r, ngx_http_variable_value_t *v, uintptr_t) noexcept {
    const auto *prefix = ngx_http_resend_confirmation_loc_conf(r)->client_prefix;
    ngx_connection_t *c = r->connection;
    const u_char *address = nullptr;
    size_t size = 0;
    unsigned bits = 0;
    switch (c->sockaddr->sa_family) {
    case AF_INET:
        address = reinterpret_cast<const u_char *>(&reinterpret_cast<sockaddr_in *>(c->sockaddr)->sin_addr);
        size = 4;
        bits = prefix->ipv4;
        break;
#if (NGX_HAVE_INET6)
    case AF_INET6: {
        const in6_addr *a6 = &reinterpret_cast<sockaddr_in6 *>(c->sockaddr)->sin6_addr;
        if (IN6_IS_ADDR_V4MAPPED(a6)) {  // an IPv4 client: its IPv4 prefix
            address = a6->s6_addr + 12;
            size = 4;
            bits = prefix->ipv4;
        } else {
            address = a6->s6_addr;
            size = 16;
            bits = prefix->ipv6;
        }
        break;
    }
#endif
    default:  // unix: as $binary_remote_addr, the address text
        v->data = c->addr_text.data;
        v->len = c->addr_text.len;
        v->valid = 1;
        v->no_cacheable = 0;
        v->not_found = 0;
        return NGX_OK;
    }
    auto *masked = static_cast<u_char *>(ngx_pnalloc(r->pool, size));
    if (masked == nullptr) return NGX_ERROR;
    ngx_memcpy(masked, address, size);
    resend::mask_prefix(masked, size, bits);
    v->data = masked;
    v->len = size;
    v->valid = 1;
    v->no_cacheable = 0;
    v->not_found = 0;
    return NGX_OK;
}

}  // namespace

static ngx_http_variable_t ngx_http_resend_confirmation_variables[] = {
    {ngx_string("resend_confirmation_outcome"), nullptr,
     outcome_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("resend_confirmation_email"), nullptr,
     email_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("resend_confirmation_mailbox"), nullptr,
     email_variable, 1, NGX_HTTP_VAR_NOCACHEABLE, 0},
    {ngx_string("resend_confirmation_client_prefix"), nullptr,
     client_prefix_variable, 0, 0, 0},
    {ngx_string("resend_confirmation_redis_time"), nullptr,
     redis_time_variable, 0, NGX_HTTP_VAR_NOCACHEABLE, 0},
};

ngx_int_t ngx_http_resend_confirmation_add_variables(ngx_conf_t *cf) noexcept {
    for (ngx_http_variable_t &spec : ngx_http_resend_confirmation_variables) {
        ngx_http_variable_t *var = ngx_http_add_variable(cf, &spec.name, spec.flags);
        if (var == nullptr) return NGX_ERROR;
        var->get_handler = spec.get_handler;
        var->data = spec.data;
    }
    return NGX_OK;
}
