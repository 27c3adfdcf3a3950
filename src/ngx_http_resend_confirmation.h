// Shared declarations of the nginx glue: configuration, the per-request
// context, and the functions one glue file offers the others.
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
}

#include <span>
#include <string_view>

#include "core/keyed_hash.hpp"
#include "core/leaky_bucket.hpp"
#include "core/outcome.hpp"
#include "core/request.hpp"

extern "C" {
extern ngx_module_t ngx_http_resend_confirmation_module;
}

// The TLS parameters of a `resend_confirmation_redis` (redis_tls.cpp).
struct ngx_http_resend_confirmation_tls_conf_s;
typedef struct ngx_http_resend_confirmation_tls_conf_s ngx_http_resend_confirmation_tls_conf_t;

// One `resend_confirmation_redis` directive: where and how to connect.
// Each gets its own connection in every worker.
struct ngx_http_resend_confirmation_redis_conf_t {
    ngx_addr_t addr;  // addr.name is the address as configured, for logs
    ngx_str_t db_text;  // SELECT argument; empty for db 0
    ngx_str_t user;     // ACL user for AUTH; empty: AUTH with the password alone
    ngx_str_t password; // empty: no AUTH
    ngx_msec_t connect_timeout;
    ngx_msec_t timeout;  // the longest wait for one command's reply
    ngx_uint_t index;    // in the worker's links
    ngx_str_t host;      // a name to re-resolve on reconnect; empty for an IP address or unix:
    in_port_t port;      // with `host`
    ngx_http_core_loc_conf_t *core;  // where the directive is: its `resolver`
    ngx_http_resend_confirmation_tls_conf_t *tls;  // null: plain TCP
};

// `resend_confirmation_field NAME VALUE;`: one extra field of the record.
struct ngx_http_resend_confirmation_field_t {
    ngx_str_t name;
    ngx_http_complex_value_t value;
};

enum class redis_failure_policy : ngx_uint_t { reject = 0, accept = 1 };

struct ngx_http_resend_confirmation_main_conf_t {
    size_t largest_body;  // the largest max_body_size of any location: sizes the parser
    ngx_array_t redis;    // of ngx_http_resend_confirmation_redis_conf_t *
    ngx_int_t request_id_index;  // $request_id
    ngx_str_t limit_secret;      // resend_confirmation_limit_secret's file content; empty: random
};

// `resend_confirmation_limit zone=NAME [burst=N] [silent];`
struct ngx_http_resend_confirmation_limit_t {
    ngx_shm_zone_t *shm_zone;
    ngx_uint_t burst;
    ngx_flag_t silent;
};

struct ngx_http_resend_confirmation_loc_conf_t {
    ngx_flag_t enabled;    // `resend_confirmation;` in this location
    u_char *enabled_file;  // where, for errors found when merging
    ngx_uint_t enabled_line;
    size_t max_body_size;  // resend_confirmation_max_body_size
    ngx_http_resend_confirmation_redis_conf_t *redis;
    ngx_str_t stream;        // stream key
    ngx_str_t maxlen_text;   // MAXLEN ~ argument
    ngx_array_t *fields;     // of ngx_http_resend_confirmation_field_t
    ngx_uint_t redis_failure;  // redis_failure_policy
    ngx_array_t *limits;       // of ngx_http_resend_confirmation_limit_t
    ngx_flag_t limit_dry_run;
    ngx_uint_t limit_status;     // status of refusals, 429 by default
    ngx_uint_t limit_log_level;  // level of the refusal log line
};

// A limit that counted this request, to give back if it is refused later.
struct ngx_http_resend_confirmation_charge_t {
    ngx_shm_zone_t *shm_zone;
    uint32_t hash;
    u_char key_len;
    u_char key[resend::keyed_hash_size];
};

enum class limit_phase : unsigned char { client, email };

// What the limits of one phase say about a request.
struct limit_verdict {
    enum { passed, refused, silenced } result;
    ngx_uint_t retry_after;  // seconds, for refused
};

struct ngx_http_resend_confirmation_pending_s;
typedef struct ngx_http_resend_confirmation_pending_s ngx_http_resend_confirmation_pending_t;
struct ngx_http_resend_confirmation_link_s;
typedef struct ngx_http_resend_confirmation_link_s ngx_http_resend_confirmation_link_t;

struct ngx_http_resend_confirmation_ctx_t {
    resend::outcome outcome;  // how the request ended ($resend_confirmation_outcome)
    off_t body_received;      // decoded body bytes seen by the request body filter
    ngx_str_t email;          // as sent, copied into the request pool
    ngx_http_resend_confirmation_pending_t *pending;  // XADD in flight, if any
    ngx_http_resend_confirmation_charge_t *charges;  // email limits that counted it
    ngx_uint_t ncharges;
    ngx_uint_t retry_after;   // Retry-After seconds of a 429; 0: none
    ngx_uint_t status;        // overrides the outcome's status (resend_confirmation_limit_status)
    unsigned dry_run_limited:1;  // a limit would have refused it, but dry run is on
    unsigned silenced:1;         // a silent client limit: a valid body gets the silent 200
    resend::outcome refusal;  // the answer decided before the body, while draining
    unsigned draining:1;      // refused already: read the body only to drop it
    unsigned reading_client_keys:1;  // the client limits' keys are being evaluated
    unsigned email_read_early:1;     // ... and one asked for $resend_confirmation_email
    unsigned replied:1;       // our own reply was sent: the filters let it pass
    unsigned substitute:1;    // nginx is sending its own error page: replace it
};

// Directive parsing helpers shared by the directive handlers.
inline char *ngx_http_resend_confirmation_conf_error() noexcept {
    return static_cast<char *>(NGX_CONF_ERROR);
}
inline char *ngx_http_resend_confirmation_invalid_parameter(ngx_conf_t *cf, ngx_str_t *value) noexcept {
    ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid parameter \"%V\"", value);
    return ngx_http_resend_confirmation_conf_error();
}
// True when `s` begins with `prefix`; `rest` is what follows it.
inline bool ngx_http_resend_confirmation_has_prefix(const ngx_str_t &s, const char *prefix,
                                                   ngx_str_t *rest) noexcept {
    size_t n = ngx_strlen(prefix);
    if (s.len < n || ngx_strncmp(s.data, prefix, n) != 0) return false;
    rest->data = s.data + n;
    rest->len = s.len - n;
    return true;
}

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

// limit.cpp: rate limits in shared memory.
char *ngx_http_resend_confirmation_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *ngx_http_resend_confirmation_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *ngx_http_resend_confirmation_limit_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
// Applies the location's limits of `phase`; counts the request where it passes.
limit_verdict ngx_http_resend_confirmation_limit_check(ngx_http_request_t *r,
                                                       ngx_http_resend_confirmation_ctx_t *ctx,
                                                       limit_phase phase) noexcept;
// Gives back what the email limits took (the request was refused after all).
void ngx_http_resend_confirmation_limit_refund(ngx_http_resend_confirmation_ctx_t *ctx) noexcept;

// record.cpp: the request's record in Redis.
// Sends XADD; false when the link cannot take it (answer through the policy now).
bool ngx_http_resend_confirmation_record(ngx_http_request_t *r,
                                         ngx_http_resend_confirmation_ctx_t *ctx) noexcept;
// Called by the link with the result; answers and finalizes the request.
void ngx_http_resend_confirmation_recorded(ngx_http_request_t *r, bool stored) noexcept;
// Answers a request whose record failed, per resend_confirmation_redis_failure.
ngx_int_t ngx_http_resend_confirmation_reply_unrecorded(ngx_http_request_t *r,
                                                        ngx_http_resend_confirmation_ctx_t *ctx) noexcept;

// redis.cpp: the per-worker link to one Redis.
ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_link_create(ngx_http_resend_confirmation_redis_conf_t *conf,
                                         ngx_cycle_t *cycle) noexcept;
void ngx_http_resend_confirmation_link_destroy(ngx_http_resend_confirmation_link_t *link) noexcept;
// Queues a command for `r`; null when the link is down (the caller answers).
ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_send(ngx_http_resend_confirmation_link_t *link,
                                       ngx_http_request_t *r,
                                       std::span<const std::string_view> args) noexcept;
// The request went away: its reply, when it comes, is dropped.
void ngx_http_resend_confirmation_link_detach(ngx_http_resend_confirmation_pending_t *entry) noexcept;

// Called by redis_tls.cpp when the TLS handshake of the link's connection
// `c` is over: `failure` is null when it succeeded (and was verified).
void ngx_http_resend_confirmation_link_secured(ngx_connection_t *c, const char *failure) noexcept;

// redis_tls.cpp: TLS to Redis.
// A `tls` or `tls_*=` parameter of resend_confirmation_redis: NGX_OK taken,
// NGX_ERROR invalid, NGX_DECLINED not one of them.
ngx_int_t ngx_http_resend_confirmation_tls_parameter(ngx_conf_t *cf,
                                                     ngx_http_resend_confirmation_redis_conf_t *redis,
                                                     ngx_str_t *value) noexcept;
// After the parameters: checks them and creates the TLS context (nginx -t errors).
char *ngx_http_resend_confirmation_tls_configure(ngx_conf_t *cf,
                                                 ngx_http_resend_confirmation_redis_conf_t *redis,
                                                 ngx_url_t *url) noexcept;
// Starts the TLS handshake on the link's connected `c`, within `timeout`;
// ends in ngx_http_resend_confirmation_link_secured().
void ngx_http_resend_confirmation_tls_handshake(ngx_connection_t *c,
                                                ngx_http_resend_confirmation_redis_conf_t *redis,
                                                ngx_msec_t timeout) noexcept;
// Ends TLS on `c` (no close_notify wait) before it is closed.
void ngx_http_resend_confirmation_tls_shutdown(ngx_connection_t *c) noexcept;
// The first bytes a link read, or its end before any (n <= 0, also a failed
// write): logs a hint when a plain link seems to talk to a TLS server, or a
// TLS link without a client certificate to one that requires it.
void ngx_http_resend_confirmation_tls_hint(ngx_log_t *log, ngx_http_resend_confirmation_redis_conf_t *redis,
                                           const u_char *data, ssize_t n) noexcept;

// ngx_http_resend_confirmation_module.cpp: this worker's parser and links.
resend::body_parser *ngx_http_resend_confirmation_parser() noexcept;
ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_worker_link(ngx_http_resend_confirmation_redis_conf_t *conf) noexcept;
