// Redis Cluster as the link's topology: which node a command goes to.
// - The slot map of a `cluster` directive in a worker, learned with
//   CLUSTER SLOTS from any node, one question at a time: at start, after a
//   MOVED, when a connection to a node fails (its slots may have a new
//   owner: asked of the other nodes) and every `refresh_interval`.
// - A record goes to the master serving the slot of its first key (before
//   the map is known, to a node in turn, which redirects it), on a link of
//   that node's own, made the first time a command goes there.
// - MOVED: the map changed; the command goes to the node named, and the
//   map is asked for again. ASK: this command only, ASKING and the command
//   to the node named; the map is kept.
// - The most replicas the map has listed for a master, or its ROLE named
//   (asked before its connection's first record and every second), capped
//   at 1, are its links' replicas=N, unless the directive sets it.

#include "redis/ngx_http_resend_confirmation_link.h"

#include "core/redis_reply.hpp"
#include "core/redis_topology.hpp"

#include <cstdint>

namespace {

constexpr ngx_uint_t max_nodes = 255;      // owner[] holds index + 1 in a byte
constexpr ngx_uint_t max_redirects = 5;    // MOVED/ASK followed per request
constexpr std::size_t max_ranges = 2048;   // of one CLUSTER SLOTS reply
// The slot map is asked for again at least this often.
constexpr ngx_msec_t refresh_interval = 1000;

using kind = ngx_http_resend_confirmation_pending_kind_t;
using fate = ngx_http_resend_confirmation_fate_t;

struct cluster_node {
    ngx_sockaddr_t sockaddr;
    ngx_addr_t addr;  // sockaddr, and "host:port" for logs
    u_char text[NGX_SOCKADDR_STRLEN];
    ngx_http_resend_confirmation_link_t *link;  // made when first used
    // The most replicas a map listed for its slots or its own ROLE named:
    // never lowered, since a map leaves out a replica that is syncing or
    // stalled (not failed) for a while, and a node's view of another's
    // replicas lags: the very one that would be lost with the writes.
    ngx_uint_t replicas;
    bool role_asked;  // ROLE went on this connection (before its first record)
};

// One CLUSTER SLOTS reply at a time is read (workers are single-threaded).
resend::slot_range ranges[max_ranges];

struct cluster_state {
    ngx_http_resend_confirmation_redis_conf_t *conf;
    ngx_cycle_t *cycle;
    ngx_http_resend_confirmation_link_t *head;  // the directive's link: the first seed's
    bool mapped;      // a CLUSTER SLOTS reply was read
    bool refreshing;  // CLUSTER SLOTS is on its way
    bool asking;      // a refresh is choosing its node (a failure within it does not start another)
    ngx_uint_t next;  // the node asked next (map, unmapped slots)
    ngx_uint_t map_node;  // the one CLUSTER SLOTS went to
    ngx_uint_t count;
    ngx_event_t refresh;  // asks for the map again
    cluster_node nodes[max_nodes];
    uint8_t owner[resend::cluster_slot_count];  // node index + 1; 0: not known
};

static_assert(std::is_trivially_destructible_v<cluster_state>);

const ngx_http_resend_confirmation_topology_t *topology() noexcept;

cluster_state *state_of(ngx_http_resend_confirmation_link_t *link) noexcept {
    return static_cast<cluster_state *>(ngx_http_resend_confirmation_link_topology_data(link));
}

// The node at `sockaddr`, added if new (and `add`); -1 when there is no
// room, or it is new and not to be added.
ngx_int_t node_at(cluster_state *cluster, const ngx_sockaddr_t &sockaddr, socklen_t socklen, bool add = true) noexcept {
    for (ngx_uint_t i = 0; i < cluster->count; ++i) {
        cluster_node &node = cluster->nodes[i];
        if (ngx_cmp_sockaddr(node.addr.sockaddr, node.addr.socklen,
                             const_cast<struct sockaddr *>(&sockaddr.sockaddr), socklen, 1) == NGX_OK) {
            return static_cast<ngx_int_t>(i);
        }
    }
    if (cluster->count == max_nodes || !add) return -1;
    cluster_node &node = cluster->nodes[cluster->count];
    ngx_memcpy(&node.sockaddr, &sockaddr, socklen);
    node.addr.sockaddr = &node.sockaddr.sockaddr;
    node.addr.socklen = socklen;
    node.addr.name.data = node.text;
    node.addr.name.len = ngx_sock_ntop(node.addr.sockaddr, socklen, node.text, sizeof(node.text), 1);
    node.link = nullptr;
    node.replicas = 0;  // until the map or its ROLE lists some
    node.role_asked = false;
    return static_cast<ngx_int_t>(cluster->count++);
}

// The node an endpoint names; an empty host is `from`'s (the node that
// answered). A redirect (`redirected`) names only a node the seeds or the
// slot map made known, or one in the allow= networks: a rogue node must
// not send the link, its AUTH and its records anywhere it likes.
ngx_int_t node_named(cluster_state *cluster, const resend::redis_endpoint &at,
                     ngx_http_resend_confirmation_link_t *from, bool redirected = false) noexcept {
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
    ngx_int_t node = node_at(cluster, sockaddr, socklen, !redirected || ngx_http_resend_confirmation_allowed(cluster->conf, sockaddr));
    if (node < 0 && redirected) {
        ngx_log_error(NGX_LOG_ERR, cluster->cycle->log, 0,
                      "resend_confirmation: redis %V: a redirect to %*s:%ui, a node neither the configuration "
                      "nor the slot map names (nor allow=): not followed",
                      &cluster->conf->addr.name, at.host.size(), at.host.data(), static_cast<ngx_uint_t>(at.port));
    }
    return node;
}

ngx_http_resend_confirmation_link_t *node_link(cluster_state *cluster, ngx_uint_t i) noexcept {
    cluster_node &node = cluster->nodes[i];
    if (node.link == nullptr) {
        node.link = ngx_http_resend_confirmation_link_create(cluster->conf, cluster->cycle, &node.addr, topology(),
                                                             cluster);
        if (node.link != nullptr && cluster->mapped) {
            ngx_http_resend_confirmation_ack_set_replicas(node.link, node.replicas);
        }
    }
    return node.link;
}

void refresh(cluster_state *cluster) noexcept;

// What a CLUSTER SLOTS reply says: each slot's owner, each owner's replicas
// (the most it has been seen with).
void read_map(cluster_state *cluster, ngx_http_resend_confirmation_link_t *from, std::size_t count) noexcept {
    ngx_memzero(cluster->owner, sizeof(cluster->owner));
    for (std::size_t i = 0; i < count; ++i) {
        ngx_int_t node = node_named(cluster, ranges[i].at, from);
        if (node < 0) continue;  // its slots stay unmapped: sent to a node in turn, redirected
        ngx_memset(cluster->owner + ranges[i].first, static_cast<int>(node + 1), ranges[i].last - ranges[i].first + 1);
        cluster_node &owner = cluster->nodes[node];
        owner.replicas = ngx_max(owner.replicas, static_cast<ngx_uint_t>(ranges[i].replicas));
    }
    for (ngx_uint_t i = 0; i < cluster->count; ++i) {
        if (cluster->nodes[i].link != nullptr) {
            ngx_http_resend_confirmation_ack_set_replicas(cluster->nodes[i].link, cluster->nodes[i].replicas);
        }
    }
    cluster->mapped = true;
}

void mapped(ngx_http_resend_confirmation_link_t *link, void *data, const resend::redis_reply *reply,
            ngx_http_resend_confirmation_fate_t) noexcept {
    auto *cluster = static_cast<cluster_state *>(data);
    cluster->refreshing = false;
    if (reply == nullptr) {
        refresh(cluster);  // that node's link failed and said why: another one
        return;
    }
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
    read_map(cluster, link, count);
    ngx_log_debug3(NGX_LOG_DEBUG_HTTP, cluster->cycle->log, 0,
                   "resend_confirmation: redis %V: slot map of %uz ranges from %V", &cluster->conf->addr.name,
                   count, &name);
}

// Asks a node for the slot map, unless a question is on its way: one
// whose connection is up if there is one (no connection is opened for the
// map alone), else the nodes in turn.
void refresh(cluster_state *cluster) noexcept {
    if (cluster->refreshing || cluster->asking) return;
    cluster->asking = true;
    std::string_view args[2] = {"CLUSTER", "SLOTS"};
    for (int pass = 0; pass < 2 && !cluster->refreshing; ++pass) {
        for (ngx_uint_t tried = 0; tried < cluster->count && !cluster->refreshing; ++tried) {
            ngx_uint_t i = (cluster->next + tried) % cluster->count;
            ngx_http_resend_confirmation_link_t *link = pass == 0 ? cluster->nodes[i].link : node_link(cluster, i);
            if (link == nullptr || (pass == 0 && !ngx_http_resend_confirmation_link_ready(link))) continue;
            if (ngx_http_resend_confirmation_link_command(link, args, mapped, cluster)) {
                cluster->refreshing = true;
                cluster->map_node = i;
                cluster->next = i + 1;
            }
        }
    }
    cluster->asking = false;
}

// A master's own ROLE: the replicas it has online, the surest count.
void role_heard(ngx_http_resend_confirmation_link_t *link, void *data, const resend::redis_reply *reply,
                ngx_http_resend_confirmation_fate_t) noexcept {
    auto *node = static_cast<cluster_node *>(data);
    resend::redis_role role{};
    if (reply == nullptr || !resend::parse_role(reply->elements, role) || role.role != "master") return;
    node->replicas = ngx_max(node->replicas, static_cast<ngx_uint_t>(role.replicas));
    ngx_http_resend_confirmation_ack_set_replicas(link, node->replicas);
}

// Asks a node's ROLE on its link: ahead of the connection's first record
// (its reply comes first), and every `refresh_interval`.
void ask_role(cluster_node &node) noexcept {
    std::string_view args[1] = {"ROLE"};
    node.role_asked = ngx_http_resend_confirmation_link_command(node.link, args, role_heard, &node);
}

void refresh_timer(ngx_event_t *ev) noexcept {
    auto *cluster = static_cast<cluster_state *>(ev->data);
    refresh(cluster);
    for (ngx_uint_t i = 0; i < cluster->count; ++i) {
        cluster_node &node = cluster->nodes[i];
        if (node.link != nullptr && ngx_http_resend_confirmation_link_ready(node.link)) ask_role(node);
    }
    ngx_add_timer(&cluster->refresh, refresh_interval);
}

ngx_http_resend_confirmation_pending_t *send_to(cluster_state *cluster, ngx_uint_t node, ngx_http_request_t *r,
                                                std::span<const std::string_view> args, kind what,
                                                ngx_msec_t deadline, ngx_uint_t redirects, bool asking,
                                                ngx_http_resend_confirmation_link_done_pt done, void *data) noexcept {
    ngx_http_resend_confirmation_link_t *link = node_link(cluster, node);
    if (link == nullptr) return nullptr;
    if (!cluster->nodes[node].role_asked) ask_role(cluster->nodes[node]);
    return ngx_http_resend_confirmation_link_queue(link, r, args, what, deadline, redirects, asking, done, data);
}

// What `from`'s MOVED or ASK (`to`) teaches: the node named (added if new;
// -1 when there is no room), which after MOVED owns the slot (and the map
// is asked for again).
ngx_int_t learn(cluster_state *cluster, ngx_http_resend_confirmation_link_t *from,
                const resend::redis_redirect &to) noexcept {
    ngx_int_t node = node_named(cluster, to.to, from, true);
    if (node >= 0 && to.kind == resend::redis_redirect::kind_t::moved) cluster->owner[to.slot] = static_cast<uint8_t>(node + 1);
    // The map says whether the slot moved (and to a node it names).
    if (to.kind == resend::redis_redirect::kind_t::moved || node < 0) refresh(cluster);
    return node;
}

// A request's command redirected by `from` to `to`: sent again there, or
// the request answered. MOVED and ASK mean the command did not run: not
// followed for now (the node cannot be reached or is not known, its time
// is up), it is unsent (the spool keeps it); not followed ever (round and
// round), refused.
void redirect(cluster_state *cluster, ngx_http_resend_confirmation_link_t *from, ngx_http_request_t *r,
              std::span<const std::string_view> args, ngx_msec_t deadline, ngx_uint_t redirects,
              const resend::redis_redirect &to, ngx_http_resend_confirmation_link_done_pt done,
              ngx_http_resend_confirmation_pending_t **holder) noexcept {
    bool moved = to.kind == resend::redis_redirect::kind_t::moved;
    ngx_int_t node = learn(cluster, from, to);
    ngx_http_resend_confirmation_pending_t *entry = nullptr;
    fate result = fate::unsent;
    if (redirects >= max_redirects) {
        ngx_log_error(NGX_LOG_ERR, cluster->cycle->log, 0,
                      "resend_confirmation: redis %V: redirected %ui times, not followed further",
                      &cluster->conf->addr.name, redirects);
        result = fate::refused;
    } else if (!ngx_http_resend_confirmation_before(deadline)) {
        ngx_log_error(NGX_LOG_ERR, cluster->cycle->log, 0,
                      "resend_confirmation: redis %V: redirected past the request's timeout", &cluster->conf->addr.name);
    } else if (node < 0) {
        // Not followed now (not run there: the spool keeps it); the map asked for may name it.
    } else {
        entry = send_to(cluster, static_cast<ngx_uint_t>(node), r, args, kind::request, deadline, redirects + 1,
                        !moved, done, r);
    }
    if (entry == nullptr) {
        done(from, r, nullptr, result);
    } else {
        ngx_http_resend_confirmation_link_hold(entry, holder);
    }
}

// --- the topology's hooks --------------------------------------------------------

ngx_http_resend_confirmation_pending_t *route(ngx_http_resend_confirmation_link_t *link, ngx_http_request_t *r,
                                              std::span<const std::string_view> args, kind what, ngx_msec_t deadline,
                                              ngx_http_resend_confirmation_link_done_pt done, void *data) noexcept {
    cluster_state *cluster = state_of(link);
    if (!cluster->mapped) refresh(cluster);
    unsigned slot = resend::key_slot(resend::first_key(args));
    // Before the map, behind CLUSTER SLOTS on its connection: the map (and
    // with it the replicas a record needs there) is read before its reply.
    ngx_uint_t node = cluster->owner[slot] != 0 ? cluster->owner[slot] - 1u
                      : !cluster->mapped && cluster->refreshing ? cluster->map_node
                                                               : cluster->next++ % cluster->count;
    return send_to(cluster, node, r, args, what, deadline, 0, false, done, data);
}

bool not_here(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *entry,
              const resend::redis_reply &reply) noexcept {
    resend::redis_redirect to = resend::parse_redirect(reply.error);
    if (to.kind == resend::redis_redirect::kind_t::none) return false;
    // Not run here: the node named serves the slot (an address and a
    // number: nothing to escape).
    ngx_str_t name = ngx_http_resend_confirmation_link_name(link);
    ngx_log_error(NGX_LOG_INFO, ngx_http_resend_confirmation_link_cycle(link)->log, 0, "resend_confirmation: redis %V: %*s",
                  &name, reply.error.size(), reply.error.data());
    cluster_state *cluster = state_of(link);
    ngx_http_resend_confirmation_link_spare(link, entry);
    if (entry->kind == kind::replay) {
        // The spool sends it again from its first unacknowledged record,
        // to the node the map names by then (learning may reuse the entry).
        ngx_http_resend_confirmation_pending_t replay = *entry;
        (void) learn(cluster, link, to);
        ngx_http_resend_confirmation_link_finish(link, &replay, &reply, fate::unsent);
        return true;
    }
    // The command goes on in another entry, or is over (this one is spare).
    ngx_http_resend_confirmation_pending_t **holder = entry->holder;
    entry->holder = nullptr;
    if (holder != nullptr) *holder = nullptr;
    redirect(cluster, link, entry->r, entry->args, entry->deadline, entry->redirects, to, entry->done, holder);
    return true;
}

// A node that fails may have lost its slots to a replica: the map is
// asked of the others at once.
void failed(ngx_http_resend_confirmation_link_t *link) noexcept {
    cluster_state *cluster = state_of(link);
    for (ngx_uint_t i = 0; i < cluster->count; ++i) {
        if (cluster->nodes[i].link == link) cluster->nodes[i].role_asked = false;  // the next connection asks
    }
    refresh(cluster);
}

const ngx_http_resend_confirmation_topology_t cluster_topology = {
    .locate = nullptr, .route = route, .not_here = not_here, .failed = failed, .keeps_unsent = false};

const ngx_http_resend_confirmation_topology_t *topology() noexcept {
    return &cluster_topology;
}

}  // namespace

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_cluster_link_create(ngx_http_resend_confirmation_redis_conf_t *conf,
                                                 ngx_cycle_t *cycle) noexcept {
    auto *cluster = static_cast<cluster_state *>(ngx_pcalloc(cycle->pool, sizeof(cluster_state)));
    if (cluster == nullptr) return nullptr;
    cluster->conf = conf;
    cluster->cycle = cycle;
    auto *seeds = static_cast<ngx_addr_t *>(conf->cluster->seeds.elts);
    for (ngx_uint_t i = 0; i < conf->cluster->seeds.nelts; ++i) {
        ngx_sockaddr_t sockaddr;
        ngx_memcpy(&sockaddr, seeds[i].sockaddr, seeds[i].socklen);
        if (node_at(cluster, sockaddr, seeds[i].socklen) < 0) break;
    }
    // The first seed is the directive's address.
    cluster->head = ngx_http_resend_confirmation_link_create(conf, cycle, nullptr, topology(), cluster);
    if (cluster->head == nullptr) return nullptr;
    cluster->nodes[0].link = cluster->head;
    ngx_http_resend_confirmation_start_timer(&cluster->refresh, refresh_timer, cluster, cycle->log, refresh_interval);
    return cluster->head;
}

void ngx_http_resend_confirmation_cluster_destroy(void *data) noexcept {
    auto *cluster = static_cast<cluster_state *>(data);
    if (cluster->refresh.timer_set) ngx_del_timer(&cluster->refresh);
    for (ngx_uint_t i = 0; i < cluster->count; ++i) {
        cluster_node &node = cluster->nodes[i];
        if (node.link != nullptr && node.link != cluster->head) ngx_http_resend_confirmation_link_destroy(node.link);
        node.link = nullptr;
    }
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
