// Metrics: counters in one shared-memory zone, exact across workers and
// kept across reloads, and `resend_confirmation_metrics;`, the handler that
// answers them in Prometheus text format. Decides what is counted where:
// requests by location name and outcome (log phase), and per Redis address
// the link's connects, failures, timeouts, refusals, commands in flight,
// whether each worker's link is up, and reply times.
//
// The zone holds plain structs only. Names (locations, Redis addresses) get
// their slot when the configuration is loaded, in the master, before any
// worker of that configuration runs: workers only add to counters (atomic,
// relaxed) and never allocate. A reload finds the names it had and keeps
// their counts. Per-worker gauges (link up, commands in flight) live in a
// slot each worker claims at start and gives back at exit, so that old
// workers finishing after a reload and a respawned crashed worker do not
// mix their numbers.

#include "ngx_http_resend_confirmation.h"
#include "limit/ngx_http_resend_confirmation_limit.h"
#include "metrics/ngx_http_resend_confirmation_metrics.h"
#include "spool/ngx_http_resend_confirmation_spool.h"

#include <atomic>
#include <cerrno>
#include <csignal>

#include "core/prometheus.hpp"
#include "core/shared_limit.hpp"

namespace {

constexpr std::size_t name_capacity = 128;
constexpr std::size_t max_locations = 128;
constexpr std::size_t max_targets = 64;
constexpr std::size_t max_worker_slots = 128;
constexpr std::size_t max_refusal_words = 8;
constexpr std::size_t refusal_word_capacity = 16;
constexpr std::size_t outcome_count = static_cast<std::size_t>(resend::outcome::count_);

// Reply time buckets (upper bounds, ms): Redis answers in well under 1 ms
// when healthy; timeouts are seconds.
constexpr std::uint64_t reply_bounds_ms[] = {1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000};
constexpr std::size_t reply_bound_count = sizeof(reply_bounds_ms) / sizeof(reply_bounds_ms[0]);

struct metrics_name {
    std::uint32_t len;
    char text[name_capacity];
    std::string_view view() const noexcept { return {text, len}; }
};

struct location_counters {
    metrics_name name;
    std::uint64_t outcomes[outcome_count];
};

struct refusal_counter {
    std::uint32_t len;  // 0: free
    char word[refusal_word_capacity];
    std::uint64_t count;
};

struct target_counters {
    metrics_name name;
    std::uint64_t connects;
    std::uint64_t connect_failures;
    std::uint64_t timeouts;
    refusal_counter refusals[max_refusal_words];
    std::uint64_t refusals_other;  // once every word slot is taken
    std::uint64_t reply_buckets[reply_bound_count + 1];
    std::uint64_t reply_sum_ms;
};

struct worker_slot {
    ngx_pid_t pid;  // 0: free
    std::uint8_t up[max_targets];
    std::uint32_t in_flight[max_targets];
};

// What the shared-limit script answered, indexed by resend::shared_limit_answer's result.
constexpr std::string_view shared_limit_results[] = {"recorded", "silenced", "dry_run_limited"};
static_assert(resend::shared_limit_answer::recorded == 0 && resend::shared_limit_answer::silenced == 1 &&
              resend::shared_limit_answer::dry_run_limited == 2);

struct metrics_zone {
    std::uint32_t nlocations;
    std::uint32_t ntargets;
    std::uint64_t shared_limit[std::size(shared_limit_results)];
    location_counters locations[max_locations];
    target_counters targets[max_targets];
    worker_slot workers[max_worker_slots];
};

static_assert(std::is_trivially_destructible_v<metrics_zone>);

ngx_str_t zone_name = ngx_string("resend_confirmation_metrics");

// This worker's slot, claimed at start.
worker_slot *own_slot;

template <typename T>
void add(T &counter, T value) noexcept {
    __atomic_fetch_add(&counter, value, __ATOMIC_RELAXED);
}

template <typename T>
T read(const T &counter) noexcept {
    return __atomic_load_n(&counter, __ATOMIC_RELAXED);
}

void set_name(metrics_name &name, const ngx_str_t &text) noexcept {
    name.len = text.len < name_capacity ? text.len : name_capacity;
    ngx_memcpy(name.text, text.data, name.len);
}

bool same_name(const metrics_name &name, const ngx_str_t &text) noexcept {
    std::size_t len = text.len < name_capacity ? text.len : name_capacity;
    return name.len == len && ngx_memcmp(name.text, text.data, len) == 0;
}

}  // namespace

// What the configuration keeps for one named location or Redis address:
// its counters in the zone, found when the zone is initialised.
struct ngx_http_resend_confirmation_metrics_ref_s {
    ngx_str_t name;
    bool is_location;
    std::uint32_t index;  // in the zone's table; valid when counters is set
    void *counters;       // location_counters or target_counters; null: not counted
};

namespace {

ngx_int_t metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data) noexcept;

// The zone, added once per configuration by its first user.
ngx_int_t metrics_add_zone(ngx_conf_t *cf) noexcept {
    ngx_http_resend_confirmation_main_conf_t *mcf = ngx_http_resend_confirmation_conf_main_conf(cf);
    if (mcf->metrics_zone != nullptr) return NGX_OK;
    // Whole pages for the struct, and room for the slab pool's own pages.
    size_t size = ngx_align(sizeof(metrics_zone), ngx_pagesize) + 8 * ngx_pagesize;
    ngx_shm_zone_t *zone = ngx_shared_memory_add(cf, &zone_name, size,
                                                 &ngx_http_resend_confirmation_module);
    if (zone == nullptr) return NGX_ERROR;
    if (ngx_array_init(&mcf->metrics_refs, cf->pool, 8,
                       sizeof(ngx_http_resend_confirmation_metrics_ref_t *)) != NGX_OK) {
        return NGX_ERROR;
    }
    zone->init = metrics_init_zone;
    zone->data = mcf;
    mcf->metrics_zone = zone;
    return NGX_OK;
}

}  // namespace

ngx_http_resend_confirmation_metrics_ref_t *
ngx_http_resend_confirmation_metrics_ref(ngx_conf_t *cf, const ngx_str_t &name,
                                         bool is_location) noexcept {
    if (metrics_add_zone(cf) != NGX_OK) return nullptr;
    auto *ref = static_cast<ngx_http_resend_confirmation_metrics_ref_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_metrics_ref_t)));
    auto **slot = static_cast<ngx_http_resend_confirmation_metrics_ref_t **>(
        ngx_array_push(&ngx_http_resend_confirmation_conf_main_conf(cf)->metrics_refs));
    if (ref == nullptr || slot == nullptr) return nullptr;
    ref->name = name;
    ref->is_location = is_location;
    *slot = ref;
    return ref;
}

namespace {

// Finds `name` in a table of `count` entries, or adds it (master only).
template <typename Counters, std::size_t capacity>
Counters *bind(Counters (&table)[capacity], std::uint32_t &count, const ngx_str_t &name,
               std::uint32_t *index) noexcept {
    for (std::uint32_t i = 0; i < count; ++i) {
        if (same_name(table[i].name, name)) {
            *index = i;
            return &table[i];
        }
    }
    if (count == capacity) return nullptr;
    set_name(table[count].name, name);
    *index = count;
    // Published after the name is written: a worker scraping meanwhile
    // sees the whole entry or none of it.
    __atomic_store_n(&count, count + 1, __ATOMIC_RELEASE);
    return &table[*index];
}

ngx_int_t metrics_init_zone(ngx_shm_zone_t *shm_zone, void *data) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(shm_zone->data);
    auto *pool = reinterpret_cast<ngx_slab_pool_t *>(shm_zone->shm.addr);
    metrics_zone *zone;
    if (data != nullptr) {
        // A reload: the counters go on.
        zone = static_cast<metrics_zone *>(static_cast<ngx_http_resend_confirmation_main_conf_t *>(data)->metrics);
    } else if (shm_zone->shm.exists) {
        zone = static_cast<metrics_zone *>(pool->data);
    } else {
        zone = static_cast<metrics_zone *>(ngx_slab_calloc(pool, sizeof(metrics_zone)));
        if (zone == nullptr) return NGX_ERROR;
        pool->data = zone;
    }
    mcf->metrics = zone;

    auto **refs = static_cast<ngx_http_resend_confirmation_metrics_ref_t **>(mcf->metrics_refs.elts);
    for (ngx_uint_t i = 0; i < mcf->metrics_refs.nelts; ++i) {
        ngx_http_resend_confirmation_metrics_ref_t *ref = refs[i];
        ref->counters = ref->is_location
                            ? static_cast<void *>(bind(zone->locations, zone->nlocations, ref->name, &ref->index))
                            : static_cast<void *>(bind(zone->targets, zone->ntargets, ref->name, &ref->index));
        if (ref->counters == nullptr) {
            ngx_log_error(NGX_LOG_WARN, shm_zone->shm.log, 0,
                          "resend_confirmation: more than %uz metrics names, \"%V\" is not counted",
                          ref->is_location ? max_locations : max_targets, &ref->name);
        }
    }
    return NGX_OK;
}

}  // namespace

// --- workers ---------------------------------------------------------------------

void ngx_http_resend_confirmation_metrics_worker_start(ngx_cycle_t *cycle) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_resend_confirmation_module));
    if (mcf == nullptr || mcf->metrics == nullptr) return;
    auto *zone = static_cast<metrics_zone *>(mcf->metrics);
    // A free slot, or one whose worker is gone (crashed, or killed).
    for (worker_slot &slot : zone->workers) {
        ngx_pid_t holder = __atomic_load_n(&slot.pid, __ATOMIC_ACQUIRE);
        if (holder != 0 && (kill(holder, 0) == 0 || errno != ESRCH)) continue;
        if (!__atomic_compare_exchange_n(&slot.pid, &holder, ngx_pid, false, __ATOMIC_ACQ_REL,
                                         __ATOMIC_ACQUIRE)) {
            continue;
        }
        ngx_memzero(slot.up, sizeof(slot.up));
        for (std::uint32_t &n : slot.in_flight) __atomic_store_n(&n, 0, __ATOMIC_RELAXED);
        own_slot = &slot;
        return;
    }
    ngx_log_error(NGX_LOG_WARN, cycle->log, 0,
                  "resend_confirmation: no metrics slot left for this worker: its links are not shown");
}

void ngx_http_resend_confirmation_metrics_worker_exit() noexcept {
    if (own_slot == nullptr) return;
    ngx_memzero(own_slot->up, sizeof(own_slot->up));
    ngx_memzero(own_slot->in_flight, sizeof(own_slot->in_flight));
    __atomic_store_n(&own_slot->pid, 0, __ATOMIC_RELEASE);
    own_slot = nullptr;
}

// --- counting ----------------------------------------------------------------------

namespace {

target_counters *target_of(ngx_http_resend_confirmation_metrics_ref_t *ref) noexcept {
    return ref == nullptr ? nullptr : static_cast<target_counters *>(ref->counters);
}

}  // namespace

void ngx_http_resend_confirmation_metrics_link(ngx_http_resend_confirmation_metrics_ref_t *ref,
                                               ngx_http_resend_confirmation_link_event_t event) noexcept {
    target_counters *target = target_of(ref);
    if (target == nullptr) return;
    switch (event) {
    case ngx_http_resend_confirmation_link_event_t::connected:
        // Links up, not a flag: a cluster has one per master under one name.
        add(target->connects, std::uint64_t{1});
        if (own_slot != nullptr) add(own_slot->up[ref->index], std::uint8_t{1});
        break;
    case ngx_http_resend_confirmation_link_event_t::connect_failed:
        add(target->connect_failures, std::uint64_t{1});
        break;
    case ngx_http_resend_confirmation_link_event_t::timed_out:
        add(target->timeouts, std::uint64_t{1});
        break;
    case ngx_http_resend_confirmation_link_event_t::closed:
        if (own_slot != nullptr && read(own_slot->up[ref->index]) > 0) {
            add(own_slot->up[ref->index], static_cast<std::uint8_t>(-1));
        }
        break;
    }
}

void ngx_http_resend_confirmation_metrics_in_flight(ngx_http_resend_confirmation_metrics_ref_t *ref,
                                                    ngx_int_t change) noexcept {
    if (target_of(ref) == nullptr || own_slot == nullptr) return;
    // Only this worker writes its slot; atomic so that a scrape reads whole values.
    add(own_slot->in_flight[ref->index], static_cast<std::uint32_t>(change));
}

void ngx_http_resend_confirmation_metrics_reply_time(ngx_http_resend_confirmation_metrics_ref_t *ref,
                                                     ngx_msec_t elapsed) noexcept {
    target_counters *target = target_of(ref);
    if (target == nullptr) return;
    add(target->reply_buckets[resend::histogram_bucket(reply_bounds_ms, reply_bound_count, elapsed)],
        std::uint64_t{1});
    add(target->reply_sum_ms, static_cast<std::uint64_t>(elapsed));
}

void ngx_http_resend_confirmation_metrics_refusal(ngx_http_resend_confirmation_metrics_ref_t *ref,
                                                  std::string_view error) noexcept {
    target_counters *target = target_of(ref);
    if (target == nullptr) return;
    // The error's first word (OOM, LOADING, READONLY, NOAUTH, ERR...), made
    // safe for a label: letters, digits and '_' only, at most 15 bytes.
    char word[refusal_word_capacity];
    std::uint32_t len = 0;
    for (char c : error) {
        if (c == ' ' || len == refusal_word_capacity - 1) break;
        bool plain = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
        word[len++] = plain ? c : '_';
    }
    if (len == 0) word[len++] = '_';
    for (refusal_counter &counter : target->refusals) {
        std::uint32_t taken = __atomic_load_n(&counter.len, __ATOMIC_ACQUIRE);
        if (taken == 0) {
            // Claim the free slot: its word is written before its length is
            // published (a racing worker with another word moves on).
            std::uint32_t expected = 0;
            if (__atomic_compare_exchange_n(&counter.len, &expected, UINT32_MAX, false,
                                            __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE)) {
                ngx_memcpy(counter.word, word, len);
                __atomic_store_n(&counter.len, len, __ATOMIC_RELEASE);
                add(counter.count, std::uint64_t{1});
                return;
            }
            taken = expected;
        }
        if (taken == len && ngx_memcmp(counter.word, word, len) == 0) {
            add(counter.count, std::uint64_t{1});
            return;
        }
    }
    add(target->refusals_other, std::uint64_t{1});
}

// --- the scrape --------------------------------------------------------------------

namespace {

// Sum of one per-worker gauge over the workers alive.
template <typename Field>
std::uint64_t worker_sum(const metrics_zone &zone, std::uint32_t index, Field field) noexcept {
    std::uint64_t sum = 0;
    for (const worker_slot &slot : zone.workers) {
        if (__atomic_load_n(&slot.pid, __ATOMIC_ACQUIRE) == 0) continue;
        sum += field(slot, index);
    }
    return sum;
}

void write_spool_metrics(resend::prometheus_text &out,
                         const ngx_http_resend_confirmation_spool_stats_t &spool) noexcept {
    if (!spool.configured) return;
    auto one = [&](std::string_view name, std::string_view type, std::string_view help, std::uint64_t value) {
        out.family(name, type, help);
        out.sample(name, {}, value);
    };
    one("resend_confirmation_spool_bytes", "gauge", "Bytes of spool segment files on disk.", spool.bytes);
    one("resend_confirmation_spool_records", "gauge", "Records kept in the spool and not yet acknowledged by Redis.",
        spool.records);
    out.family("resend_confirmation_spool_oldest_seconds", "gauge",
               "Age of the oldest spool segment (at least that of its oldest waiting record); 0 when empty.");
    out.sample_ms_as_seconds("resend_confirmation_spool_oldest_seconds", {}, spool.oldest_ms);
    one("resend_confirmation_spool_replayed_total", "counter", "Spooled records acknowledged by Redis on replay.",
        spool.replayed);
    one("resend_confirmation_spool_corrupt_total", "counter",
        "Damaged stretches of spool segments skipped or cut off, and damaged headers.", spool.corrupt);
}

// The rate-limit zones of the running configuration, from their own
// shared memory (limit.cpp keeps the numbers).
void write_zone_metrics(resend::prometheus_text &out) noexcept {
    struct family {
        std::string_view name, type, help;
        std::uint64_t ngx_http_resend_confirmation_zone_stats_t::*value;
    };
    static const family families[] = {
        {"resend_confirmation_zone_keys", "gauge", "Keys a rate-limit zone holds.",
         &ngx_http_resend_confirmation_zone_stats_t::keys},
        {"resend_confirmation_zone_evictions_total", "counter",
         "Keys a full zone forgot before they drained, to make room.",
         &ngx_http_resend_confirmation_zone_stats_t::evictions},
        {"resend_confirmation_zone_refused_total", "counter",
         "Requests over a non-silent limit of the zone (dry runs included).",
         &ngx_http_resend_confirmation_zone_stats_t::refused},
        {"resend_confirmation_zone_silenced_total", "counter",
         "Requests over a silent limit of the zone (dry runs included).",
         &ngx_http_resend_confirmation_zone_stats_t::silenced},
    };
    // ngx_cycle is volatile (it changes on reload); this worker's cycle does not.
    auto *cycle = const_cast<ngx_cycle_t *>(ngx_cycle);
    for (const family &f : families) {
        out.family(f.name, f.type, f.help);
        for (ngx_list_part_t *part = &cycle->shared_memory.part; part != nullptr; part = part->next) {
            auto *zones = static_cast<ngx_shm_zone_t *>(part->elts);
            for (ngx_uint_t i = 0; i < part->nelts; ++i) {
                ngx_http_resend_confirmation_zone_stats_t stats;
                if (zones[i].tag != &ngx_http_resend_confirmation_module ||
                    !ngx_http_resend_confirmation_limit_stats(&zones[i], &stats)) {
                    continue;
                }
                std::string_view name(reinterpret_cast<const char *>(zones[i].shm.name.data),
                                      zones[i].shm.name.len);
                out.sample(f.name, {{"zone", name}}, stats.*f.value);
            }
        }
    }
}

// Requests by location and outcome.
void write_request_metrics(resend::prometheus_text &out, const metrics_zone &zone) noexcept {
    std::uint32_t nlocations = __atomic_load_n(&zone.nlocations, __ATOMIC_ACQUIRE);
    out.family("resend_confirmation_requests_total", "counter",
               "Requests answered by the module, by location and outcome ($resend_confirmation_outcome).");
    for (std::uint32_t i = 0; i < nlocations; ++i) {
        const location_counters &location = zone.locations[i];
        for (std::size_t o = 1; o < outcome_count; ++o) {
            out.sample("resend_confirmation_requests_total",
                       {{"location", location.name.view()},
                        {"outcome", resend::answer_for(static_cast<resend::outcome>(o)).word}},
                       read(location.outcomes[o]));
        }
    }
}

// The Redis links' gauges and counters, one sample per Redis address.
void write_link_metrics(resend::prometheus_text &out, const metrics_zone &zone, std::uint32_t ntargets) noexcept {
    auto each_target = [&](std::string_view name, std::string_view type, std::string_view help,
                           auto value) {
        out.family(name, type, help);
        for (std::uint32_t i = 0; i < ntargets; ++i) {
            out.sample(name, {{"redis", zone.targets[i].name.view()}}, value(i));
        }
    };
    each_target("resend_confirmation_redis_up", "gauge",
                "Links to this Redis connected and ready: one per worker (with cluster, one per worker and master).", [&](std::uint32_t i) {
                    return worker_sum(zone, i, [](const worker_slot &s, std::uint32_t t) -> std::uint64_t {
                        return __atomic_load_n(&s.up[t], __ATOMIC_RELAXED);
                    });
                });
    each_target("resend_confirmation_redis_connects_total", "counter",
                "Connections made and accepted (TLS, AUTH, SELECT done).",
                [&](std::uint32_t i) { return read(zone.targets[i].connects); });
    each_target("resend_confirmation_redis_connect_failures_total", "counter",
                "Connections that failed before they were ready (connect, TLS, AUTH or SELECT).",
                [&](std::uint32_t i) { return read(zone.targets[i].connect_failures); });
    each_target("resend_confirmation_redis_timeouts_total", "counter",
                "Times a command waited past the timeout and the link was closed.",
                [&](std::uint32_t i) { return read(zone.targets[i].timeouts); });
    each_target("resend_confirmation_redis_commands_in_flight", "gauge",
                "Commands written or queued and not yet answered, over all workers.", [&](std::uint32_t i) {
                    return worker_sum(zone, i, [](const worker_slot &s, std::uint32_t t) -> std::uint64_t {
                        return __atomic_load_n(&s.in_flight[t], __ATOMIC_RELAXED);
                    });
                });
}

// Error replies by Redis address and the error's first word.
void write_refusal_metrics(resend::prometheus_text &out, const metrics_zone &zone, std::uint32_t ntargets) noexcept {
    out.family("resend_confirmation_redis_refusals_total", "counter",
               "Error replies from Redis, by the error's first word.");
    for (std::uint32_t i = 0; i < ntargets; ++i) {
        const target_counters &target = zone.targets[i];
        for (const refusal_counter &counter : target.refusals) {
            std::uint32_t len = __atomic_load_n(&counter.len, __ATOMIC_ACQUIRE);
            if (len == 0 || len == UINT32_MAX) continue;
            out.sample("resend_confirmation_redis_refusals_total",
                       {{"redis", target.name.view()}, {"error", {counter.word, len}}}, read(counter.count));
        }
        std::uint64_t other = read(target.refusals_other);
        if (other != 0) {
            out.sample("resend_confirmation_redis_refusals_total",
                       {{"redis", target.name.view()}, {"error", "other"}}, other);
        }
    }
}

// What the fleet-wide limit script answered.
void write_shared_limit_metrics(resend::prometheus_text &out, const metrics_zone &zone) noexcept {
    out.family("resend_confirmation_shared_limit_total", "counter",
               "What the fleet-wide limit script answered, over every location of this node.");
    for (std::size_t i = 0; i < std::size(shared_limit_results); ++i) {
        out.sample("resend_confirmation_shared_limit_total", {{"result", shared_limit_results[i]}},
                   read(zone.shared_limit[i]));
    }
}

// Redis's reply times, a histogram per Redis address.
void write_reply_time_metrics(resend::prometheus_text &out, const metrics_zone &zone, std::uint32_t ntargets) noexcept {
    out.family("resend_confirmation_redis_reply_seconds", "histogram",
               "Time from writing a command to Redis's reply.");
    for (std::uint32_t i = 0; i < ntargets; ++i) {
        const target_counters &target = zone.targets[i];
        std::uint64_t buckets[reply_bound_count + 1];
        for (std::size_t b = 0; b <= reply_bound_count; ++b) buckets[b] = read(target.reply_buckets[b]);
        out.histogram_ms("resend_confirmation_redis_reply_seconds", {{"redis", target.name.view()}},
                         reply_bounds_ms, reply_bound_count, buckets, read(target.reply_sum_ms));
    }
}

void write_metrics(resend::prometheus_text &out, const metrics_zone &zone) noexcept {
    std::uint32_t ntargets = __atomic_load_n(&zone.ntargets, __ATOMIC_ACQUIRE);
    write_request_metrics(out, zone);
    write_link_metrics(out, zone, ntargets);
    write_refusal_metrics(out, zone, ntargets);
    write_shared_limit_metrics(out, zone);
    write_zone_metrics(out);
    write_reply_time_metrics(out, zone, ntargets);
}

ngx_int_t metrics_handler(ngx_http_request_t *r) noexcept {
    if (!(r->method & (NGX_HTTP_GET | NGX_HTTP_HEAD))) return NGX_HTTP_NOT_ALLOWED;
    ngx_int_t rc = ngx_http_discard_request_body(r);
    if (rc != NGX_OK) return rc;

    auto *mcf = ngx_http_resend_confirmation_main_conf(r);
    // Counted first, then written into one buffer of that size; names added
    // by a reload in between are left for the next scrape.
    auto *zone = static_cast<const metrics_zone *>(mcf->metrics);
    ngx_http_resend_confirmation_spool_stats_t spool = ngx_http_resend_confirmation_spool_stats(mcf);
    resend::prometheus_text counting(nullptr, 0);
    if (zone != nullptr) write_metrics(counting, *zone);
    write_spool_metrics(counting, spool);
    size_t capacity = counting.size();
    u_char *text = capacity != 0 ? static_cast<u_char *>(ngx_pnalloc(r->pool, capacity)) : nullptr;
    if (capacity != 0 && text == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    resend::prometheus_text writing(reinterpret_cast<char *>(text), capacity);
    if (zone != nullptr) write_metrics(writing, *zone);
    write_spool_metrics(writing, spool);
    size_t size = writing.size() < capacity ? writing.size() : capacity;

    static ngx_str_t content_type = ngx_string("text/plain; version=0.0.4; charset=utf-8");
    r->headers_out.status = NGX_HTTP_OK;
    r->headers_out.content_type = content_type;
    r->headers_out.content_type_len = content_type.len;
    r->headers_out.content_length_n = size;
    rc = ngx_http_send_header(r);
    if (rc == NGX_ERROR || rc > NGX_OK || r->header_only || size == 0) return rc;

    ngx_buf_t *b = static_cast<ngx_buf_t *>(ngx_calloc_buf(r->pool));
    if (b == nullptr) return NGX_HTTP_INTERNAL_SERVER_ERROR;
    b->pos = text;
    b->last = text + size;
    b->memory = 1;
    b->last_buf = (r == r->main) ? 1 : 0;
    b->last_in_chain = 1;
    ngx_chain_t out = {b, nullptr};
    return ngx_http_output_filter(r, &out);
}

}  // namespace

// `resend_confirmation_metrics;`: this location answers the counters.
char *ngx_http_resend_confirmation_metrics_directive(ngx_conf_t *cf, ngx_command_t *, void *) noexcept {
    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (clcf->handler != nullptr) return const_cast<char *>("is duplicate");
    if (metrics_add_zone(cf) != NGX_OK) return static_cast<char *>(NGX_CONF_ERROR);
    clcf->handler = metrics_handler;
    return NGX_CONF_OK;
}

namespace {

// Log phase: every request the module answered counts once, under its
// location's name and outcome.
ngx_int_t metrics_log(ngx_http_request_t *r) noexcept {
    auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
    if (ctx == nullptr || r != r->main) return NGX_OK;
    ngx_http_resend_confirmation_metrics_ref_t *ref = ngx_http_resend_confirmation_loc_conf(r)->metrics;
    if (ref == nullptr || ref->counters == nullptr || ctx->outcome == resend::outcome::none ||
        ctx->stage == ngx_http_resend_confirmation_stage_t::draining) {
        return NGX_OK;
    }
    add(static_cast<location_counters *>(ref->counters)->outcomes[static_cast<std::size_t>(ctx->outcome)],
        std::uint64_t{1});
    return NGX_OK;
}

}  // namespace

ngx_int_t ngx_http_resend_confirmation_metrics_init(ngx_conf_t *cf) noexcept {
    auto *cmcf = static_cast<ngx_http_core_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));
    auto *h = static_cast<ngx_http_handler_pt *>(ngx_array_push(&cmcf->phases[NGX_HTTP_LOG_PHASE].handlers));
    if (h == nullptr) return NGX_ERROR;
    *h = metrics_log;
    return NGX_OK;
}

void ngx_http_resend_confirmation_metrics_shared_limit(ngx_uint_t result) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(ngx_http_cycle_get_module_main_conf(
        const_cast<ngx_cycle_t *>(ngx_cycle), ngx_http_resend_confirmation_module));
    if (mcf == nullptr || mcf->metrics == nullptr || result >= std::size(shared_limit_results)) return;
    add(static_cast<metrics_zone *>(mcf->metrics)->shared_limit[result], std::uint64_t{1});
}
