// Rate limits: zones in shared memory (limit.cpp), their directives
// (limit_directives.cpp) and limits kept in Redis, checked by the script
// that records (shared_limit.cpp).
#pragma once

#include "ngx_http_resend_confirmation.h"

#include <span>
#include <string_view>

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
    ngx_int_t email_index;  // $resend_confirmation_email
    ngx_http_core_main_conf_t *cmcf;  // nginx's variables, for watch_email
    resend::rate rate;
    ngx_http_resend_confirmation_main_conf_t *mcf;  // for the secret
    resend::keyed_hash hash;  // keyed with the configured or the zone's secret, at zone init
};

// limit_directives.cpp: the rate-limit directives.
char *ngx_http_resend_confirmation_limit_zone(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *ngx_http_resend_confirmation_limit(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *ngx_http_resend_confirmation_limit_secret(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
// rate=RATE and burst=N of a limit directive's `param` (`arg`: its value):
// the rate, or none with the error logged; the burst, or NGX_ERROR above `max`.
std::optional<resend::rate> ngx_http_resend_confirmation_rate_param(ngx_conf_t *cf, ngx_str_t *param,
                                                                    ngx_str_t arg) noexcept;
ngx_int_t ngx_http_resend_confirmation_burst_param(ngx_str_t arg, ngx_uint_t max) noexcept;

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

static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_zone_t>);
