// Limits kept in Redis, fleet-wide (resend_confirmation_shared_limit): every
// node that shares the Redis and the secret counts into the same buckets.
// The check and the record are one script (core/shared_limit.hpp) run with
// EVALSHA in place of the record's XADD, so a silenced request waits for the
// same round trip as an accepted one. This file has the directives
// (resend_confirmation_shared_limit, resend_confirmation_client_prefix),
// their inheritance and checks, the script's arguments for a request, and
// what its reply means: recorded, silenced, dry run, or NOSCRIPT (the
// script is sent once more in full with EVAL, which also loads it).

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"
#include "limit/ngx_http_resend_confirmation_limit.h"
#include "metrics/ngx_http_resend_confirmation_metrics.h"
#include "redis/ngx_http_resend_confirmation_redis.h"

#include "core/shared_limit.hpp"

#include <optional>

struct ngx_http_resend_confirmation_shared_call_s {
    std::span<std::string_view> command;  // EVALSHA <sha1> ...; EVAL <script> ... on the retry
    ngx_uint_t *sent;   // the location's index of each limit sent (empty keys are not)
    ngx_uint_t nsent;
    std::string_view *limits;  // nsent x (key, per, period, burst): what the spool keeps
    std::string_view dry_run;
    bool retried;
};

namespace {

// The script's SHA1, computed when first needed.
char script_sha1[resend::sha1_hex_size];
bool script_sha1_ready;

// Copies `text` into the pool as an ngx_str_t; len 0 when out of memory.
ngx_str_t pool_text(ngx_pool_t *pool, const u_char *text, size_t len) noexcept {
    ngx_str_t out = {0, static_cast<u_char *>(ngx_pnalloc(pool, len))};
    if (out.data != nullptr) {
        ngx_memcpy(out.data, text, len);
        out.len = len;
    }
    return out;
}

ngx_str_t pool_number(ngx_pool_t *pool, uint64_t n) noexcept {
    u_char text[NGX_INT64_LEN];
    return pool_text(pool, text, ngx_sprintf(text, "%uL", n) - text);
}

const ngx_http_resend_confirmation_client_prefix_t client_prefix_default = {32, 64};

}  // namespace

// resend_confirmation_shared_limit KEY rate=RATE [burst=N];
char *ngx_http_resend_confirmation_shared_limit(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);

    if (lcf->shared_limits == nullptr) {
        lcf->shared_limits = ngx_array_create(cf->pool, 2, sizeof(ngx_http_resend_confirmation_shared_limit_t));
        if (lcf->shared_limits == nullptr) return ngx_http_resend_confirmation_conf_error();
    }
    auto *limit = static_cast<ngx_http_resend_confirmation_shared_limit_t *>(ngx_array_push(lcf->shared_limits));
    if (limit == nullptr) return ngx_http_resend_confirmation_conf_error();
    ngx_memzero(limit, sizeof(ngx_http_resend_confirmation_shared_limit_t));
    limit->file = cf->conf_file->file.name.data;
    limit->line = cf->conf_file->line;
    limit->key_text = value[1];
    if (!ngx_http_resend_confirmation_compile(cf, &value[1], &limit->key)) {
        return ngx_http_resend_confirmation_conf_error();
    }

    std::optional<resend::rate> rate;
    ngx_int_t burst = 0;
    for (ngx_uint_t i = 2; i < cf->args->nelts; ++i) {
        ngx_str_t arg;
        if (ngx_http_resend_confirmation_has_prefix(value[i], "rate=", &arg)) {
            rate = ngx_http_resend_confirmation_rate_param(cf, &value[i], arg);
            if (!rate) return ngx_http_resend_confirmation_conf_error();
            limit->rate_text = arg;
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "burst=", &arg)) {
            burst = ngx_http_resend_confirmation_burst_param(arg, resend::shared_limit_max_burst);
            if (burst == NGX_ERROR) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid burst \"%V\": 0 to %uL", &value[i],
                                   resend::shared_limit_max_burst);
                return ngx_http_resend_confirmation_conf_error();
            }
        } else {
            return ngx_http_resend_confirmation_invalid_parameter(cf, &value[i]);
        }
    }
    if (!rate) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" needs \"rate=\"", &value[0]);
        return ngx_http_resend_confirmation_conf_error();
    }

    // Two limits on the same key with other rates are other buckets: the
    // key's text and the rate go into the hash in front of its value. The
    // rate as parsed, in its one spelling: "03r/h" shares the buckets of
    // "3r/h", whose identity (as every rate written without leading zeros)
    // is the text it always had.
    char rate_buffer[resend::rate_text_size];
    std::string_view rate_text = resend::format_rate(*rate, rate_buffer);
    size_t identity_len = limit->key_text.len + 1 + rate_text.size() + 1;
    limit->identity.data = static_cast<u_char *>(ngx_pnalloc(cf->pool, identity_len));
    if (limit->identity.data == nullptr) return ngx_http_resend_confirmation_conf_error();
    u_char *p = ngx_cpymem(limit->identity.data, limit->key_text.data, limit->key_text.len);
    *p++ = '\0';
    p = ngx_cpymem(p, rate_text.data(), rate_text.size());
    *p++ = '\0';
    limit->identity.len = identity_len;

    limit->per_text = pool_number(cf->pool, rate->requests * 1000);
    limit->period_text = pool_number(cf->pool, rate->period_ms);
    limit->burst_text = pool_number(cf->pool, static_cast<uint64_t>(burst) * 1000);
    if (limit->per_text.len == 0 || limit->period_text.len == 0 || limit->burst_text.len == 0) {
        return ngx_http_resend_confirmation_conf_error();
    }
    return NGX_CONF_OK;
}

// resend_confirmation_client_prefix [ipv4=N] [ipv6=N];
char *ngx_http_resend_confirmation_client_prefix(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    if (lcf->client_prefix != nullptr) return const_cast<char *>("is duplicate");
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    auto *prefix = static_cast<ngx_http_resend_confirmation_client_prefix_t *>(
        ngx_palloc(cf->pool, sizeof(ngx_http_resend_confirmation_client_prefix_t)));
    if (prefix == nullptr) return ngx_http_resend_confirmation_conf_error();
    *prefix = client_prefix_default;
    for (ngx_uint_t i = 1; i < cf->args->nelts; ++i) {
        ngx_str_t arg;
        ngx_int_t bits = NGX_ERROR;
        if (ngx_http_resend_confirmation_has_prefix(value[i], "ipv4=", &arg)) {
            bits = ngx_atoi(arg.data, arg.len);
            if (bits != NGX_ERROR && bits >= 1 && bits <= 32) {
                prefix->ipv4 = static_cast<ngx_uint_t>(bits);
                continue;
            }
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "ipv6=", &arg)) {
            bits = ngx_atoi(arg.data, arg.len);
            if (bits != NGX_ERROR && bits >= 1 && bits <= 128) {
                prefix->ipv6 = static_cast<ngx_uint_t>(bits);
                continue;
            }
        }
        return ngx_http_resend_confirmation_invalid_parameter(cf, &value[i]);
    }
    lcf->client_prefix = prefix;
    return NGX_CONF_OK;
}

char *ngx_http_resend_confirmation_shared_limit_merge(ngx_conf_t *cf,
                                                      ngx_http_resend_confirmation_loc_conf_t *parent,
                                                      ngx_http_resend_confirmation_loc_conf_t *conf) noexcept {
    // A level that sets any replaces the inherited list.
    if (conf->shared_limits == nullptr) conf->shared_limits = parent->shared_limits;
    if (conf->client_prefix == nullptr) {
        conf->client_prefix = parent->client_prefix != nullptr ? parent->client_prefix : &client_prefix_default;
    }
    if (conf->shared_limits == nullptr) return NGX_CONF_OK;

    auto *limits = static_cast<ngx_http_resend_confirmation_shared_limit_t *>(conf->shared_limits->elts);
    auto *mcf = ngx_http_resend_confirmation_conf_main_conf(cf);
    if (mcf->limit_secret.len == 0) {
        // A random key per node would make every node's keys its own.
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"resend_confirmation_shared_limit\" needs \"resend_confirmation_limit_secret FILE\" "
                      "(the same secret on every node that shares the Redis) in %s:%ui",
                      limits[0].file, limits[0].line);
        return ngx_http_resend_confirmation_conf_error();
    }
    for (ngx_uint_t i = 0; i < conf->shared_limits->nelts; ++i) {
        if (limits[i].keyed) continue;
        limits[i].hash.set_secret(ngx_http_resend_confirmation_view(mcf->limit_secret));
        limits[i].keyed = true;
    }
    if (conf->enabled && conf->redis != nullptr) {
        std::string_view script = resend::shared_limit_script();
        conf->redis->script.data = reinterpret_cast<u_char *>(const_cast<char *>(script.data()));
        conf->redis->script.len = script.size();
    }
    return NGX_CONF_OK;
}

namespace {

void shared_limit_replied(ngx_http_resend_confirmation_link_t *link,
                          void *data, const resend::redis_reply *reply,
                          ngx_http_resend_confirmation_fate_t fate) noexcept;

}  // namespace

size_t ngx_http_resend_confirmation_shared_limit_args(std::string_view stream, std::string_view maxlen,
                                                      std::string_view dry_run,
                                                      std::span<const std::string_view> limits,
                                                      std::span<const std::string_view> fields, bool full,
                                                      u_char *scratch, std::string_view *args) noexcept {
    if (!script_sha1_ready) {  // once per process (the script is a constant)
        resend::shared_limit_script_sha1(script_sha1);
        script_sha1_ready = true;
    }
    size_t nlimits = limits.size() / 4;
    size_t n = 0;
    args[n++] = full ? "EVAL" : "EVALSHA";
    args[n++] = full ? resend::shared_limit_script() : std::string_view(script_sha1, sizeof(script_sha1));
    u_char *numkeys = scratch;
    args[n++] = {reinterpret_cast<const char *>(numkeys),
                 static_cast<size_t>(ngx_sprintf(numkeys, "%uz", nlimits + 2) - numkeys)};
    args[n++] = stream;
    for (size_t k = 0; k < nlimits; ++k) args[n++] = limits[4 * k];
    auto *silence_key = reinterpret_cast<char *>(scratch + NGX_INT_T_LEN);
    args[n++] = {silence_key,
                 static_cast<size_t>(resend::shared_limit_silence_key_write(silence_key, stream) - silence_key)};
    args[n++] = maxlen;
    args[n++] = dry_run;
    for (size_t k = 0; k < nlimits; ++k) {
        args[n++] = limits[4 * k + 1];
        args[n++] = limits[4 * k + 2];
        args[n++] = limits[4 * k + 3];
    }
    for (std::string_view field : fields) args[n++] = field;
    return n;
}

size_t ngx_http_resend_confirmation_shared_limit_scratch_size(std::string_view stream) noexcept {
    return NGX_INT_T_LEN + resend::shared_limit_silence_key_size(stream);
}

bool ngx_http_resend_confirmation_shared_limit_sent(ngx_http_resend_confirmation_ctx_t *ctx,
                                                    std::span<const std::string_view> *limits,
                                                    std::string_view *dry_run) noexcept {
    auto *call = ctx->shared_call;
    if (call == nullptr) return false;
    *limits = {call->limits, 4 * call->nsent};
    *dry_run = call->dry_run;
    return true;
}

// EVALSHA <sha1> <2 + n> <stream> <keys>... <silence key> <maxlen> <dry run> [<per> <period> <burst>]...
//         <fields>...
// from XADD <stream> MAXLEN ~ <maxlen> * <fields>...
bool ngx_http_resend_confirmation_shared_limit_command(ngx_http_request_t *r,
                                                       ngx_http_resend_confirmation_ctx_t *ctx,
                                                       std::span<const std::string_view> *command,
                                                       ngx_http_resend_confirmation_link_done_pt *done) noexcept {
    auto *lcf = ngx_http_resend_confirmation_loc_conf(r);
    if (lcf->shared_limits == nullptr) return true;
    std::span<const std::string_view> xadd = *command;
    std::string_view stream = xadd[1];
    std::span<const std::string_view> fields = xadd.subspan(6);
    ngx_uint_t nlimits = lcf->shared_limits->nelts;
    auto *limits = static_cast<ngx_http_resend_confirmation_shared_limit_t *>(lcf->shared_limits->elts);

    auto *call = static_cast<ngx_http_resend_confirmation_shared_call_t *>(
        ngx_pcalloc(r->pool, sizeof(ngx_http_resend_confirmation_shared_call_t)));
    size_t argc = ngx_http_resend_confirmation_shared_limit_args_count(nlimits, fields.size());
    auto *args = static_cast<std::string_view *>(ngx_palloc(r->pool, argc * sizeof(std::string_view)));
    size_t key_size = resend::shared_limit_key_size(stream);
    auto *keys = static_cast<char *>(ngx_pnalloc(r->pool, nlimits * key_size));
    auto *scratch = static_cast<u_char *>(
        ngx_pnalloc(r->pool, ngx_http_resend_confirmation_shared_limit_scratch_size(stream)));
    if (call == nullptr || args == nullptr || keys == nullptr || scratch == nullptr) return false;
    call->sent = static_cast<ngx_uint_t *>(ngx_palloc(r->pool, nlimits * sizeof(ngx_uint_t)));
    call->limits = static_cast<std::string_view *>(ngx_palloc(r->pool, 4 * nlimits * sizeof(std::string_view)));
    if (call->sent == nullptr || call->limits == nullptr) return false;

    // An empty key is not counted (as in the zones).
    for (ngx_uint_t i = 0; i < nlimits; ++i) {
        ngx_str_t value;
        if (ngx_http_complex_value(r, &limits[i].key, &value) != NGX_OK) return false;
        if (value.len == 0) continue;
        auto *message = static_cast<u_char *>(ngx_pnalloc(r->pool, limits[i].identity.len + value.len));
        if (message == nullptr) return false;
        ngx_memcpy(ngx_cpymem(message, limits[i].identity.data, limits[i].identity.len), value.data,
                   value.len);
        resend::keyed_digest digest = limits[i].hash.digest(
            {reinterpret_cast<const char *>(message), limits[i].identity.len + value.len});
        char *key = keys + call->nsent * key_size;
        resend::shared_limit_key_write(key, stream, digest);
        std::string_view *limit = call->limits + 4 * call->nsent;
        limit[0] = {key, key_size};
        limit[1] = ngx_http_resend_confirmation_view(limits[i].per_text);
        limit[2] = ngx_http_resend_confirmation_view(limits[i].period_text);
        limit[3] = ngx_http_resend_confirmation_view(limits[i].burst_text);
        call->sent[call->nsent++] = i;
    }
    // 2: a local zone silenced it; the script silences it the same way.
    call->dry_run = ctx->silenced ? "2" : lcf->limit_dry_run ? "1" : "0";
    size_t n = ngx_http_resend_confirmation_shared_limit_args(stream, xadd[4], call->dry_run,
                                                              {call->limits, 4 * call->nsent}, fields, false,
                                                              scratch, args);
    call->command = {args, n};
    ctx->shared_call = call;
    *command = call->command;
    *done = shared_limit_replied;
    return true;
}

namespace {

// The log line of a request a shared limit silenced (or would have, in dry
// run): as the zones', at resend_confirmation_limit_log_level, with no address.
void shared_limit_log(ngx_http_request_t *r, ngx_uint_t index) noexcept {
    auto *lcf = ngx_http_resend_confirmation_loc_conf(r);
    auto *limit = static_cast<ngx_http_resend_confirmation_shared_limit_t *>(lcf->shared_limits->elts) + index;
    ngx_log_error(lcf->limit_log_level, r->connection->log, 0,
                  "resend_confirmation: %ssilencing requests by shared limit \"%V\" rate=%V",
                  lcf->limit_dry_run ? "dry run, " : "", &limit->key_text, &limit->rate_text);
}

// The script ran and said: recorded, silenced or (dry run) limited.
void shared_limit_ran(ngx_http_request_t *r, ngx_http_resend_confirmation_ctx_t *ctx,
                      const resend::shared_limit_answer &answer) noexcept {
    ngx_http_resend_confirmation_metrics_shared_limit(answer.result);
    if (answer.result != resend::shared_limit_answer::recorded) {
        shared_limit_log(r, ctx->shared_call->sent[answer.limit]);
        if (answer.result == resend::shared_limit_answer::silenced) {
            ctx->silenced = 1;
        } else {
            ctx->dry_run_limited = 1;
        }
    }
    ngx_http_resend_confirmation_recorded(r, ngx_http_resend_confirmation_fate_t::stored);
}

// NOSCRIPT: this Redis does not have the script (restarted, SCRIPT FLUSH,
// a failover): once more with the script itself, which EVAL also caches
// for the EVALSHAs that follow, within the request's one timeout counted
// from the first. NOSCRIPT after EVAL: this Redis cannot run the script.
void shared_limit_no_script(ngx_http_request_t *r, ngx_http_resend_confirmation_ctx_t *ctx) noexcept {
    auto *call = ctx->shared_call;
    if (call->retried) {
        ngx_http_resend_confirmation_recorded(r, ngx_http_resend_confirmation_fate_t::refused);
        return;
    }
    call->retried = true;
    call->command[0] = "EVAL";
    call->command[1] = resend::shared_limit_script();
    auto *lcf = ngx_http_resend_confirmation_loc_conf(r);
    if (ngx_current_msec - ctx->redis_sent < lcf->redis->timeout &&
        ngx_http_resend_confirmation_link_send(ngx_http_resend_confirmation_worker_link(lcf->redis), r,
                                               call->command, shared_limit_replied, &ctx->pending,
                                               ctx->redis_sent) != nullptr) {
        return;
    }
    // Not sent (the timeout has passed, the link is down): NOSCRIPT ran
    // nothing, the spool may keep it.
    ngx_http_resend_confirmation_recorded(r, ngx_http_resend_confirmation_fate_t::unsent);
}

// An answer not understood. An error reply ran nothing that stays (the
// script writes the stream before the buckets, and nothing after an
// error); any other answer came from a script that ran: it may have
// recorded. A refusal Redis may not give later (OOM, LOADING...) is busy:
// the spool keeps that record.
void shared_limit_not_understood(ngx_http_request_t *r, const resend::redis_reply &reply) noexcept {
    if (reply.kind != resend::reply_kind::error) {  // an error reply is logged by the link
        ngx_log_error(NGX_LOG_ERR, r->connection->log, 0,
                      "resend_confirmation: unexpected answer from the shared-limit script");
    }
    ngx_http_resend_confirmation_recorded(
        r, reply.kind != resend::reply_kind::error        ? ngx_http_resend_confirmation_fate_t::unknown
           : resend::redis_cannot_write_now(reply.error) ? ngx_http_resend_confirmation_fate_t::busy
                                                         : ngx_http_resend_confirmation_fate_t::refused);
}

// The script's way back from the link: its answer read from the reply;
// without a reply (the link failed first), the link's fate.
void shared_limit_replied(ngx_http_resend_confirmation_link_t *, void *data, const resend::redis_reply *replied,
                          ngx_http_resend_confirmation_fate_t fate) noexcept {
    auto *r = static_cast<ngx_http_request_t *>(data);
    if (replied == nullptr) {
        ngx_http_resend_confirmation_recorded(r, fate);
        return;
    }
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    resend::shared_limit_answer answer = resend::shared_limit_read_answer(*replied, ctx->shared_call->nsent);
    switch (answer.result) {
    case resend::shared_limit_answer::recorded:
    case resend::shared_limit_answer::silenced:
    case resend::shared_limit_answer::dry_run_limited:
        shared_limit_ran(r, ctx, answer);
        return;
    case resend::shared_limit_answer::no_script:
        shared_limit_no_script(r, ctx);
        return;
    case resend::shared_limit_answer::silenced_before:
        if (ctx->silenced) {  // as asked: a local zone's silence, the script's way
            ngx_http_resend_confirmation_recorded(r, ngx_http_resend_confirmation_fate_t::stored);
            return;
        }
        [[fallthrough]];  // not asked for: as any answer not understood
    case resend::shared_limit_answer::failed:
        shared_limit_not_understood(r, *replied);
        return;
    }
}

}  // namespace
