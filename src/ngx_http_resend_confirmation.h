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

// `resend_confirmation_spool PATH ...;` (spool.cpp).
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
    ngx_str_t identity;  // "KEY\0RATE\0" as configured: hashed in front of the key's value
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

// When a zone is checked: client zones before the body is read, email
// zones after it is validated.
enum class ngx_http_resend_confirmation_limit_phase_t : unsigned char { client, email };

// What the limits of one phase say about a request.
struct ngx_http_resend_confirmation_limit_verdict_t {
    enum { passed, refused, silenced } result;
    ngx_uint_t retry_after;  // seconds, for refused
};

struct ngx_http_resend_confirmation_limit_shctx_s;
typedef struct ngx_http_resend_confirmation_limit_shctx_s ngx_http_resend_confirmation_limit_shctx_t;

// `resend_confirmation_limit_zone`: a zone as configured (shm_zone->data),
// one per configuration cycle, in the cycle's pool.
struct ngx_http_resend_confirmation_zone_t {
    ngx_http_resend_confirmation_limit_shctx_t *sh;
    ngx_slab_pool_t *shpool;
    ngx_str_t name;
    ngx_http_complex_value_t key;
    // Decided at configuration: email when the compiled key reads
    // $resend_confirmation_email or the zone says after_validation.
    ngx_http_resend_confirmation_limit_phase_t phase;
    // A client key that reads a variable of map, set or the like (changeable
    // ones) may reach $resend_confirmation_email through it: decided when
    // the zone is set up, once nginx knows every variable.
    bool watch_email;
    bool warned;  // the key was found reading the email too early (logged once)
    ngx_int_t email_index;  // $resend_confirmation_email
    ngx_http_core_main_conf_t *cmcf;  // nginx's variables, for watch_email
    resend::rate rate;
    ngx_http_resend_confirmation_main_conf_t *mcf;  // for the secret
    resend::keyed_hash hash;  // keyed with the configured or the zone's secret, at zone init
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
    ngx_uint_t status;        // overrides the outcome's status (resend_confirmation_limit_status)
    ngx_msec_t redis_sent;    // when the record was handed to the link
    ngx_msec_t redis_time;    // how long Redis took to answer ($resend_confirmation_redis_time)
    unsigned redis_answered:1;  // redis_time is set
    ngx_http_resend_confirmation_shared_call_t *shared_call;  // shared limits sent, if any
    std::string_view silence_key;  // silenced by a zone: the stream its command (and spool entry) writes
};

// The ways a request is found too large; what follows is
// ngx_http_resend_confirmation_too_large()'s (handler.cpp).
enum class ngx_http_resend_confirmation_too_large_t : unsigned char {
    declared,  // its Content-Length, before anything is read
    counted,   // the body filter, while reading
    by_nginx,  // nginx is sending its own 413 for it (after `counted`, or client_max_body_size)
};

// Everything that lives in an nginx pool or shared zone is never destroyed,
// only freed with its memory: it must not need a destructor.
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_field_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_main_conf_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_limit_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_loc_conf_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_charge_t>);
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_zone_t>);
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
// True when `s` is exactly `word`.
inline bool ngx_http_resend_confirmation_is(const ngx_str_t &s, const char *word) noexcept {
    size_t n = ngx_strlen(word);
    return s.len == n && ngx_strncmp(s.data, word, n) == 0;
}

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

// limit_directives.cpp: the rate-limit directives.
char *ngx_http_resend_confirmation_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *ngx_http_resend_confirmation_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *ngx_http_resend_confirmation_limit_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;

// limit.cpp: rate limits in shared memory.
// shm_zone->init of a zone: sets up its shared memory, or takes over the
// running one's (refusing a changed key or size).
ngx_int_t ngx_http_resend_confirmation_limit_init_zone(ngx_shm_zone_t *shm_zone, void *data) noexcept;
// Applies the location's limits of `phase`; counts the request where it passes.
ngx_http_resend_confirmation_limit_verdict_t
ngx_http_resend_confirmation_limit_check(ngx_http_request_t *r,
                                         ngx_http_resend_confirmation_ctx_t *ctx,
                                         ngx_http_resend_confirmation_limit_phase_t phase) noexcept;
// A zone's numbers for the metrics; false when shm_zone is not a limit zone.
struct ngx_http_resend_confirmation_zone_stats_t {
    uint64_t keys, evictions, refused, silenced;
};
bool ngx_http_resend_confirmation_limit_stats(ngx_shm_zone_t *shm_zone,
                                              ngx_http_resend_confirmation_zone_stats_t *stats) noexcept;
// Gives back what the email limits took (the request was refused after all).
void ngx_http_resend_confirmation_limit_refund(ngx_http_resend_confirmation_ctx_t *ctx) noexcept;

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

// shared_limit.cpp: limits kept in Redis, checked by the record's script.
char *ngx_http_resend_confirmation_shared_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *ngx_http_resend_confirmation_client_prefix(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
// Inheritance, the default prefix, the secret's check and the script for the
// location's Redis; NGX_CONF_OK or an error.
char *ngx_http_resend_confirmation_shared_limit_merge(ngx_conf_t *cf,
                                                      ngx_http_resend_confirmation_loc_conf_t *parent,
                                                      ngx_http_resend_confirmation_loc_conf_t *conf) noexcept;
// The script's command for a record (the spool's replay builds it too):
//   EVALSHA <sha1> <2 + n> <stream> <key>... <silence key> <maxlen> <dry run>
//           [<per> <period> <burst>]... <fields>...
// (EVAL <script> ... when `full`), from `limits`: n x (key, per, period,
// burst). `scratch` holds shared_limit_scratch_size(stream) bytes, for
// the key count and the silence key. Returns the length of `args`.
size_t ngx_http_resend_confirmation_shared_limit_args(std::string_view stream, std::string_view maxlen,
                                                      std::string_view dry_run,
                                                      std::span<const std::string_view> limits,
                                                      std::span<const std::string_view> fields, bool full,
                                                      u_char *scratch, std::string_view *args) noexcept;
size_t ngx_http_resend_confirmation_shared_limit_scratch_size(std::string_view stream) noexcept;
constexpr size_t ngx_http_resend_confirmation_shared_limit_args_count(size_t nlimits, size_t nfields) noexcept {
    return 7 + 4 * nlimits + nfields;
}
// The request's shared limits as the script takes them (4 items each: key,
// per, period, burst) and its dry-run flag, for the spool; false when the
// location has none.
bool ngx_http_resend_confirmation_shared_limit_sent(ngx_http_resend_confirmation_ctx_t *ctx,
                                                    std::span<const std::string_view> *limits,
                                                    std::string_view *dry_run) noexcept;
// Turns the record's XADD into the script's EVALSHA when the location has
// shared limits, and `*done` into the script's reply handler (both
// unchanged otherwise); false when out of memory.
bool ngx_http_resend_confirmation_shared_limit_command(ngx_http_request_t *r,
                                                       ngx_http_resend_confirmation_ctx_t *ctx,
                                                       std::span<const std::string_view> *command,
                                                       ngx_http_resend_confirmation_link_done_pt *done) noexcept;

// request_id.cpp: the request's $request_id (drawn from a per-worker buffer
// unless the request already has one); null when out of memory.
ngx_http_variable_value_t *ngx_http_resend_confirmation_request_id(ngx_http_request_t *r) noexcept;

// spool.cpp: records kept on local disk while Redis cannot take them.
char *ngx_http_resend_confirmation_spool_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
// Appends the request's record (ctx->fields) to this worker's segment:
// NGX_OK kept (answer now), NGX_AGAIN kept once an fsync ends (fsync=always:
// the request is answered by the spool), NGX_BUSY written but its fsync
// cannot be waited for (fsync=always, out of memory or descriptors: it may
// still be replayed), NGX_DECLINED not kept (full, or the disk failed).
ngx_int_t ngx_http_resend_confirmation_spool_append(ngx_http_request_t *r,
                                                   ngx_http_resend_confirmation_ctx_t *ctx) noexcept;
ngx_int_t ngx_http_resend_confirmation_spool_worker_start(ngx_cycle_t *cycle) noexcept;
void ngx_http_resend_confirmation_spool_worker_exit() noexcept;
// The spool's gauges and counters for the metrics (all 0 without a spool).
struct ngx_http_resend_confirmation_spool_stats_t {
    uint64_t bytes, records, oldest_ms, replayed, corrupt;
    bool configured;
};
ngx_http_resend_confirmation_spool_stats_t
ngx_http_resend_confirmation_spool_stats(ngx_http_resend_confirmation_main_conf_t *mcf) noexcept;

// metrics.cpp: counters in shared memory and the Prometheus handler.
char *ngx_http_resend_confirmation_metrics_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
// The counters of a location (is_location) or a Redis address named `name`,
// bound when the configuration's zones are set up; null when out of memory.
ngx_http_resend_confirmation_metrics_ref_t *
ngx_http_resend_confirmation_metrics_ref(ngx_conf_t *cf, const ngx_str_t &name, bool is_location) noexcept;
ngx_int_t ngx_http_resend_confirmation_metrics_init(ngx_conf_t *cf) noexcept;  // the log-phase counter
void ngx_http_resend_confirmation_metrics_worker_start(ngx_cycle_t *cycle) noexcept;
void ngx_http_resend_confirmation_metrics_worker_exit() noexcept;
enum class ngx_http_resend_confirmation_link_event_t : unsigned char {
    connected,       // ready: connected, and AUTH/SELECT accepted
    connect_failed,  // failed before it was ready
    timed_out,       // a command waited past its timeout
    closed,          // a ready connection closed
};
void ngx_http_resend_confirmation_metrics_link(ngx_http_resend_confirmation_metrics_ref_t *ref,
                                               ngx_http_resend_confirmation_link_event_t event) noexcept;
// Commands in flight on one of this worker's links to `ref` went up or
// down by `change` (a cluster's node links add up under one name).
void ngx_http_resend_confirmation_metrics_in_flight(ngx_http_resend_confirmation_metrics_ref_t *ref,
                                                    ngx_int_t change) noexcept;
void ngx_http_resend_confirmation_metrics_reply_time(ngx_http_resend_confirmation_metrics_ref_t *ref,
                                                     ngx_msec_t elapsed) noexcept;
// The shared-limit script's answer (resend::shared_limit_answer's result:
// recorded, silenced or dry_run_limited).
void ngx_http_resend_confirmation_metrics_shared_limit(ngx_uint_t result) noexcept;
void ngx_http_resend_confirmation_metrics_refusal(ngx_http_resend_confirmation_metrics_ref_t *ref,
                                                  std::string_view error) noexcept;

// ngx_http_resend_confirmation_module.cpp: this worker's parser.
resend::body_parser *ngx_http_resend_confirmation_parser() noexcept;
