// Redis Cluster: which node a command goes to. Decides the slot map of a
// `cluster` directive in a worker (learned with CLUSTER SLOTS from any node,
// one question at a time), that a command goes to the master serving the
// slot of its first key (or, before the map is known, to a node in turn,
// which redirects it), and what MOVED (the map changed: the command goes to
// the node named, and the map is asked for again) and ASK (this command
// only: ASKING and the command to the node named; the map is kept) mean.
// Each node has a link of its own, made the first time a command goes
// there, with the directive's settings (redis.cpp).

#include "ngx_http_resend_confirmation.h"

#include "core/redis_reply.hpp"
#include "core/redis_topology.hpp"

#include <cstdint>

namespace {

constexpr ngx_uint_t max_nodes = 255;      // owner[] holds index + 1 in a byte
constexpr ngx_uint_t max_redirects = 5;    // MOVED/ASK followed per request
constexpr std::size_t max_ranges = 2048;   // of one CLUSTER SLOTS reply

struct cluster_node {
    ngx_sockaddr_t sockaddr;
    ngx_addr_t addr;  // sockaddr, and "host:port" for logs
    u_char text[NGX_SOCKADDR_STRLEN];
    ngx_http_resend_confirmation_link_t *link;  // made when first used
};

// One CLUSTER SLOTS reply at a time is read (workers are single-threaded).
resend::slot_range ranges[max_ranges];

}  // namespace

struct ngx_http_resend_confirmation_cluster_s {
    ngx_http_resend_confirmation_redis_conf_t *conf;
    ngx_cycle_t *cycle;
    ngx_http_resend_confirmation_link_t *head;  // the directive's link: the first seed's
    bool mapped;      // a CLUSTER SLOTS reply was read
    bool refreshing;  // CLUSTER SLOTS is on its way
    ngx_uint_t next;  // the node asked next (map, unmapped slots)
    ngx_uint_t count;
    cluster_node nodes[max_nodes];
    uint8_t owner[resend::cluster_slot_count];  // node index + 1; 0: not known
};

static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_cluster_t>);

namespace {

// The node at `sockaddr`, added if new; -1 when there is no room.
ngx_int_t ngx_http_resend_confirmation_cluster_node(ngx_http_resend_confirmation_cluster_t *cluster,
                                                    const ngx_sockaddr_t &sockaddr, socklen_t socklen) noexcept {
    for (ngx_uint_t i = 0; i < cluster->count; ++i) {
        cluster_node &node = cluster->nodes[i];
        if (ngx_cmp_sockaddr(node.addr.sockaddr, node.addr.socklen,
                             const_cast<struct sockaddr *>(&sockaddr.sockaddr), socklen, 1) == NGX_OK) {
            return static_cast<ngx_int_t>(i);
        }
    }
    if (cluster->count == max_nodes) return -1;
    cluster_node &node = cluster->nodes[cluster->count];
    ngx_memcpy(&node.sockaddr, &sockaddr, socklen);
    node.addr.sockaddr = &node.sockaddr.sockaddr;
    node.addr.socklen = socklen;
    node.addr.name.data = node.text;
    node.addr.name.len = ngx_sock_ntop(node.addr.sockaddr, socklen, node.text, sizeof(node.text), 1);
    node.link = nullptr;
    return static_cast<ngx_int_t>(cluster->count++);
}

// The node an endpoint names; an empty host is `from`'s (the node that answered).
ngx_int_t ngx_http_resend_confirmation_cluster_named(ngx_http_resend_confirmation_cluster_t *cluster,
                                                     const resend::redis_endpoint &at,
                                                     ngx_http_resend_confirmation_link_t *from) noexcept {
    ngx_sockaddr_t sockaddr;
    socklen_t socklen = 0;
    if (at.host.empty()) {
        ngx_uint_t i = 0;
        while (i < cluster->count && cluster->nodes[i].link != from) ++i;
        if (i == cluster->count) return -1;
        socklen = cluster->nodes[i].addr.socklen;
        ngx_memcpy(&sockaddr, cluster->nodes[i].addr.sockaddr, socklen);
        ngx_inet_set_port(&sockaddr.sockaddr, static_cast<in_port_t>(at.port));
    } else if (!ngx_http_resend_confirmation_endpoint_sockaddr(at, &sockaddr, &socklen)) {
        ngx_log_error(NGX_LOG_ERR, cluster->cycle->log, 0,
                      "resend_confirmation: redis %V: the cluster names a node \"%*s\", not an IP address",
                      &cluster->conf->addr.name, at.host.size(), at.host.data());
        return -1;
    }
    return ngx_http_resend_confirmation_cluster_node(cluster, sockaddr, socklen);
}

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_cluster_link(ngx_http_resend_confirmation_cluster_t *cluster, ngx_uint_t i) noexcept {
    cluster_node &node = cluster->nodes[i];
    if (node.link == nullptr) {
        node.link = ngx_http_resend_confirmation_link_create(cluster->conf, cluster->cycle, &node.addr, cluster);
    }
    return node.link;
}

void ngx_http_resend_confirmation_cluster_refresh(ngx_http_resend_confirmation_cluster_t *cluster) noexcept;

void ngx_http_resend_confirmation_cluster_mapped(ngx_http_resend_confirmation_link_t *link, void *data,
                                                 const resend::redis_reply *reply,
                                                 ngx_http_resend_confirmation_fate_t) noexcept {
    auto *cluster = static_cast<ngx_http_resend_confirmation_cluster_t *>(data);
    cluster->refreshing = false;
    if (reply == nullptr) return;  // the link failed and said why; the next MOVED asks again
    std::size_t count = 0;
    ngx_str_t name = ngx_http_resend_confirmation_link_name(link);
    if (reply->kind == resend::reply_kind::error || reply->truncated ||
        !resend::parse_cluster_slots(reply->elements, ranges, count)) {
        ngx_log_error(NGX_LOG_WARN, cluster->cycle->log, 0,
                      "resend_confirmation: redis %V: no slot map from CLUSTER SLOTS%s%*s%s", &name,
                      reply->kind == resend::reply_kind::error ? ": " : "", reply->error.size(),
                      reply->error.data(),
                      reply->kind == resend::reply_kind::error ? "" : " (not a reply it can read in full)");
        return;
    }
    ngx_memzero(cluster->owner, sizeof(cluster->owner));
    for (std::size_t i = 0; i < count; ++i) {
        ngx_int_t node = ngx_http_resend_confirmation_cluster_named(cluster, ranges[i].at, link);
        if (node < 0) continue;  // its slots stay unmapped: sent to a node in turn, redirected
        ngx_memset(cluster->owner + ranges[i].first, static_cast<int>(node + 1),
                   ranges[i].last - ranges[i].first + 1);
    }
    cluster->mapped = true;
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cluster->cycle->log, 0,
                   "resend_confirmation: redis %V: slot map of %uz ranges from %V", &cluster->conf->addr.name,
                   count, &name);
}

// Asks a node for the slot map, unless a question is on its way.
void ngx_http_resend_confirmation_cluster_refresh(ngx_http_resend_confirmation_cluster_t *cluster) noexcept {
    if (cluster->refreshing) return;
    std::string_view args[2] = {"CLUSTER", "SLOTS"};
    for (ngx_uint_t tried = 0; tried < cluster->count; ++tried) {
        ngx_http_resend_confirmation_link_t *link =
            ngx_http_resend_confirmation_cluster_link(cluster, cluster->next++ % cluster->count);
        if (link != nullptr && ngx_http_resend_confirmation_link_command(
                                   link, args, ngx_http_resend_confirmation_cluster_mapped, cluster)) {
            cluster->refreshing = true;
            return;
        }
    }
}

ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_cluster_send_to(ngx_http_resend_confirmation_cluster_t *cluster, ngx_uint_t node,
                                             ngx_http_request_t *r, std::span<const std::string_view> args,
                                             ngx_msec_t deadline, ngx_uint_t redirects, bool asking,
                                             ngx_http_resend_confirmation_link_done_pt done) noexcept {
    ngx_http_resend_confirmation_link_t *link = ngx_http_resend_confirmation_cluster_link(cluster, node);
    if (link == nullptr) return nullptr;
    return ngx_http_resend_confirmation_link_queue(link, r, args, deadline, redirects, asking, done, r);
}

}  // namespace

ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_cluster_send(ngx_http_resend_confirmation_cluster_t *cluster, ngx_http_request_t *r,
                                          std::span<const std::string_view> args, ngx_msec_t deadline,
                                          ngx_uint_t redirects, ngx_http_resend_confirmation_link_done_pt done) noexcept {
    if (!cluster->mapped) ngx_http_resend_confirmation_cluster_refresh(cluster);
    unsigned slot = resend::key_slot(resend::first_key(args));
    ngx_uint_t node = cluster->owner[slot] != 0 ? cluster->owner[slot] - 1u : cluster->next++ % cluster->count;
    return ngx_http_resend_confirmation_cluster_send_to(cluster, node, r, args, deadline, redirects, false, done);
}

ngx_int_t ngx_http_resend_confirmation_cluster_learn(ngx_http_resend_confirmation_cluster_t *cluster,
                                                     ngx_http_resend_confirmation_link_t *from,
                                                     const resend::redis_redirect &to) noexcept {
    ngx_int_t node = ngx_http_resend_confirmation_cluster_named(cluster, to.to, from);
    if (node >= 0 && to.kind == resend::redis_redirect::kind_t::moved) {
        // The slot has a new owner for good: note it now, learn the rest.
        cluster->owner[to.slot] = static_cast<uint8_t>(node + 1);
        ngx_http_resend_confirmation_cluster_refresh(cluster);
    }
    return node;
}

void ngx_http_resend_confirmation_cluster_redirect(ngx_http_resend_confirmation_cluster_t *cluster,
                                                   ngx_http_resend_confirmation_link_t *from,
                                                   ngx_http_request_t *r, std::span<const std::string_view> args,
                                                   ngx_msec_t deadline, ngx_uint_t redirects,
                                                   const resend::redis_redirect &to,
                                                   ngx_http_resend_confirmation_link_done_pt done,
                                                   ngx_http_resend_confirmation_pending_t **holder) noexcept {
    bool moved = to.kind == resend::redis_redirect::kind_t::moved;
    ngx_int_t node = ngx_http_resend_confirmation_cluster_learn(cluster, from, to);
    ngx_http_resend_confirmation_pending_t *entry = nullptr;
    // MOVED and ASK mean the command did not run: not followed for now
    // (the node cannot be reached, its time is up), it is unsent (the spool
    // keeps it); not followed ever (round and round, a node that cannot be
    // added), refused.
    ngx_http_resend_confirmation_fate_t fate = ngx_http_resend_confirmation_fate_t::unsent;
    if (redirects >= max_redirects) {
        ngx_log_error(NGX_LOG_ERR, cluster->cycle->log, 0,
                      "resend_confirmation: redis %V: redirected %ui times, not followed further",
                      &cluster->conf->addr.name, redirects);
        fate = ngx_http_resend_confirmation_fate_t::refused;
    } else if (static_cast<ngx_msec_int_t>(deadline - ngx_current_msec) <= 0) {
        ngx_log_error(NGX_LOG_ERR, cluster->cycle->log, 0,
                      "resend_confirmation: redis %V: redirected past the request's timeout",
                      &cluster->conf->addr.name);
    } else if (node < 0) {
        fate = ngx_http_resend_confirmation_fate_t::refused;
    } else {
        entry = ngx_http_resend_confirmation_cluster_send_to(cluster, static_cast<ngx_uint_t>(node), r, args,
                                                             deadline, redirects + 1, !moved, done);
    }
    if (entry == nullptr) {
        done(from, r, nullptr, fate);  // (*holder was cleared by the caller)
    } else {
        ngx_http_resend_confirmation_link_hold(entry, holder);
    }
}

ngx_http_resend_confirmation_cluster_t *
ngx_http_resend_confirmation_cluster_create(ngx_http_resend_confirmation_redis_conf_t *conf, ngx_cycle_t *cycle,
                                            ngx_http_resend_confirmation_link_t *head) noexcept {
    auto *cluster = static_cast<ngx_http_resend_confirmation_cluster_t *>(
        ngx_pcalloc(cycle->pool, sizeof(ngx_http_resend_confirmation_cluster_t)));
    if (cluster == nullptr) return nullptr;
    cluster->conf = conf;
    cluster->cycle = cycle;
    cluster->head = head;
    auto *seeds = static_cast<ngx_addr_t *>(conf->cluster->seeds.elts);
    for (ngx_uint_t i = 0; i < conf->cluster->seeds.nelts; ++i) {
        ngx_sockaddr_t sockaddr;
        ngx_memcpy(&sockaddr, seeds[i].sockaddr, seeds[i].socklen);
        if (ngx_http_resend_confirmation_cluster_node(cluster, sockaddr, seeds[i].socklen) < 0) break;
    }
    cluster->nodes[0].link = head;  // the first seed is the directive's address
    return cluster;
}

void ngx_http_resend_confirmation_cluster_destroy(ngx_http_resend_confirmation_cluster_t *cluster) noexcept {
    for (ngx_uint_t i = 0; i < cluster->count; ++i) {
        cluster_node &node = cluster->nodes[i];
        if (node.link != nullptr && node.link != cluster->head) ngx_http_resend_confirmation_link_destroy(node.link);
        node.link = nullptr;
    }
}

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_cluster_head(ngx_http_resend_confirmation_cluster_t *cluster) noexcept {
    return cluster->head;
}

char *ngx_http_resend_confirmation_cluster_configure(ngx_conf_t *cf,
                                                     ngx_http_resend_confirmation_redis_conf_t *redis,
                                                     ngx_array_t *addresses) noexcept {
    if (addresses->nelts > max_nodes) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"cluster\" takes at most %ui node addresses", max_nodes);
        return ngx_http_resend_confirmation_conf_error();
    }
    auto *cluster = static_cast<ngx_http_resend_confirmation_cluster_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_cluster_conf_t)));
    if (cluster == nullptr) return ngx_http_resend_confirmation_conf_error();
    cluster->seeds = *addresses;
    redis->cluster = cluster;
    return NGX_CONF_OK;
}
