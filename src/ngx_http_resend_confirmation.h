// Module-wide declarations of the nginx glue: the configuration structs,
// the per-request context and their getters, and the directive parsers'
// helpers. What each subsystem offers the others is in its folder's header
// (http/, limit/, redis/, spool/, metrics/).
#pragma once

extern "C" {
#include <ngx_config.h>
#include <ngx_core.h>
#include <ngx_http.h>
}

#include <span>
#include <string_view>
#include <type_traits>

#include "core/keyed_hash.hpp"
#include "core/leaky_bucket.hpp"
#include "core/outcome.hpp"
#include "core/redis_reply.hpp"
#include "core/request.hpp"

extern "C" {
extern ngx_module_t ngx_http_resend_confirmation_module;
}

struct ngx_http_resend_confirmation_metrics_ref_s;
// A location's or a Redis address's counters in the metrics zone (metrics.cpp).
typedef struct ngx_http_resend_confirmation_metrics_ref_s ngx_http_resend_confirmation_metrics_ref_t;

// One `resend_confirmation_redis` directive (redis/).
struct ngx_http_resend_confirmation_redis_conf_t;

// `resend_confirmation_field NAME VALUE;`: one extra field of the record.
struct ngx_http_resend_confirmation_field_t {
    ngx_str_t name;
    ngx_http_complex_value_t value;
};

enum class ngx_http_resend_confirmation_redis_failure_t : ngx_uint_t { reject = 0, accept = 1, spool = 2 };

// `resend_confirmation_spool PATH ...;` (spool/).
struct ngx_http_resend_confirmation_spool_conf_s;
typedef struct ngx_http_resend_confirmation_spool_conf_s ngx_http_resend_confirmation_spool_conf_t;

struct ngx_http_resend_confirmation_main_conf_t {
    size_t largest_body;  // the largest max_body_size of any location: sizes the parser
    ngx_array_t redis;    // of ngx_http_resend_confirmation_redis_conf_t *
    ngx_int_t request_id_index;  // $request_id
    ngx_str_t limit_secret;      // resend_confirmation_limit_secret's file content; empty: random
    ngx_shm_zone_t *metrics_zone;  // the counters' zone (metrics.cpp)
    void *metrics;                 // ... its shared struct, once the zone is set up
    ngx_array_t metrics_refs;      // of ngx_http_resend_confirmation_metrics_ref_t *, bound then
    ngx_http_resend_confirmation_spool_conf_t *spool;  // null: no resend_confirmation_spool
};

// `resend_confirmation_limit zone=NAME [burst=N] [silent];`
struct ngx_http_resend_confirmation_limit_t {
    ngx_shm_zone_t *shm_zone;
    ngx_uint_t burst;
    ngx_flag_t silent;
};

// `resend_confirmation_shared_limit KEY rate=RATE [burst=N];`: a limit kept
// in Redis, checked by the script that records (shared_limit.cpp).
struct ngx_http_resend_confirmation_shared_limit_t {
    ngx_http_complex_value_t key;
    ngx_str_t identity;  // "KEY\0RATE\0" (KEY as configured, RATE as format_rate spells it): hashed in front of the key's value
    ngx_str_t key_text;  // KEY and RATE as configured, for the log
    ngx_str_t rate_text;
    ngx_str_t per_text, period_text, burst_text;  // the script's arguments for it
    u_char *file;  // where, for errors found when merging
    ngx_uint_t line;
    bool keyed;  // hash has the secret
    resend::keyed_hash hash;
};

// `resend_confirmation_client_prefix ipv4=N ipv6=N;`: bits of the client
// address kept by $resend_confirmation_client_prefix.
struct ngx_http_resend_confirmation_client_prefix_t {
    ngx_uint_t ipv4;
    ngx_uint_t ipv6;
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
    ngx_uint_t redis_failure;  // ngx_http_resend_confirmation_redis_failure_t
    u_char *redis_failure_file;  // where it was set, for nginx -t errors
    ngx_uint_t redis_failure_line;
    ngx_array_t *limits;       // of ngx_http_resend_confirmation_limit_t
    ngx_flag_t limit_dry_run;
    ngx_uint_t limit_status;     // status of refusals, 429 by default
    ngx_uint_t limit_log_level;  // level of the refusal log line
    ngx_str_t metrics_name;      // resend_confirmation_metrics_name; default the location's name
    ngx_http_resend_confirmation_metrics_ref_t *metrics;  // where its outcomes are counted
    ngx_array_t *shared_limits;  // of ngx_http_resend_confirmation_shared_limit_t; null: unset
    const ngx_http_resend_confirmation_client_prefix_t *client_prefix;  // null: unset
};

// A limit that counted this request, to give back if it is refused later.
struct ngx_http_resend_confirmation_charge_t {
    ngx_shm_zone_t *shm_zone;
    uint32_t hash;
    u_char key_len;
    u_char key[resend::keyed_hash_size];
};

struct ngx_http_resend_confirmation_shared_call_s;
// A request's EVALSHA of its shared limits, kept for a NOSCRIPT retry (shared_limit.cpp).
typedef struct ngx_http_resend_confirmation_shared_call_s ngx_http_resend_confirmation_shared_call_t;
// The Redis link and its pending commands (redis/), and a command's fate.
struct ngx_http_resend_confirmation_pending_s;
typedef struct ngx_http_resend_confirmation_pending_s ngx_http_resend_confirmation_pending_t;
struct ngx_http_resend_confirmation_link_s;
typedef struct ngx_http_resend_confirmation_link_s ngx_http_resend_confirmation_link_t;
enum class ngx_http_resend_confirmation_fate_t : unsigned char;
// The one way a command comes back from the link: its reply (null when
// there is none: the link failed first, or it was answered at its
// deadline) and its fate. For a request's command, `data` is the request.
typedef void (*ngx_http_resend_confirmation_link_done_pt)(ngx_http_resend_confirmation_link_t *link, void *data,
                                                          const resend::redis_reply *reply,
                                                          ngx_http_resend_confirmation_fate_t fate) noexcept;

// Where a request is, as far as the body and answer filters need to know.
enum class ngx_http_resend_confirmation_stage_t : unsigned char {
    handling,   // from the handler until the answer: checks, body, limits, record
    draining,   // refused before the body (HTTP/2): the body is read only to be
                // dropped, then `outcome` is answered
    replacing,  // nginx is sending its own 413 page: the filters put ours in its place
    answered,   // our answer is on its way: the filters let it pass
};

struct ngx_http_resend_confirmation_ctx_t {
    resend::outcome outcome;  // the answer, once decided ($resend_confirmation_outcome
                              // unless still draining)
    ngx_http_resend_confirmation_stage_t stage;
    unsigned silenced:1;         // a silent limit: a client or an email zone (sent to Redis
                                 // all the same, as silence_key), or a shared limit (the
                                 // record's reply said so)
    unsigned dry_run_limited:1;  // a limit would have refused it, but dry run is on
    off_t body_received;      // decoded body bytes seen by the request body filter
    ngx_str_t email;          // as sent, copied into the request pool
    ngx_http_resend_confirmation_pending_t *pending;  // XADD in flight, if any
    const std::string_view *fields;  // the record's fields as sent (name, value, ...), once built:
    ngx_uint_t nfields;        // what the spool keeps when Redis cannot take them
    ngx_http_resend_confirmation_charge_t *charges;  // email limits that counted it
    ngx_uint_t ncharges;
    ngx_uint_t retry_after;   // Retry-After seconds of a 429; 0: none
    ngx_msec_t redis_sent;    // when the record was handed to the link
    ngx_msec_t redis_time;    // how long Redis took to answer ($resend_confirmation_redis_time)
    unsigned redis_answered:1;  // redis_time is set
    ngx_http_resend_confirmation_shared_call_t *shared_call;  // shared limits sent, if any
    std::string_view silence_key;  // silenced by a zone: the stream its command (and spool entry) writes
};

// Everything that lives in an nginx pool or shared zone is never destroyed,
// only freed with its memory: it must not need a destructor.
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_field_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_main_conf_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_limit_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_loc_conf_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_charge_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_shared_limit_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_ctx_t>);

// The configuration and context of a request, one getter each.
inline ngx_http_resend_confirmation_loc_conf_t *
ngx_http_resend_confirmation_loc_conf(ngx_http_request_t *r) noexcept {
    return static_cast<ngx_http_resend_confirmation_loc_conf_t *>(
        ngx_http_get_module_loc_conf(r, ngx_http_resend_confirmation_module));
}
inline ngx_http_resend_confirmation_main_conf_t *
ngx_http_resend_confirmation_main_conf(ngx_http_request_t *r) noexcept {
    return static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_get_module_main_conf(r, ngx_http_resend_confirmation_module));
}
// The main configuration while the configuration is read.
inline ngx_http_resend_confirmation_main_conf_t *
ngx_http_resend_confirmation_conf_main_conf(ngx_conf_t *cf) noexcept {
    return static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_resend_confirmation_module));
}
// Null for requests the module has not seen.
inline ngx_http_resend_confirmation_ctx_t *ngx_http_resend_confirmation_get_ctx(ngx_http_request_t *r) noexcept {
    return static_cast<ngx_http_resend_confirmation_ctx_t *>(
        ngx_http_get_module_ctx(r, ngx_http_resend_confirmation_module));
}
// A new, empty context for `r` (stage handling); null when out of memory.
inline ngx_http_resend_confirmation_ctx_t *ngx_http_resend_confirmation_create_ctx(ngx_http_request_t *r) noexcept {
    auto *ctx = static_cast<ngx_http_resend_confirmation_ctx_t *>(
        ngx_pcalloc(r->pool, sizeof(ngx_http_resend_confirmation_ctx_t)));
    if (ctx != nullptr) ngx_http_set_ctx(r, ctx, ngx_http_resend_confirmation_module);
    return ctx;
}

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
// Compiles a directive's value that may hold variables into `cv`.
inline bool ngx_http_resend_confirmation_compile(ngx_conf_t *cf, ngx_str_t *value,
                                                 ngx_http_complex_value_t *cv) noexcept {
    ngx_http_compile_complex_value_t ccv;
    ngx_memzero(&ccv, sizeof(ngx_http_compile_complex_value_t));
    ccv.cf = cf;
    ccv.value = value;
    ccv.complex_value = cv;
    return ngx_http_compile_complex_value(&ccv) == NGX_OK;
}
// The bytes of an nginx string, for the core's functions.
inline std::string_view ngx_http_resend_confirmation_view(const ngx_str_t &s) noexcept {
    return {reinterpret_cast<const char *>(s.data), s.len};
}
// True when `s` is exactly `word`.
inline bool ngx_http_resend_confirmation_is(const ngx_str_t &s, const char *word) noexcept {
    size_t n = ngx_strlen(word);
    return s.len == n && ngx_strncmp(s.data, word, n) == 0;
}

// ngx_http_resend_confirmation_module.cpp: this worker's parser.
resend::body_parser *ngx_http_resend_confirmation_parser() noexcept;
