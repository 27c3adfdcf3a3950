// The spool: records kept on local disk while Redis cannot take them, and
// their replay.
#pragma once

#include "ngx_http_resend_confirmation.h"

#include <span>
#include <string_view>

// spool_directive.cpp
char *ngx_http_resend_confirmation_spool_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
// spool_writer.cpp
// Appends the request's record (ctx->fields) to this worker's segment:
// NGX_OK kept (answer now), NGX_AGAIN kept once an fsync ends (fsync=always:
// the request is answered by the spool), NGX_BUSY written but its fsync
// cannot be waited for (fsync=always, out of memory or descriptors: it may
// still be replayed), NGX_DECLINED not kept (full, or the disk failed).
ngx_int_t ngx_http_resend_confirmation_spool_append(ngx_http_request_t *r,
                                                   ngx_http_resend_confirmation_ctx_t *ctx) noexcept;
// spool_directive.cpp
ngx_int_t ngx_http_resend_confirmation_spool_worker_start(ngx_cycle_t *cycle) noexcept;
void ngx_http_resend_confirmation_spool_worker_exit() noexcept;
// The spool's gauges and counters for the metrics (all 0 without a spool).
struct ngx_http_resend_confirmation_spool_stats_t {
    uint64_t bytes, records, oldest_ms, replayed, corrupt;
    bool configured;
};
ngx_http_resend_confirmation_spool_stats_t
ngx_http_resend_confirmation_spool_stats(ngx_http_resend_confirmation_main_conf_t *mcf) noexcept;
