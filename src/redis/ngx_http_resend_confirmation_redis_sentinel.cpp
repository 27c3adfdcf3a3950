// Redis Sentinel as the link's topology: where the master of
// `sentinel=MASTER` is, and what its refusals mean.
// - Where: asked of the Sentinels (SENTINEL get-master-addr-by-name) on
//   every connect, one at a time, starting with the one that last answered,
//   each on a link of its own (plain or with the directive's TLS, AUTH with
//   sentinel_password=).
// - Listened to: each Sentinel's events (PSUBSCRIBE, on a link of its own).
//   When a failover of the master begins (+try-failover), nothing is
//   written until it is over (+switch-master, +failover-end, an abort, or
//   `pause_limit`): the old master may take writes for seconds before
//   Sentinel turns it into a replica, and until the other replicas follow
//   the new master, one of them may acknowledge a write that is lost when
//   it does. +switch-master moves the link to the new master at once.
// - Watched: while the link is up, a Sentinel is also asked again every
//   `watch_interval`; a master named elsewhere moves the link, also while
//   the old connection looks healthy.
// - READONLY or MASTERDOWN to a record: not run, the master changed. The
//   link fails and asks again; records not written whole are kept and sent
//   to the next master within their deadline.

#include "redis/ngx_http_resend_confirmation_link.h"

#include "core/redis_reply.hpp"
#include "core/redis_topology.hpp"

namespace {

// How often a Sentinel is asked where the master is while the link is up.
constexpr ngx_msec_t watch_interval = 500;
// The longest a failover that began keeps records from being written.
constexpr ngx_msec_t pause_limit = 10000;

struct sentinel_state {
    ngx_http_resend_confirmation_link_t *master;  // the link that asks
    ngx_http_resend_confirmation_sentinel_conf_t *conf;
    ngx_http_resend_confirmation_redis_conf_t *master_conf;  // the directive's (allow=)
    ngx_http_resend_confirmation_link_t **links;  // one per Sentinel, made when first asked
    ngx_http_resend_confirmation_link_t **listeners;  // one per Sentinel, subscribed to its events
    ngx_msec_t paused_until;  // a failover began: nothing is written until it is over, or this
    ngx_uint_t next;       // the Sentinel asked first: the last that answered
    ngx_uint_t asked;      // Sentinels asked in this round
    bool in_flight;        // a question is on its way
    ngx_sockaddr_t known;  // the master's address as last named
    socklen_t known_len;
    ngx_event_t watch;     // asks again while the link is up
};

static_assert(std::is_trivially_destructible_v<sentinel_state>);

ngx_http_resend_confirmation_redis_conf_t *sentinel_conf(sentinel_state *state, ngx_uint_t i) noexcept {
    return static_cast<ngx_http_resend_confirmation_redis_conf_t **>(state->conf->sentinels.elts)[i];
}

ngx_log_t *state_log(sentinel_state *state) noexcept {
    return ngx_http_resend_confirmation_link_cycle(state->master)->log;
}

void ask(sentinel_state *state) noexcept;

// Whether a failover that began is still under way.
bool paused(sentinel_state *state) noexcept {
    return ngx_http_resend_confirmation_before(state->paused_until);
}

// A Sentinel named the master at `at`: the link connects there, or, up
// elsewhere, moves; while a failover is under way, neither.
void named(sentinel_state *state, ngx_http_resend_confirmation_link_t *sentinel, const resend::redis_endpoint &at,
           const ngx_sockaddr_t &sockaddr, socklen_t socklen) noexcept {
    ngx_str_t name = ngx_http_resend_confirmation_link_name(state->master);
    ngx_str_t from = ngx_http_resend_confirmation_link_name(sentinel);
    ngx_uint_t i = 0;
    while (i < state->conf->sentinels.nelts && state->links[i] != sentinel) ++i;
    state->next = i;
    if (socklen != state->known_len || ngx_memcmp(&sockaddr, &state->known, socklen) != 0) {
        ngx_log_error(NGX_LOG_NOTICE, state_log(state), 0, "resend_confirmation: redis %V: Sentinel %V names the master %*s:%ui",
                      &name, &from, at.host.size(), at.host.data(), static_cast<ngx_uint_t>(at.port));
        state->known = sockaddr;
        state->known_len = socklen;
    }
    if (paused(state)) {
        ngx_http_resend_confirmation_link_found(state->master, nullptr, "the Sentinels are failing the master over");
        return;
    }
    if (ngx_http_resend_confirmation_link_elsewhere(state->master, sockaddr, socklen)) {
        ngx_http_resend_confirmation_link_fail(state->master, "Sentinel names another master: moving there");
        return;
    }
    ngx_addr_t addr{const_cast<struct sockaddr *>(&sockaddr.sockaddr), socklen, name};
    ngx_http_resend_confirmation_link_found(state->master, &addr, nullptr);
}

void answered(ngx_http_resend_confirmation_link_t *link, void *data, const resend::redis_reply *reply,
              ngx_http_resend_confirmation_fate_t) noexcept {
    auto *state = static_cast<sentinel_state *>(data);
    state->in_flight = false;
    ngx_str_t sentinel = ngx_http_resend_confirmation_link_name(link);
    ngx_str_t name = ngx_http_resend_confirmation_link_name(state->master);
    resend::redis_endpoint at{};
    ngx_sockaddr_t sockaddr;
    socklen_t socklen = 0;
    if (reply == nullptr) {
        // The Sentinel's link failed and logged why.
    } else if (!resend::parse_master_address(reply->elements, at)) {
        ngx_log_error(NGX_LOG_WARN, state_log(state), 0,
                      "resend_confirmation: redis %V: Sentinel %V does not know master \"%V\"%s%*s", &name,
                      &sentinel, &state->conf->master, reply->kind == resend::reply_kind::error ? ": " : "",
                      reply->error.size(), reply->error.data());
    } else if (!ngx_http_resend_confirmation_endpoint_sockaddr(at, &sockaddr, &socklen)) {
        ngx_log_error(NGX_LOG_WARN, state_log(state), 0,
                      "resend_confirmation: redis %V: Sentinel %V names the master \"%*s\", not an IP address",
                      &name, &sentinel, at.host.size(), at.host.data());
    } else if (state->master_conf->allow != nullptr && !ngx_http_resend_confirmation_allowed(state->master_conf, sockaddr)) {
        ngx_log_error(NGX_LOG_ERR, state_log(state), 0,
                      "resend_confirmation: redis %V: Sentinel %V names the master %*s:%ui, outside allow=: not followed",
                      &name, &sentinel, at.host.size(), at.host.data(), static_cast<ngx_uint_t>(at.port));
    } else {
        named(state, link, at, sockaddr, socklen);
        return;
    }
    ++state->asked;
    ask(state);
}

// Asks the next Sentinel of the round; once each was asked, the link fails
// (when it was looking for the master).
void ask(sentinel_state *state) noexcept {
    ngx_uint_t count = state->conf->sentinels.nelts;
    for (; state->asked < count; ++state->asked) {
        ngx_uint_t i = (state->next + state->asked) % count;
        if (state->links[i] == nullptr) {
            state->links[i] = ngx_http_resend_confirmation_link_create(
                sentinel_conf(state, i), ngx_http_resend_confirmation_link_cycle(state->master));
            if (state->links[i] == nullptr) continue;
        }
        std::string_view args[3] = {"SENTINEL", "get-master-addr-by-name",
                                    {reinterpret_cast<const char *>(state->conf->master.data),
                                     state->conf->master.len}};
        if (ngx_http_resend_confirmation_link_command(state->links[i], args, answered, state)) {
            state->in_flight = true;
            return;
        }
    }
    ngx_http_resend_confirmation_link_found(state->master, nullptr, "no Sentinel named the master");
}

// A new round of questions, unless one is on its way (its answer serves).
void ask_again(sentinel_state *state) noexcept {
    state->asked = 0;
    if (!state->in_flight) ask(state);
}

// A Sentinel's event: a failover of our master began, ended, or named a
// new master.
void heard(ngx_http_resend_confirmation_link_t *listener, const resend::redis_reply &reply) noexcept {
    auto *state = static_cast<sentinel_state *>(ngx_http_resend_confirmation_link_topology_data(listener));
    resend::sentinel_event event = resend::parse_sentinel_event(reply.elements);
    if (event.kind == resend::sentinel_event::kind_t::none ||
        event.master != std::string_view(reinterpret_cast<const char *>(state->conf->master.data), state->conf->master.len)) {
        return;
    }
    ngx_str_t from = ngx_http_resend_confirmation_link_name(listener);
    ngx_str_t name = ngx_http_resend_confirmation_link_name(state->master);
    if (event.kind == resend::sentinel_event::kind_t::started) {
        ngx_log_error(NGX_LOG_NOTICE, state_log(state), 0,
                      "resend_confirmation: redis %V: Sentinel %V begins a failover: no record is written until it ends",
                      &name, &from);
        state->paused_until = ngx_current_msec + pause_limit;
        if (!ngx_http_resend_confirmation_link_connecting(state->master) && !ngx_http_resend_confirmation_link_ready(state->master)) return;
        ngx_http_resend_confirmation_link_fail(state->master, "a failover began");
        return;
    }
    state->paused_until = ngx_current_msec;  // over
    ngx_sockaddr_t sockaddr;
    socklen_t socklen = 0;
    if (event.kind == resend::sentinel_event::kind_t::switched &&
        ngx_http_resend_confirmation_endpoint_sockaddr(event.to, &sockaddr, &socklen) &&
        ngx_http_resend_confirmation_link_elsewhere(state->master, sockaddr, socklen)) {
        ngx_http_resend_confirmation_link_fail(state->master, "Sentinel switched the master: moving there");
    }
}

// Each Sentinel's events are listened to, on a link that subscribes again
// whenever it is down (and not held down).
void listen(sentinel_state *state) noexcept {
    std::string_view args[2] = {"PSUBSCRIBE", "*"};
    for (ngx_uint_t i = 0; i < state->conf->sentinels.nelts; ++i) {
        ngx_http_resend_confirmation_link_t *&listener = state->listeners[i];
        if (listener == nullptr) {
            listener = ngx_http_resend_confirmation_link_create(
                sentinel_conf(state, i), ngx_http_resend_confirmation_link_cycle(state->master), nullptr, nullptr, state);
            if (listener == nullptr) continue;
        }
        if (ngx_http_resend_confirmation_link_ready(listener) || ngx_http_resend_confirmation_link_connecting(listener)) {
            continue;
        }
        (void) ngx_http_resend_confirmation_link_subscribe(listener, args, heard);
    }
}

void watch(ngx_event_t *ev) noexcept {
    auto *state = static_cast<sentinel_state *>(ev->data);
    listen(state);
    if (ngx_http_resend_confirmation_link_ready(state->master)) ask_again(state);
    ngx_add_timer(&state->watch, watch_interval);
}

void locate(ngx_http_resend_confirmation_link_t *link) noexcept {
    auto *state = static_cast<sentinel_state *>(ngx_http_resend_confirmation_link_topology_data(link));
    listen(state);
    if (paused(state)) {
        ngx_http_resend_confirmation_link_found(link, nullptr, "the Sentinels are failing the master over");
        return;
    }
    ask_again(state);
}

// READONLY, MASTERDOWN: not run, the master changed. Sent again once
// Sentinel names the new one, with the records not yet written; a replay
// is busy (the spool keeps its record and replays it later).
bool not_here(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *entry,
              const resend::redis_reply &reply) noexcept {
    if (!resend::is_not_master(reply.error)) return false;
    u_char text[160];
    size_t len = ngx_http_resend_confirmation_link_escape(reply.error, text);
    ngx_str_t name = ngx_http_resend_confirmation_link_name(link);
    ngx_log_error(NGX_LOG_WARN, ngx_http_resend_confirmation_link_cycle(link)->log, 0,
                  "resend_confirmation: redis %V is no longer the master: %*s", &name, len, text);
    if (entry->kind == ngx_http_resend_confirmation_pending_kind_t::replay) {
        ngx_http_resend_confirmation_link_spare(link, entry);
        ngx_http_resend_confirmation_link_finish(link, entry, &reply, ngx_http_resend_confirmation_fate_t::busy);
    } else {
        ngx_http_resend_confirmation_link_keep(link, entry);
    }
    ngx_http_resend_confirmation_link_fail(link, "master changed, asking Sentinel again");
    return true;
}

const ngx_http_resend_confirmation_topology_t sentinel_topology = {
    .locate = locate, .route = nullptr, .not_here = not_here, .failed = nullptr, .keeps_unsent = true};

}  // namespace

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_sentinel_link_create(ngx_http_resend_confirmation_redis_conf_t *conf,
                                                  ngx_cycle_t *cycle) noexcept {
    auto *state = static_cast<sentinel_state *>(ngx_pcalloc(cycle->pool, sizeof(sentinel_state)));
    size_t size = conf->sentinel->sentinels.nelts * sizeof(ngx_http_resend_confirmation_link_t *);
    auto **links = static_cast<ngx_http_resend_confirmation_link_t **>(ngx_pcalloc(cycle->pool, size));
    auto **listeners = static_cast<ngx_http_resend_confirmation_link_t **>(ngx_pcalloc(cycle->pool, size));
    if (state == nullptr || links == nullptr || listeners == nullptr) return nullptr;
    state->conf = conf->sentinel;
    state->master_conf = conf;
    state->links = links;
    state->listeners = listeners;
    state->master = ngx_http_resend_confirmation_link_create(conf, cycle, nullptr, &sentinel_topology, state);
    if (state->master == nullptr) return nullptr;
    ngx_http_resend_confirmation_start_timer(&state->watch, watch, state, cycle->log, watch_interval);
    return state->master;
}

void ngx_http_resend_confirmation_sentinel_destroy(void *data) noexcept {
    auto *state = static_cast<sentinel_state *>(data);
    if (state->watch.timer_set) ngx_del_timer(&state->watch);
    for (ngx_uint_t i = 0; i < state->conf->sentinels.nelts; ++i) {
        if (state->links[i] != nullptr) ngx_http_resend_confirmation_link_destroy(state->links[i]);
        if (state->listeners[i] != nullptr) ngx_http_resend_confirmation_link_destroy(state->listeners[i]);
        state->links[i] = state->listeners[i] = nullptr;
    }
}

char *ngx_http_resend_confirmation_sentinel_configure(ngx_conf_t *cf,
                                                      ngx_http_resend_confirmation_redis_conf_t *redis,
                                                      ngx_array_t *addresses, ngx_str_t *master,
                                                      ngx_str_t *password) noexcept {
    auto *sentinel = static_cast<ngx_http_resend_confirmation_sentinel_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_sentinel_conf_t)));
    if (sentinel == nullptr ||
        ngx_array_init(&sentinel->sentinels, cf->pool, addresses->nelts,
                       sizeof(ngx_http_resend_confirmation_redis_conf_t *)) != NGX_OK) {
        return ngx_http_resend_confirmation_conf_error();
    }
    auto *at = static_cast<ngx_addr_t *>(addresses->elts);
    for (ngx_uint_t i = 0; i < addresses->nelts; ++i) {
        auto *conf = static_cast<ngx_http_resend_confirmation_redis_conf_t *>(
            ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_redis_conf_t)));
        auto **slot = static_cast<ngx_http_resend_confirmation_redis_conf_t **>(ngx_array_push(&sentinel->sentinels));
        if (conf == nullptr || slot == nullptr) return ngx_http_resend_confirmation_conf_error();
        conf->addr = at[i];
        conf->password = *password;
        conf->connect_timeout = redis->connect_timeout;
        conf->timeout = redis->timeout;
        conf->core = redis->core;
        conf->tls = redis->tls;
        conf->metrics = ngx_http_resend_confirmation_metrics_ref(cf, at[i].name, false);
        if (conf->metrics == nullptr) return ngx_http_resend_confirmation_conf_error();
        *slot = conf;
    }
    sentinel->master = *master;
    redis->sentinel = sentinel;
    return NGX_CONF_OK;
}
