// Rate limits in shared memory, modelled on nginx's limit_req: one zone per
// name shared by all workers (slab pool + rbtree + LRU queue), a leaky bucket
// per key (src/core/leaky_bucket.hpp), reject-only. This file decides, for
// one request and one phase, whether the location's limits let it pass,
// refuse it (429) or silence it, counts it where it passes, and gives the
// count back when the request is refused later; and it sets up a zone's
// shared memory (refusing a reload that changes a zone's key or size).
// The directives that make zones and apply them: limit_directives.cpp.
//
// An email zone (checked after validation) stores HMAC-SHA256(secret, key)
// truncated to 16 bytes, never the address; a client zone (checked before
// the body is read) stores its key as is, hashed the same way when longer
// than 16 bytes, which bounds a node. A full zone evicts its least recently
// used keys; it never fails a request.

#include "ngx_http_resend_confirmation.h"
#include "limit/ngx_http_resend_confirmation_limit.h"

#include <openssl/rand.h>

#include <type_traits>

static const size_t secret_size = 32;

// The zone's shared state: survives reloads while the zone keeps its size.
struct ngx_http_resend_confirmation_limit_shctx_s {
    ngx_rbtree_t rbtree;
    ngx_rbtree_node_t sentinel;
    ngx_queue_t queue;  // least recently used last
    u_char secret[secret_size];  // random, made with the zone: the HMAC key unless one is configured
    // For the metrics: keys is changed under the zone's mutex, the others
    // with atomic adds; all are read without the mutex.
    uint64_t keys;
    uint64_t evictions;  // keys forgotten before they drained, to make room
    uint64_t refused;    // requests over a limit of this zone (non-silent), dry runs included
    uint64_t silenced;   // ... over a silent one
};
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_limit_shctx_t>);

// One key: follows ngx_rbtree_node_t's `key`, overlapping from its `color`
// field on, as limit_req does, so a node is one slab allocation.
struct ngx_http_resend_confirmation_limit_node_t {
    u_char color;
    u_char len;
    ngx_queue_t queue;
    int64_t last;     // resend::bucket
    uint64_t excess;
    u_char data[1];
};
static_assert(std::is_trivially_destructible_v<ngx_http_resend_confirmation_limit_node_t>);

namespace {

ngx_http_resend_confirmation_zone_t *zone_of(ngx_shm_zone_t *shm_zone) noexcept {
    return static_cast<ngx_http_resend_confirmation_zone_t *>(shm_zone->data);
}

ngx_http_resend_confirmation_limit_node_t *node_of(ngx_rbtree_node_t *node) noexcept {
    return reinterpret_cast<ngx_http_resend_confirmation_limit_node_t *>(&node->color);
}

ngx_rbtree_node_t *rbtree_node_of(ngx_queue_t *q) noexcept {
    auto *lr = ngx_queue_data(q, ngx_http_resend_confirmation_limit_node_t, queue);
    return reinterpret_cast<ngx_rbtree_node_t *>(reinterpret_cast<u_char *>(lr) -
                                                 offsetof(ngx_rbtree_node_t, color));
}

}  // namespace

// --- the rbtree ---------------------------------------------------------------

namespace {

void limit_insert(ngx_rbtree_node_t *temp, ngx_rbtree_node_t *node, ngx_rbtree_node_t *sentinel) noexcept {
    for (;;) {
        ngx_rbtree_node_t **p;
        if (node->key != temp->key) {
            p = node->key < temp->key ? &temp->left : &temp->right;
        } else {
            auto *a = node_of(node);
            auto *b = node_of(temp);
            p = ngx_memn2cmp(a->data, b->data, a->len, b->len) < 0 ? &temp->left : &temp->right;
        }
        if (*p == sentinel) {
            *p = node;
            break;
        }
        temp = *p;
    }
    node->parent = temp;
    node->left = sentinel;
    node->right = sentinel;
    ngx_rbt_red(node);
}

ngx_rbtree_node_t *limit_find(
    ngx_http_resend_confirmation_zone_t *zone, uint32_t hash, const u_char *key, size_t len) noexcept {
    ngx_rbtree_node_t *node = zone->sh->rbtree.root;
    ngx_rbtree_node_t *sentinel = zone->sh->rbtree.sentinel;
    while (node != sentinel) {
        if (hash != node->key) {
            node = hash < node->key ? node->left : node->right;
            continue;
        }
        auto *lr = node_of(node);
        ngx_int_t rc = ngx_memn2cmp(const_cast<u_char *>(key), lr->data, len, lr->len);
        if (rc == 0) return node;
        node = rc < 0 ? node->left : node->right;
    }
    return nullptr;
}

void limit_remove(ngx_http_resend_confirmation_zone_t *zone, ngx_queue_t *q) noexcept {
    ngx_rbtree_node_t *node = rbtree_node_of(q);
    ngx_queue_remove(q);
    ngx_rbtree_delete(&zone->sh->rbtree, node);
    ngx_slab_free_locked(zone->shpool, node);
    __atomic_store_n(&zone->sh->keys, zone->sh->keys - 1, __ATOMIC_RELAXED);
}

// Frees up to two least recently used keys that have gone idle: the
// zone's steady-state cleanup, a little on every insertion, as limit_req.
void limit_expire(ngx_http_resend_confirmation_zone_t *zone, int64_t now) noexcept {
    for (int n = 0; n < 2 && !ngx_queue_empty(&zone->sh->queue); ++n) {
        ngx_queue_t *q = ngx_queue_last(&zone->sh->queue);
        auto *lr = ngx_queue_data(q, ngx_http_resend_confirmation_limit_node_t, queue);
        if (!resend::bucket_idle({lr->excess, lr->last}, zone->rate, now)) return;
        limit_remove(zone, q);
    }
}

// A node for a new key. When the zone is full, the least recently used keys
// go, drained or not: a full zone forgets its oldest keys, it never fails.
ngx_rbtree_node_t *limit_alloc(ngx_http_resend_confirmation_zone_t *zone, size_t len) noexcept {
    size_t size = offsetof(ngx_rbtree_node_t, color) +
                  offsetof(ngx_http_resend_confirmation_limit_node_t, data) + len;
    for (;;) {
        auto *node = static_cast<ngx_rbtree_node_t *>(ngx_slab_alloc_locked(zone->shpool, size));
        if (node != nullptr || ngx_queue_empty(&zone->sh->queue)) return node;
        limit_remove(zone, ngx_queue_last(&zone->sh->queue));
        __atomic_fetch_add(&zone->sh->evictions, 1, __ATOMIC_RELAXED);
    }
}

}  // namespace

// --- keys ---------------------------------------------------------------------------

namespace {
// A request's key in a zone, as a node stores it.
struct limit_key {
    uint32_t hash;
    u_char len;
    u_char data[resend::keyed_hash_size];
};

// The zone's key for `r`; false when it is empty: such requests are not
// counted (as limit_req).
bool limit_key_of(ngx_http_request_t *r, ngx_http_resend_confirmation_zone_t *zone, limit_key *key) noexcept {
    ngx_str_t value;
    if (ngx_http_complex_value(r, &zone->key, &value) != NGX_OK || value.len == 0) return false;
    if (zone->phase == ngx_http_resend_confirmation_limit_phase_t::email ||
        value.len > resend::keyed_hash_size) {
        resend::keyed_digest digest =
            zone->hash.digest({reinterpret_cast<const char *>(value.data), value.len});
        ngx_memcpy(key->data, digest.data(), digest.size());
        key->len = static_cast<u_char>(digest.size());
    } else {
        ngx_memcpy(key->data, value.data, value.len);
        key->len = static_cast<u_char>(value.len);
    }
    key->hash = ngx_crc32_short(key->data, key->len);
    return true;
}

// A client zone's key that reaches $resend_confirmation_email through map
// or set reads it before the body is validated, always empty: the zone never
// applies. That is noticed when the key's evaluation evaluated the email
// variable (nginx keeps each variable's last evaluation in r->variables:
// limit_check clears it before and looks after), logged once per zone and
// worker, and no longer looked for. Only keys that read a changeable
// variable (watch_email) are watched: no other variable reads the email.
ngx_http_variable_value_t *
limit_watch_email(ngx_http_request_t *r, ngx_http_resend_confirmation_zone_t *zone) noexcept {
    if (!zone->watch_email) return nullptr;
    ngx_http_variable_value_t *email = &r->variables[zone->email_index];
    email->valid = 0;
    email->not_found = 0;
    return email;
}

void limit_email_read_early(ngx_http_request_t *r, ngx_http_resend_confirmation_zone_t *zone) noexcept {
    zone->watch_email = false;
    ngx_log_error(NGX_LOG_WARN, r->connection->log, 0,
                  "resend_confirmation: the key of zone \"%V\" reads "
                  "$resend_confirmation_email before the body is read; add "
                  "\"after_validation\" to its resend_confirmation_limit_zone",
                  &zone->name);
}

}  // namespace

// --- checking ------------------------------------------------------------------------

namespace {
// What one zone says about one request.
struct take_result {
    bool allowed;
    uint64_t excess;         // what the request made it (over the limit when refused), for the log
    uint64_t retry_after_ms;
};

take_result limit_take(ngx_http_resend_confirmation_zone_t *zone,
                       const limit_key &key, ngx_uint_t burst,
                       bool count) noexcept {
    auto now = static_cast<int64_t>(ngx_current_msec);
    ngx_shmtx_lock(&zone->shpool->mutex);

    ngx_rbtree_node_t *node = limit_find(zone, key.hash, key.data, key.len);
    resend::bucket current = resend::bucket_first(now);
    resend::bucket_verdict verdict{true, current, 0, 0};
    if (node != nullptr) {
        auto *lr = node_of(node);
        current = {lr->excess, lr->last};
        ngx_queue_remove(&lr->queue);
        ngx_queue_insert_head(&zone->sh->queue, &lr->queue);
        verdict = resend::bucket_take(current, zone->rate, burst, now);
    }

    if (verdict.allowed && count) {
        if (node == nullptr) {
            limit_expire(zone, now);
            node = limit_alloc(zone, key.len);
            if (node != nullptr) {
                node->key = key.hash;
                auto *lr = node_of(node);
                lr->len = key.len;
                ngx_memcpy(lr->data, key.data, key.len);
                ngx_rbtree_insert(&zone->sh->rbtree, node);
                ngx_queue_insert_head(&zone->sh->queue, &lr->queue);
                __atomic_store_n(&zone->sh->keys, zone->sh->keys + 1, __ATOMIC_RELAXED);
            }
        }
        if (node != nullptr) {
            auto *lr = node_of(node);
            lr->excess = verdict.next.excess;
            lr->last = verdict.next.last;
        }
    }
    ngx_shmtx_unlock(&zone->shpool->mutex);
    return {verdict.allowed, verdict.excess, verdict.retry_after_ms};
}

// Gives back what `charges` counted (keys no longer in the zone are skipped).
void limit_give_back(const ngx_http_resend_confirmation_charge_t *charges, ngx_uint_t n) noexcept {
    for (ngx_uint_t i = 0; i < n; ++i) {
        const ngx_http_resend_confirmation_charge_t &charge = charges[i];
        auto *zone = zone_of(charge.shm_zone);
        ngx_shmtx_lock(&zone->shpool->mutex);
        ngx_rbtree_node_t *node =
            limit_find(zone, charge.hash, charge.key, charge.key_len);
        if (node != nullptr) {
            auto *lr = node_of(node);
            std::optional<resend::bucket> back = resend::bucket_refund({lr->excess, lr->last});
            if (back) {
                lr->excess = back->excess;
            } else {
                limit_remove(zone, &lr->queue);
            }
        }
        ngx_shmtx_unlock(&zone->shpool->mutex);
    }
}

}  // namespace

ngx_http_resend_confirmation_limit_verdict_t ngx_http_resend_confirmation_limit_check(ngx_http_request_t *r,
                                                       ngx_http_resend_confirmation_ctx_t *ctx,
                                                       ngx_http_resend_confirmation_limit_phase_t phase) noexcept {
    auto *lcf = ngx_http_resend_confirmation_loc_conf(r);
    ngx_http_resend_confirmation_limit_verdict_t verdict{ngx_http_resend_confirmation_limit_verdict_t::passed, 0};
    if (lcf->limits == nullptr) return verdict;

    auto *limits = static_cast<ngx_http_resend_confirmation_limit_t *>(lcf->limits->elts);
    ngx_http_resend_confirmation_charge_t *charges = nullptr;  // allocated at the first count
    ngx_uint_t ncharges = 0;

    for (ngx_uint_t i = 0; i < lcf->limits->nelts; ++i) {
        ngx_http_resend_confirmation_limit_t &limit = limits[i];
        auto *zone = zone_of(limit.shm_zone);
        if (zone->phase != phase) continue;

        limit_key key;
        ngx_http_variable_value_t *email = limit_watch_email(r, zone);
        bool has_key = limit_key_of(r, zone, &key);
        if (email != nullptr && (email->valid || email->not_found)) {
            limit_email_read_early(r, zone);
        }
        if (!has_key) continue;

        // Once a limit refuses, later ones are looked at but not counted.
        bool count = verdict.result == ngx_http_resend_confirmation_limit_verdict_t::passed || lcf->limit_dry_run;
        take_result taken = limit_take(zone, key, limit.burst, count);
        if (taken.allowed) {
            if (count && charges == nullptr) {
                charges = static_cast<ngx_http_resend_confirmation_charge_t *>(ngx_palloc(
                    r->pool, lcf->limits->nelts * sizeof(ngx_http_resend_confirmation_charge_t)));
            }
            if (count && charges != nullptr) {  // out of memory: counted, never given back
                charges[ncharges] = {limit.shm_zone, key.hash, key.len, {}};
                ngx_memcpy(charges[ncharges].key, key.data, key.len);
                ++ncharges;
            }
            continue;
        }

        __atomic_fetch_add(limit.silent ? &zone_of(limit.shm_zone)->sh->silenced
                                         : &zone_of(limit.shm_zone)->sh->refused,
                           1, __ATOMIC_RELAXED);
        ngx_log_error(lcf->limit_log_level, r->connection->log, 0,
                      "resend_confirmation: %s%s by zone \"%V\", excess: %uL.%03uL",
                      lcf->limit_dry_run ? "dry run, " : "",
                      limit.silent ? "silencing requests" : "limiting requests",
                      &limit.shm_zone->shm.name, taken.excess / 1000, taken.excess % 1000);
        if (lcf->limit_dry_run) {
            ctx->dry_run_limited = 1;
            continue;
        }
        if (!limit.silent) {
            verdict.result = ngx_http_resend_confirmation_limit_verdict_t::refused;
            ngx_uint_t seconds = static_cast<ngx_uint_t>((taken.retry_after_ms + 999) / 1000);
            verdict.retry_after = ngx_max(verdict.retry_after, ngx_max(seconds, (ngx_uint_t) 1));
        } else if (verdict.result == ngx_http_resend_confirmation_limit_verdict_t::passed) {
            verdict.result = ngx_http_resend_confirmation_limit_verdict_t::silenced;
        }
    }

    if (verdict.result != ngx_http_resend_confirmation_limit_verdict_t::passed) {
        // Refused after all: what the passing limits counted goes back.
        limit_give_back(charges, ncharges);
    } else if (phase == ngx_http_resend_confirmation_limit_phase_t::email) {
        ctx->charges = charges;
        ctx->ncharges = ncharges;
    }
    return verdict;
}

void ngx_http_resend_confirmation_limit_refund(ngx_http_resend_confirmation_ctx_t *ctx) noexcept {
    limit_give_back(ctx->charges, ctx->ncharges);
    ctx->ncharges = 0;
}

// --- shared memory -------------------------------------------------------------------

namespace {

// A zone's size can change only with a restart: nginx would silently start
// an empty zone, and every counter would be lost on reload.
bool limit_resized(ngx_shm_zone_t *shm_zone) noexcept {
    // ngx_cycle is still the running (old) cycle while a reload sets up zones.
    auto *running = const_cast<ngx_cycle_t *>(ngx_cycle);
    for (ngx_list_part_t *part = &running->shared_memory.part; part != nullptr; part = part->next) {
        auto *old = static_cast<ngx_shm_zone_t *>(part->elts);
        for (ngx_uint_t i = 0; i < part->nelts; ++i) {
            if (old[i].tag != shm_zone->tag || old[i].shm.size == shm_zone->shm.size ||
                old[i].shm.name.len != shm_zone->shm.name.len ||
                ngx_strncmp(old[i].shm.name.data, shm_zone->shm.name.data, old[i].shm.name.len) != 0) {
                continue;
            }
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "resend_confirmation_limit_zone \"%V\" was %uz bytes and is now %uz: "
                          "a zone's size changes only with a restart, not a reload",
                          &shm_zone->shm.name, old[i].shm.size, shm_zone->shm.size);
            return true;
        }
    }
    return false;
}

// The HMAC key of this configuration's email keys, kept in process memory:
// the configured secret, else the zone's random one. Nothing is written to
// the shared zone, so a reload that fails later leaves it as it was.
void limit_set_secret(ngx_http_resend_confirmation_zone_t *zone) noexcept {
    ngx_str_t &configured = zone->mcf->limit_secret;
    if (configured.len != 0) {
        zone->hash.set_secret({reinterpret_cast<const char *>(configured.data), configured.len});
    } else {
        zone->hash.set_secret({reinterpret_cast<const char *>(zone->sh->secret), secret_size});
    }
}

// True when a client zone's key reads a changeable variable (map, set, and
// the like), through which it may reach the email. nginx has resolved every
// variable's flags by the time zones are set up.
bool limit_may_read_email(const ngx_http_resend_confirmation_zone_t *zone) noexcept {
    if (zone->phase != ngx_http_resend_confirmation_limit_phase_t::client ||
        zone->key.flushes == nullptr) {
        return false;
    }
    auto *variables = static_cast<ngx_http_variable_t *>(zone->cmcf->variables.elts);
    for (ngx_uint_t *v = zone->key.flushes; *v != static_cast<ngx_uint_t>(-1); ++v) {
        if (variables[*v].flags & NGX_HTTP_VAR_CHANGEABLE) return true;
    }
    return false;
}

}  // namespace

ngx_int_t ngx_http_resend_confirmation_limit_init_zone(ngx_shm_zone_t *shm_zone,
                                                       void *data) noexcept {
    auto *zone = zone_of(shm_zone);
    zone->watch_email = limit_may_read_email(zone);
    auto *old = static_cast<ngx_http_resend_confirmation_zone_t *>(data);

    if (old != nullptr) {
        if (zone->key.value.len != old->key.value.len ||
            ngx_strncmp(zone->key.value.data, old->key.value.data, zone->key.value.len) != 0) {
            ngx_log_error(NGX_LOG_EMERG, shm_zone->shm.log, 0,
                          "resend_confirmation_limit_zone \"%V\" uses the \"%V\" key while "
                          "previously it used the \"%V\" key: a zone's key changes only with a "
                          "restart, not a reload",
                          &shm_zone->shm.name, &zone->key.value, &old->key.value);
            return NGX_ERROR;
        }
        zone->sh = old->sh;
        zone->shpool = old->shpool;
        limit_set_secret(zone);
        return NGX_OK;
    }
    if (limit_resized(shm_zone)) return NGX_ERROR;

    zone->shpool = reinterpret_cast<ngx_slab_pool_t *>(shm_zone->shm.addr);
    if (shm_zone->shm.exists) {
        zone->sh = static_cast<ngx_http_resend_confirmation_limit_shctx_t *>(zone->shpool->data);
        limit_set_secret(zone);
        return NGX_OK;
    }

    zone->sh = static_cast<ngx_http_resend_confirmation_limit_shctx_t *>(
        ngx_slab_alloc(zone->shpool, sizeof(ngx_http_resend_confirmation_limit_shctx_t)));
    if (zone->sh == nullptr) return NGX_ERROR;
    zone->shpool->data = zone->sh;
    ngx_rbtree_init(&zone->sh->rbtree, &zone->sh->sentinel,
                    limit_insert);
    ngx_queue_init(&zone->sh->queue);
    // No secret configured: a random one, kept in the zone so that reloads
    // keep it (a restart makes a new one, and forgets every email's count).
    if (RAND_bytes(zone->sh->secret, secret_size) != 1) return NGX_ERROR;
    limit_set_secret(zone);

    // A full zone is normal here (we evict): no [crit] "no memory" lines.
    zone->shpool->log_nomem = 0;
    static const char log_ctx_format[] = " in resend_confirmation zone \"%V\"";
    size_t len = sizeof(log_ctx_format) + shm_zone->shm.name.len;
    zone->shpool->log_ctx = static_cast<u_char *>(ngx_slab_alloc(zone->shpool, len));
    if (zone->shpool->log_ctx == nullptr) return NGX_ERROR;
    *ngx_sprintf(zone->shpool->log_ctx, log_ctx_format, &shm_zone->shm.name) = '\0';
    return NGX_OK;
}

bool ngx_http_resend_confirmation_limit_stats(ngx_shm_zone_t *shm_zone,
                                              ngx_http_resend_confirmation_zone_stats_t *stats) noexcept {
    if (shm_zone->init != ngx_http_resend_confirmation_limit_init_zone) return false;
    auto *zone = zone_of(shm_zone);
    if (zone == nullptr || zone->sh == nullptr) return false;
    stats->keys = __atomic_load_n(&zone->sh->keys, __ATOMIC_RELAXED);
    stats->evictions = __atomic_load_n(&zone->sh->evictions, __ATOMIC_RELAXED);
    stats->refused = __atomic_load_n(&zone->sh->refused, __ATOMIC_RELAXED);
    stats->silenced = __atomic_load_n(&zone->sh->silenced, __ATOMIC_RELAXED);
    return true;
}
