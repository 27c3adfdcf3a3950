// Redis Sentinel: where the master of `sentinel=MASTER` is. Decides how the
// Sentinels are asked (SENTINEL get-master-addr-by-name, one at a time,
// starting with the one that last answered, each on a link of its own that
// closes once it has its answer: plain or with the directive's TLS, AUTH
// with sentinel_password=) and what their answers mean. The master's link
// asks on every connect (redis.cpp), so a connection failure or a READONLY
// or MASTERDOWN reply (which fail the connection) leads to asking again.

#include "ngx_http_resend_confirmation.h"

#include "core/redis_reply.hpp"
#include "core/redis_topology.hpp"

namespace {

struct sentinel_state {
    ngx_http_resend_confirmation_link_t *master;  // the link that asks
    ngx_http_resend_confirmation_sentinel_conf_t *conf;
    ngx_http_resend_confirmation_link_t **links;  // one per Sentinel, made when first asked
    ngx_uint_t next;       // the Sentinel asked first: the last that answered
    ngx_uint_t asked;      // Sentinels asked in this round
    bool in_flight;        // a question is on its way
    ngx_sockaddr_t known;  // the master's address as last named
    socklen_t known_len;
};

static_assert(std::is_trivially_destructible_v<sentinel_state>);

ngx_http_resend_confirmation_redis_conf_t *sentinel_conf(sentinel_state *state, ngx_uint_t i) noexcept {
    return static_cast<ngx_http_resend_confirmation_redis_conf_t **>(state->conf->sentinels.elts)[i];
}

void ngx_http_resend_confirmation_sentinel_ask(sentinel_state *state) noexcept;

void ngx_http_resend_confirmation_sentinel_answered(ngx_http_resend_confirmation_link_t *link, void *data,
                                                    const resend::redis_reply *reply,
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
        ngx_log_error(NGX_LOG_WARN, ngx_http_resend_confirmation_link_cycle(state->master)->log, 0,
                      "resend_confirmation: redis %V: Sentinel %V does not know master \"%V\"%s%*s", &name,
                      &sentinel, &state->conf->master, reply->kind == resend::reply_kind::error ? ": " : "",
                      reply->error.size(), reply->error.data());
    } else if (!ngx_http_resend_confirmation_endpoint_sockaddr(at, &sockaddr, &socklen)) {
        ngx_log_error(NGX_LOG_WARN, ngx_http_resend_confirmation_link_cycle(state->master)->log, 0,
                      "resend_confirmation: redis %V: Sentinel %V names the master \"%*s\", not an IP address",
                      &name, &sentinel, at.host.size(), at.host.data());
    } else {
        ngx_uint_t i = 0;
        while (i < state->conf->sentinels.nelts && state->links[i] != link) ++i;
        state->next = i;
        if (socklen != state->known_len || ngx_memcmp(&sockaddr, &state->known, socklen) != 0) {
            ngx_log_error(NGX_LOG_NOTICE, ngx_http_resend_confirmation_link_cycle(state->master)->log, 0,
                          "resend_confirmation: redis %V: Sentinel %V names the master %*s:%ui", &name,
                          &sentinel, at.host.size(), at.host.data(), static_cast<ngx_uint_t>(at.port));
            state->known = sockaddr;
            state->known_len = socklen;
        }
        ngx_addr_t addr{&sockaddr.sockaddr, socklen, name};
        ngx_http_resend_confirmation_link_found(state->master, &addr, nullptr);
        return;
    }
    ++state->asked;
    ngx_http_resend_confirmation_sentinel_ask(state);
}

// Asks the next Sentinel of the round; once each was asked, the link fails.
void ngx_http_resend_confirmation_sentinel_ask(sentinel_state *state) noexcept {
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
        if (ngx_http_resend_confirmation_link_command(state->links[i], args,
                                                      ngx_http_resend_confirmation_sentinel_answered, state)) {
            state->in_flight = true;
            return;
        }
    }
    ngx_http_resend_confirmation_link_found(state->master, nullptr, "no Sentinel named the master");
}

}  // namespace

void ngx_http_resend_confirmation_sentinel_discover(ngx_http_resend_confirmation_link_t *link,
                                                    ngx_http_resend_confirmation_redis_conf_t *conf,
                                                    void **slot) noexcept {
    auto *state = static_cast<sentinel_state *>(*slot);
    if (state == nullptr) {
        ngx_cycle_t *cycle = ngx_http_resend_confirmation_link_cycle(link);
        state = static_cast<sentinel_state *>(ngx_pcalloc(cycle->pool, sizeof(sentinel_state)));
        auto **links = static_cast<ngx_http_resend_confirmation_link_t **>(
            ngx_pcalloc(cycle->pool, conf->sentinel->sentinels.nelts * sizeof(ngx_http_resend_confirmation_link_t *)));
        if (state == nullptr || links == nullptr) {
            ngx_http_resend_confirmation_link_found(link, nullptr, "out of memory");
            return;
        }
        state->master = link;
        state->conf = conf->sentinel;
        state->links = links;
        *slot = state;
    }
    state->asked = 0;
    // A question still on its way (from a connection that failed since)
    // answers this round too.
    if (!state->in_flight) ngx_http_resend_confirmation_sentinel_ask(state);
}

void ngx_http_resend_confirmation_sentinel_destroy(void *data) noexcept {
    auto *state = static_cast<sentinel_state *>(data);
    for (ngx_uint_t i = 0; i < state->conf->sentinels.nelts; ++i) {
        if (state->links[i] != nullptr) ngx_http_resend_confirmation_link_destroy(state->links[i]);
        state->links[i] = nullptr;
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
        conf->is_sentinel = true;
        conf->metrics = ngx_http_resend_confirmation_metrics_ref(cf, at[i].name, false);
        if (conf->metrics == nullptr) return ngx_http_resend_confirmation_conf_error();
        *slot = conf;
    }
    sentinel->master = *master;
    redis->sentinel = sentinel;
    return NGX_CONF_OK;
}
