// The acknowledgement rule: what a 200 means, one rule for every
// deployment. A record counts as stored once the master and N replicas
// have it (`replicas=N`; default 1 with `sentinel=`, for `cluster` the
// replicas the slot map lists for the node's slots capped at 1, 0 for a
// single Redis):
// - each batch of records written ends with WAIT N, and its records are
//   answered once WAIT says N replicas have them; a WAIT that says fewer
//   leaves their outcome unknown (written, maybe kept, maybe not: as a
//   command without a reply) and fails the connection, since the master
//   may have changed or lost its replicas;
// - a link asks ROLE when it connects and takes the node only if it is a
//   master with N replicas connected: a demoted master that still says
//   "master", or one whose replicas are away, is not used (in a cluster,
//   a demoted master answers MOVED instead).
// N is never inferred from what a master says when the link connects. It
// may change while records are in flight (a cluster's slot map, read after
// they were written): a record whose reply finds N > 0 and no WAIT behind
// it gets one then (WAIT covers every write the connection made before it).

#include "redis/ngx_http_resend_confirmation_link.h"

#include "core/redis_topology.hpp"

namespace {

using fate = ngx_http_resend_confirmation_fate_t;

// A cluster's nodes: 0 until the slot map says (a record queued before it
// gets its WAIT once its reply finds the map read).
ngx_uint_t default_replicas(const ngx_http_resend_confirmation_redis_conf_t *conf) noexcept {
    if (conf->replicas != NGX_CONF_UNSET_UINT) return conf->replicas;
    return conf->sentinel != nullptr ? 1 : 0;
}

// N, and WAIT's first argument with it (not formatted for every batch).
void use_replicas(ngx_http_resend_confirmation_link_ack_t &ack, ngx_uint_t replicas) noexcept {
    ack.replicas = replicas;
    ack.wait_count_len = ngx_sprintf(ack.wait_count, "%ui", replicas) - ack.wait_count;
}

}  // namespace

void ngx_http_resend_confirmation_ack_init(ngx_http_resend_confirmation_link_t *link) noexcept {
    auto &ack = link->ack;
    ngx_queue_init(&ack.replicating);
    use_replicas(ack, default_replicas(link->conf));
    ngx_msec_t wait = ngx_max(link->conf->timeout / 2, (ngx_msec_t) 1);
    ack.wait_timeout_len = ngx_sprintf(ack.wait_timeout, "%M", wait) - ack.wait_timeout;
}

void ngx_http_resend_confirmation_ack_set_replicas(ngx_http_resend_confirmation_link_t *link,
                                                   ngx_uint_t replicas) noexcept {
    if (link->conf->replicas != NGX_CONF_UNSET_UINT) return;
    replicas = ngx_min(replicas, (ngx_uint_t) 1);
    if (replicas == link->ack.replicas) return;
    ngx_log_error(NGX_LOG_INFO, link->log, 0,
                  "resend_confirmation: redis %V: a record needs %ui replicas (slot map, ROLE)", &link->name, replicas);
    use_replicas(link->ack, replicas);
}

// Not in a cluster: its seeds may be replicas that the slot map is asked
// of, and a demoted cluster master answers a write with MOVED.
bool ngx_http_resend_confirmation_ack_asks_role(ngx_http_resend_confirmation_link_t *link) noexcept {
    return link->conf->cluster == nullptr && (link->conf->sentinel != nullptr || link->ack.replicas > 0);
}

bool ngx_http_resend_confirmation_ack_role(ngx_http_resend_confirmation_link_t *link,
                                           const resend::redis_reply &reply) noexcept {
    resend::redis_role role{};
    bool master = resend::parse_role(reply.elements, role) && role.role == "master";
    if (master && role.replicas >= link->ack.replicas) return true;
    if (master) {
        ngx_log_error(NGX_LOG_WARN, link->log, 0,
                      "resend_confirmation: redis %V: the master has %uz of the %ui replicas a record needs; "
                      "not used until it has them", &link->name, role.replicas, link->ack.replicas);
        ngx_http_resend_confirmation_link_fail(link, "master without its replicas");
        return false;
    }
    u_char text[160];
    size_t len = ngx_http_resend_confirmation_link_escape(role.role, text);
    ngx_log_error(NGX_LOG_WARN, link->log, 0, "resend_confirmation: redis %V is not a master (ROLE: %*s)",
                  &link->name, len, text);
    ngx_http_resend_confirmation_link_fail(link, "not the master");
    return false;
}

void ngx_http_resend_confirmation_ack_queued(ngx_http_resend_confirmation_link_t *link,
                                             ngx_http_resend_confirmation_pending_t *entry) noexcept {
    ++link->ack.unwaited;
    entry->batch = link->ack.batch;
}

bool ngx_http_resend_confirmation_ack_end_batch(ngx_http_resend_confirmation_link_t *link) noexcept {
    auto &ack = link->ack;
    if (ack.replicas == 0 || ack.unwaited == 0) return true;
    std::string_view wait[3] = {"WAIT",
                                {reinterpret_cast<const char *>(ack.wait_count), ack.wait_count_len},
                                {reinterpret_cast<const char *>(ack.wait_timeout), ack.wait_timeout_len}};
    if (ngx_http_resend_confirmation_link_append(link, wait, ngx_http_resend_confirmation_pending_kind_t::wait,
                                                 nullptr, ngx_current_msec + link->conf->timeout) == nullptr) {
        return false;
    }
    ack.unwaited = 0;
    ++ack.batch;
    return true;
}

bool ngx_http_resend_confirmation_ack_hold(ngx_http_resend_confirmation_link_t *link,
                                           ngx_http_resend_confirmation_pending_t *entry,
                                           const resend::redis_reply &reply) noexcept {
    if (link->ack.replicas == 0) return false;
    // Stored on the master: answered once WAIT says the replicas have it,
    // as Redis replied (what a script answered is read from it).
    entry->held_kind = reply.kind;
    entry->held_integer = reply.integer;
    ngx_queue_remove(&entry->queue);
    ngx_queue_insert_tail(&link->ack.replicating, &entry->queue);
    if (entry->batch == link->ack.batch) {
        // Written before N said a WAIT was needed: one follows now.
        ++link->ack.unwaited;
        ngx_http_resend_confirmation_link_flush(link);
    }
    // Its WAIT is in flight behind it, and with it the overdue timer;
    // should it not be, the request is still answered at its deadline.
    if (!link->overdue.timer_set) ngx_http_resend_confirmation_link_arm_overdue(link);
    return true;
}

bool ngx_http_resend_confirmation_ack_waited(ngx_http_resend_confirmation_link_t *link,
                                             const resend::redis_reply &reply) noexcept {
    ngx_atomic_uint_t connection = link->peer.connection->number;
    bool replicated = reply.kind == resend::reply_kind::integer && reply.integer >= 0 &&
                      static_cast<unsigned long long>(reply.integer) >= link->ack.replicas;
    if (!replicated) {
        ngx_log_error(NGX_LOG_WARN, link->log, 0,
                      "resend_confirmation: redis %V: %L of the %ui replicas a record needs acknowledged "
                      "the last writes: their outcome is unknown", &link->name,
                      reply.kind == resend::reply_kind::integer ? reply.integer : 0LL, link->ack.replicas);
        ngx_http_resend_confirmation_link_fail(link, "too few replicas acknowledged the writes");
        return false;
    }
    ngx_http_resend_confirmation_ack_release(link, fate::stored);
    return ngx_http_resend_confirmation_link_same(link, connection);
}

void ngx_http_resend_confirmation_ack_release(ngx_http_resend_confirmation_link_t *link,
                                              ngx_http_resend_confirmation_fate_t result) noexcept {
    ngx_queue_t done;
    ngx_queue_init(&done);
    if (!ngx_queue_empty(&link->ack.replicating)) {
        ngx_queue_add(&done, &link->ack.replicating);
        ngx_queue_init(&link->ack.replicating);
    }
    while (!ngx_queue_empty(&done)) {
        ngx_queue_t *q = ngx_queue_head(&done);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&link->spare, q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        resend::redis_reply held{.kind = entry->held_kind, .error = {}, .integer = entry->held_integer,
                                 .elements = {}, .truncated = false};
        ngx_http_resend_confirmation_link_finish(link, entry, result == fate::stored ? &held : nullptr, result);
    }
}

void ngx_http_resend_confirmation_ack_reset(ngx_http_resend_confirmation_link_t *link) noexcept {
    link->ack.unwaited = 0;
}
