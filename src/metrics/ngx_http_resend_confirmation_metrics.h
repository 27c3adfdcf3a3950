// Counters in shared memory and the Prometheus handler.
#pragma once

#include "ngx_http_resend_confirmation.h"

#include <span>
#include <string_view>

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
