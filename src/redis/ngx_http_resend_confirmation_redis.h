// What the Redis subsystem offers the rest of the module: the
// `resend_confirmation_redis` directive and its configuration, and this
// worker's links, to which a request (or the spool's replay) hands a
// command and from which it gets the command's fate.
#pragma once

#include "ngx_http_resend_confirmation.h"

#include <span>
#include <string_view>

#include "core/redis_reply.hpp"

// The TLS parameters of a `resend_confirmation_redis` (redis_tls.cpp).
struct ngx_http_resend_confirmation_tls_conf_s;
typedef struct ngx_http_resend_confirmation_tls_conf_s ngx_http_resend_confirmation_tls_conf_t;

// `sentinel=MASTER HOST:PORT...`: the master's name, and one configuration
// per Sentinel (its address, sentinel_password=, the directive's TLS and
// timeouts).
struct ngx_http_resend_confirmation_sentinel_conf_t {
    ngx_str_t master;
    ngx_array_t sentinels;  // of ngx_http_resend_confirmation_redis_conf_t *
};

// `cluster HOST:PORT...`: the nodes to learn the slot map from.
struct ngx_http_resend_confirmation_cluster_conf_t {
    ngx_array_t seeds;  // of ngx_addr_t (name: as configured)
};

// One `resend_confirmation_redis` directive: where and how to connect.
// Each gets its own connection in every worker (with `cluster`, one per
// master node).
struct ngx_http_resend_confirmation_redis_conf_t {
    ngx_addr_t addr;  // addr.name is the address as configured, for logs
    ngx_str_t db_text;  // SELECT argument; empty for db 0
    // What a spooled record keeps of where it goes (its replay finds the
    // directive by it): addr.name, with " db=N" for another database.
    ngx_str_t spool_name;
    ngx_str_t user;     // ACL user for AUTH; empty: AUTH with the password alone
    ngx_str_t password; // empty: no AUTH
    ngx_msec_t connect_timeout;
    ngx_msec_t timeout;  // the longest wait for one command's reply
    // replicas=N: a record is stored once the master and N replicas have
    // it; NGX_CONF_UNSET_UINT: the deployment's default (redis_ack.cpp).
    ngx_uint_t replicas;
    // allow=CIDR,...: the networks a MOVED/ASK (or, with sentinel=, the
    // Sentinels' answer) may send the link to beyond the nodes it knows;
    // null: none.
    ngx_array_t *allow;  // of ngx_cidr_t
    ngx_uint_t index;    // in the worker's links
    ngx_str_t script;    // a Lua script to SCRIPT LOAD on every connect; empty: none
    ngx_http_resend_confirmation_metrics_ref_t *metrics;  // the link's counters
    ngx_str_t host;      // a name to re-resolve on reconnect; empty for an IP address or unix:
    in_port_t port;      // with `host`
    ngx_http_core_loc_conf_t *core;  // where the directive is: its `resolver`
    u_char *unresolved_file;  // a name the system did not resolve at start: the directive's
    ngx_uint_t unresolved_line;  // place, until a resolver is known to be there (postconfiguration)
    ngx_http_resend_confirmation_tls_conf_t *tls;  // null: plain TCP
    ngx_http_resend_confirmation_sentinel_conf_t *sentinel;  // the master is asked of Sentinels
    ngx_http_resend_confirmation_cluster_conf_t *cluster;    // commands go to their slot's node
};

static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_redis_conf_t>);

// What the link knows of a command's fate.
enum class ngx_http_resend_confirmation_fate_t : unsigned char {
    stored,   // Redis replied, not with an error (and, for a record, enough replicas have it)
    refused,  // Redis replied with an error: not stored
    unsent,   // never (completely) written: not stored
    unknown,  // written, no reply (or too few replicas) in time: it may be stored
    busy,     // Redis replied that it cannot take writes now (LOADING, OOM, READONLY,
              // MASTERDOWN): not stored, worth keeping for later
};

// redis_directive.cpp: the directive, and this worker's links.
char *ngx_http_resend_confirmation_redis_directive(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
// Postconfiguration: a name not resolved at start needs a resolver.
ngx_int_t ngx_http_resend_confirmation_redis_check_unresolved(ngx_conf_t *cf,
                                                              ngx_http_resend_confirmation_main_conf_t *mcf) noexcept;
ngx_int_t ngx_http_resend_confirmation_redis_worker_start(ngx_cycle_t *cycle,
                                                          ngx_http_resend_confirmation_main_conf_t *mcf) noexcept;
void ngx_http_resend_confirmation_redis_worker_exit() noexcept;
ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_worker_link(ngx_http_resend_confirmation_redis_conf_t *conf) noexcept;
// The link of the `resend_confirmation_redis` whose spool_name is `name`
// (its address as configured, and " db=N"); null when there is none.
ngx_http_resend_confirmation_link_t *ngx_http_resend_confirmation_worker_link_named(std::string_view name) noexcept;

// link.cpp: sending on a link.
// Queues a command for `r`, which comes back through `done` (with r as its
// data); null when the link is down (the caller answers). args[0], the
// command's name, must be a literal: an error reply is logged with it.
// `holder` (may be null) is where the caller keeps the entry, to detach it:
// the link sets it, moves it with a redirect and clears it before `done`.
// The reply is due `timeout` after `since` (when the request began to wait
// for Redis: a command sent again keeps the first one's deadline).
ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_send(ngx_http_resend_confirmation_link_t *link,
                                       ngx_http_request_t *r,
                                       std::span<const std::string_view> args,
                                       ngx_http_resend_confirmation_link_done_pt done,
                                       ngx_http_resend_confirmation_pending_t **holder, ngx_msec_t since) noexcept;
// Queues a replay command of the spool: a record without a request, which
// the link treats as a request's (acknowledgement, a new master, the slot
// map) and whose reply and fate go to `done`. False when it cannot.
bool ngx_http_resend_confirmation_link_send_replay(ngx_http_resend_confirmation_link_t *link,
                                                   std::span<const std::string_view> args,
                                                   ngx_http_resend_confirmation_link_done_pt done,
                                                   void *data) noexcept;
// The request went away: its reply, when it comes, is dropped.
void ngx_http_resend_confirmation_link_detach(ngx_http_resend_confirmation_pending_t *entry) noexcept;
// Connected, past AUTH/SELECT, nothing failed since: replay may send.
bool ngx_http_resend_confirmation_link_ready(ngx_http_resend_confirmation_link_t *link) noexcept;
// On its way up (resolving, connecting, TLS, handshake).
bool ngx_http_resend_confirmation_link_connecting(ngx_http_resend_confirmation_link_t *link) noexcept;
// A down link outside its hold-down starts connecting (for the replay).
void ngx_http_resend_confirmation_link_wake(ngx_http_resend_confirmation_link_t *link) noexcept;
