// What the request's own files offer the rest of the module: the content
// handler, the body filter, the answers, the variables, $request_id and the
// record (XADD, and the request's answer once its fate is known).
#pragma once

#include "ngx_http_resend_confirmation.h"

#include <span>
#include <string_view>

// The ways a request is found too large; what follows is
// ngx_http_resend_confirmation_too_large()'s (handler.cpp).
enum class ngx_http_resend_confirmation_too_large_t : unsigned char {
    declared,  // its Content-Length, before anything is read
    counted,   // the body filter, while reading
    by_nginx,  // nginx is sending its own 413 for it (after `counted`, or client_max_body_size)
};

// handler.cpp
ngx_int_t ngx_http_resend_confirmation_handler(ngx_http_request_t *r) noexcept;
// What happens to a request that is too large, found `when`: see there.
ngx_int_t ngx_http_resend_confirmation_too_large(ngx_http_request_t *r,
                                                 ngx_http_resend_confirmation_ctx_t *ctx,
                                                 ngx_http_resend_confirmation_too_large_t when) noexcept;

// body.cpp
ngx_int_t ngx_http_resend_confirmation_body_filter_init(ngx_conf_t *cf) noexcept;
// The whole body in one buffer padded for the parser; null when out of memory.
u_char *ngx_http_resend_confirmation_body_flatten(ngx_http_request_t *r, size_t *size) noexcept;

// answer.cpp: the HTTP answers.
ngx_int_t ngx_http_resend_confirmation_answer(ngx_http_request_t *r,
                                             ngx_http_resend_confirmation_ctx_t *ctx,
                                             resend::outcome result) noexcept;
// The answer of `sent` (status, headers, body), the request's outcome
// `result` (redis_timeout under policy accept is answered as lost).
ngx_int_t ngx_http_resend_confirmation_answer_as(ngx_http_request_t *r,
                                                ngx_http_resend_confirmation_ctx_t *ctx,
                                                resend::outcome result, resend::outcome sent) noexcept;
ngx_int_t ngx_http_resend_confirmation_answer_filters_init(ngx_conf_t *cf) noexcept;

// variables.cpp
ngx_int_t ngx_http_resend_confirmation_add_variables(ngx_conf_t *cf) noexcept;

// record.cpp: the request's record in Redis.
// The command that records `fields` (name, value, ...) in `stream`, into
// `args` (room for record_command_args(fields.size())); returns its length.
// Live requests and the spool's replay send the same command.
size_t ngx_http_resend_confirmation_record_command(std::string_view stream, std::string_view maxlen,
                                                   std::span<const std::string_view> fields,
                                                   std::string_view *args) noexcept;
constexpr size_t ngx_http_resend_confirmation_record_command_args(size_t nfields) noexcept {
    return 6 + nfields;
}
// Sends XADD; false when the link cannot take it (answer through the policy now).
bool ngx_http_resend_confirmation_record(ngx_http_request_t *r,
                                         ngx_http_resend_confirmation_ctx_t *ctx) noexcept;
// The record's fate (from the link, or the shared limits' reply handler):
// answers and finalizes the request.
void ngx_http_resend_confirmation_recorded(ngx_http_request_t *r,
                                           ngx_http_resend_confirmation_fate_t fate) noexcept;
// How an XADD comes back from the link (`data`: the request): recorded().
void ngx_http_resend_confirmation_record_done(ngx_http_resend_confirmation_link_t *link, void *data,
                                              const resend::redis_reply *reply,
                                              ngx_http_resend_confirmation_fate_t fate) noexcept;
// What a request the spool kept is answered: spooled, or silenced (its
// entry kept in place of a record, nothing recorded).
inline resend::outcome ngx_http_resend_confirmation_spooled(const ngx_http_resend_confirmation_ctx_t *ctx) noexcept {
    return ctx->silenced ? resend::outcome::silenced : resend::outcome::spooled;
}
// Answers a request whose record failed (any fate but stored), per
// resend_confirmation_redis_failure.
ngx_int_t ngx_http_resend_confirmation_answer_unrecorded(ngx_http_request_t *r,
                                                        ngx_http_resend_confirmation_ctx_t *ctx,
                                                        ngx_http_resend_confirmation_fate_t fate) noexcept;

// request_id.cpp: the request's $request_id (drawn from a per-worker buffer
// unless the request already has one); null when out of memory.
ngx_http_variable_value_t *ngx_http_resend_confirmation_request_id(ngx_http_request_t *r) noexcept;
