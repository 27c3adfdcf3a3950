// Shared declarations of the nginx glue: configuration, the per-request
// context, and the functions one glue file offers the others.
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
}

#include "core/outcome.hpp"
#include "core/request.hpp"

extern "C" {
extern ngx_module_t ngx_http_resend_confirmation_module;
}

struct ngx_http_resend_confirmation_main_conf_t {
    size_t largest_body;  // the largest max_body_size of any location: sizes the parser
};

struct ngx_http_resend_confirmation_loc_conf_t {
    ngx_flag_t enabled;    // `resend_confirmation;` in this location
    size_t max_body_size;  // resend_confirmation_max_body_size
};

struct ngx_http_resend_confirmation_ctx_t {
    resend::outcome outcome;  // how the request ended ($resend_confirmation_outcome)
    off_t body_received;      // decoded body bytes seen by the request body filter
    ngx_str_t email;          // as sent, copied into the request pool
    unsigned replied:1;       // our own reply was sent: the filters let it pass
    unsigned substitute:1;    // nginx is sending its own error page: replace it
};

// handler.cpp
ngx_int_t ngx_http_resend_confirmation_handler(ngx_http_request_t *r) noexcept;

// body.cpp
ngx_int_t ngx_http_resend_confirmation_body_filter_init(ngx_conf_t *cf) noexcept;
u_char *ngx_http_resend_confirmation_body_flatten(ngx_http_request_t *r, size_t limit,
                                                  size_t *size, bool *too_large) noexcept;

// reply.cpp
ngx_int_t ngx_http_resend_confirmation_reply(ngx_http_request_t *r,
                                             ngx_http_resend_confirmation_ctx_t *ctx,
                                             resend::outcome result) noexcept;
ngx_int_t ngx_http_resend_confirmation_reply_filters_init(ngx_conf_t *cf) noexcept;

// variables.cpp
ngx_int_t ngx_http_resend_confirmation_add_variables(ngx_conf_t *cf) noexcept;

// ngx_http_resend_confirmation_module.cpp: this worker's parser, sized at start.
resend::body_parser *ngx_http_resend_confirmation_parser() noexcept;
