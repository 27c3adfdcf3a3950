// The `resend_confirmation_redis` directive, and this worker's links: one
// per directive (with `sentinel=`, to the master the Sentinels name; with
// `cluster`, the first seed's, which makes the others).
//
// resend_confirmation_redis ADDRESS [db=N] [user=NAME] [password=SECRET]
//                           [connect_timeout=TIME] [timeout=TIME] [replicas=N]
//                           [allow=CIDR,...]  (sentinel= and cluster)
//                           [tls [tls_verify=on|off] [tls_ca=FILE] [tls_cert=FILE tls_key=FILE]
//                                [tls_name=NAME]];
// resend_confirmation_redis sentinel=MASTER HOST:PORT... [sentinel_password=SECRET] [...as above];
// resend_confirmation_redis cluster HOST:PORT... [...as above but db=];

#include "redis/ngx_http_resend_confirmation_link.h"

namespace {

constexpr ngx_msec_t connect_timeout_default = 1000;
constexpr ngx_msec_t timeout_default = 1000;
// More than any deployment has: WAIT would wait for replicas that are not there.
constexpr ngx_uint_t max_replicas = 16;

ngx_http_resend_confirmation_link_t **worker_links;
ngx_uint_t worker_links_count;

// What the directive names before its parameters.
struct redis_target {
    ngx_str_t master;     // sentinel=MASTER
    bool sentinel, cluster;
    ngx_array_t *addresses;  // of ngx_addr_t: the Sentinels' or the nodes'; null for one Redis
    ngx_uint_t first;     // the first parameter after them
};

// sentinel= and cluster: the addresses that follow, up to the first
// NAME=VALUE parameter or "tls"; each resolved at start (names are not
// followed: Sentinel and the cluster name their nodes by address).
char *parse_addresses(ngx_conf_t *cf, redis_target *target) noexcept {
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    target->addresses = ngx_array_create(cf->pool, 4, sizeof(ngx_addr_t));
    if (target->addresses == nullptr) return ngx_http_resend_confirmation_conf_error();
    const char *what = target->sentinel ? "Sentinel" : "cluster node";
    ngx_uint_t &i = target->first;
    for (; i < cf->args->nelts && ngx_strlchr(value[i].data, value[i].data + value[i].len, '=') == nullptr &&
           !ngx_http_resend_confirmation_is(value[i], "tls");
         ++i) {
        ngx_url_t node;
        ngx_memzero(&node, sizeof(ngx_url_t));
        node.url = value[i];
        node.default_port = target->sentinel ? 26379 : 6379;
        auto *address = static_cast<ngx_addr_t *>(ngx_array_push(target->addresses));
        if (address == nullptr) return ngx_http_resend_confirmation_conf_error();
        if (ngx_parse_url(cf->pool, &node) != NGX_OK || node.naddrs == 0 || node.family == AF_UNIX) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid %s address \"%V\": %s", what, &value[i],
                               node.err != nullptr ? node.err : node.naddrs == 0 ? "host not found" : "not HOST:PORT");
            return ngx_http_resend_confirmation_conf_error();
        }
        *address = node.addrs[0];
        address->name = value[i];
    }
    if (target->addresses->nelts == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" needs at least one %s address (HOST:PORT)", &value[1],
                           target->sentinel ? "Sentinel" : "node");
        return ngx_http_resend_confirmation_conf_error();
    }
    return NGX_CONF_OK;
}

// A name the system does not resolve at start may still be resolved by
// nginx's resolver when the link connects: the address is kept when it is
// otherwise valid, and postconfiguration, once the resolvers are inherited,
// refuses it where there is none.
bool keep_unresolved(ngx_conf_t *cf, ngx_http_resend_confirmation_redis_conf_t *redis, ngx_url_t *url) noexcept {
    ngx_url_t name;
    ngx_memzero(&name, sizeof(ngx_url_t));
    name.url = url->url;
    name.default_port = url->default_port;
    name.no_resolve = 1;
    if (ngx_parse_url(cf->pool, &name) != NGX_OK || name.family == AF_UNIX || name.host.len == 0 ||
        name.host.data[0] == '[' || ngx_inet_addr(name.host.data, name.host.len) != INADDR_NONE) {
        return false;
    }
    redis->unresolved_file = cf->conf_file->file.name.data;
    redis->unresolved_line = cf->conf_file->line;
    *url = name;
    return true;
}

// The directive's own address: ADDRESS, or the first Sentinel or node.
char *parse_address(ngx_conf_t *cf, const redis_target &target, ngx_http_resend_confirmation_redis_conf_t *redis,
                    ngx_url_t *url) noexcept {
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    ngx_memzero(url, sizeof(ngx_url_t));
    url->url = target.addresses != nullptr ? static_cast<ngx_addr_t *>(target.addresses->elts)[0].name : value[1];
    url->default_port = target.sentinel ? 26379 : 6379;
    if (ngx_parse_url(cf->pool, url) == NGX_OK && url->naddrs != 0) {
        redis->addr = url->addrs[0];
    } else if (target.addresses != nullptr || !keep_unresolved(cf, redis, url)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid redis address \"%V\": %s", &url->url,
                           url->err != nullptr ? url->err : "host not found");
        return ngx_http_resend_confirmation_conf_error();
    }
    // Logs and metrics name a cluster by its first node.
    redis->addr.name = target.cluster ? url->url : value[1];
    return NGX_CONF_OK;
}

// allow=CIDR[,CIDR...]
bool parse_allow(ngx_conf_t *cf, ngx_http_resend_confirmation_redis_conf_t *redis, ngx_str_t arg) noexcept {
    if (redis->allow == nullptr) {
        redis->allow = ngx_array_create(cf->pool, 4, sizeof(ngx_cidr_t));
        if (redis->allow == nullptr) return false;
    }
    u_char *end = arg.data + arg.len;
    for (u_char *p = arg.data; p <= end;) {
        u_char *comma = ngx_strlchr(p, end, ',');
        if (comma == nullptr) comma = end;
        ngx_str_t network{static_cast<size_t>(comma - p), p};
        auto *cidr = static_cast<ngx_cidr_t *>(ngx_array_push(redis->allow));
        if (cidr == nullptr || network.len == 0 || ngx_ptocidr(&network, cidr) == NGX_ERROR) return false;
        p = comma + 1;
    }
    return true;
}

bool parse_time(ngx_str_t arg, ngx_msec_t *out) noexcept {
    *out = ngx_parse_time(&arg, 0);
    return *out != (ngx_msec_t) NGX_ERROR && *out != 0;
}

// One NAME=VALUE parameter (or tls): NGX_CONF_OK, or an error.
char *parse_parameter(ngx_conf_t *cf, const redis_target &target, ngx_http_resend_confirmation_redis_conf_t *redis,
                      ngx_str_t *value, ngx_str_t *sentinel_password) noexcept {
    ngx_str_t arg;
    bool valid = true;
    if (ngx_http_resend_confirmation_has_prefix(*value, "db=", &arg)) {
        valid = ngx_atoi(arg.data, arg.len) != NGX_ERROR;
        if (valid && target.cluster) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"db=\" is not possible with \"cluster\": a cluster has database 0 only");
            return ngx_http_resend_confirmation_conf_error();
        }
        if (valid && ngx_atoi(arg.data, arg.len) != 0) redis->db_text = arg;
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "user=", &arg) && arg.len > 0) {
        redis->user = arg;
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "password=", &arg) && arg.len > 0) {
        redis->password = arg;
    } else if (target.sentinel && ngx_http_resend_confirmation_has_prefix(*value, "sentinel_password=", &arg) &&
               arg.len > 0) {
        *sentinel_password = arg;
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "connect_timeout=", &arg)) {
        valid = parse_time(arg, &redis->connect_timeout);
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "timeout=", &arg)) {
        valid = parse_time(arg, &redis->timeout);
    } else if ((target.sentinel || target.cluster) && ngx_http_resend_confirmation_has_prefix(*value, "allow=", &arg)) {
        valid = parse_allow(cf, redis, arg);
    } else if (ngx_http_resend_confirmation_has_prefix(*value, "replicas=", &arg)) {
        ngx_int_t n = ngx_atoi(arg.data, arg.len);
        valid = n != NGX_ERROR && static_cast<ngx_uint_t>(n) <= max_replicas;
        if (valid) redis->replicas = static_cast<ngx_uint_t>(n);
    } else if (ngx_int_t rc = ngx_http_resend_confirmation_tls_parameter(cf, redis, value); rc != NGX_OK) {
        if (rc == NGX_ERROR && redis->tls == nullptr) return ngx_http_resend_confirmation_conf_error();
        valid = false;
    }
    return valid ? NGX_CONF_OK : ngx_http_resend_confirmation_invalid_parameter(cf, value);
}

// An address given by name is resolved again on each connect when the
// directive's level has a `resolver` (looked at when connecting: the
// resolver is inherited only once the configuration is merged).
void keep_name(ngx_conf_t *cf, ngx_http_resend_confirmation_redis_conf_t *redis, ngx_url_t *url) noexcept {
    redis->core = static_cast<ngx_http_core_loc_conf_t *>(ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (url == nullptr) return;  // sentinel= and cluster: addresses resolved at start
    if (url->family == AF_UNIX || url->host.len == 0 || url->host.data[0] == '[') return;
    if (ngx_inet_addr(url->host.data, url->host.len) != INADDR_NONE) return;
    redis->host = url->host;
    redis->port = url->port;
}

// What a spooled record names its Redis by, its counters, its index.
char *register_redis(ngx_conf_t *cf, ngx_http_resend_confirmation_redis_conf_t *redis) noexcept {
    redis->spool_name = redis->addr.name;
    if (redis->db_text.len != 0) {
        size_t len = redis->addr.name.len + sizeof(" db=") - 1 + redis->db_text.len;
        auto *name = static_cast<u_char *>(ngx_pnalloc(cf->pool, len));
        if (name == nullptr) return ngx_http_resend_confirmation_conf_error();
        ngx_sprintf(name, "%V db=%V", &redis->addr.name, &redis->db_text);
        redis->spool_name = {len, name};
    }
    redis->metrics = ngx_http_resend_confirmation_metrics_ref(cf, redis->addr.name, false);
    auto *mcf = ngx_http_resend_confirmation_conf_main_conf(cf);
    auto **slot = static_cast<ngx_http_resend_confirmation_redis_conf_t **>(ngx_array_push(&mcf->redis));
    if (redis->metrics == nullptr || slot == nullptr) return ngx_http_resend_confirmation_conf_error();
    redis->index = mcf->redis.nelts - 1;
    *slot = redis;
    return NGX_CONF_OK;
}

// The topology the parameters gave, once they are all read.
char *configure_topology(ngx_conf_t *cf, redis_target *target, ngx_http_resend_confirmation_redis_conf_t *redis,
                         ngx_str_t *sentinel_password) noexcept {
    if (target->sentinel) {
        return ngx_http_resend_confirmation_sentinel_configure(cf, redis, target->addresses, &target->master,
                                                               sentinel_password);
    }
    if (target->cluster) return ngx_http_resend_confirmation_cluster_configure(cf, redis, target->addresses);
    return NGX_CONF_OK;
}

}  // namespace

char *ngx_http_resend_confirmation_redis_directive(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    if (lcf->redis != NGX_CONF_UNSET_PTR) return const_cast<char *>("is duplicate");
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    auto *redis = static_cast<ngx_http_resend_confirmation_redis_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_redis_conf_t)));
    if (redis == nullptr) return ngx_http_resend_confirmation_conf_error();
    redis->connect_timeout = connect_timeout_default;
    redis->timeout = timeout_default;
    redis->replicas = NGX_CONF_UNSET_UINT;

    redis_target target{};
    target.sentinel = ngx_http_resend_confirmation_has_prefix(value[1], "sentinel=", &target.master);
    target.cluster = ngx_http_resend_confirmation_is(value[1], "cluster");
    target.first = 2;
    if (target.sentinel && target.master.len == 0) return ngx_http_resend_confirmation_invalid_parameter(cf, &value[1]);
    if ((target.sentinel || target.cluster) && parse_addresses(cf, &target) != NGX_CONF_OK) {
        return ngx_http_resend_confirmation_conf_error();
    }
    ngx_url_t url;
    if (parse_address(cf, target, redis, &url) != NGX_CONF_OK) return ngx_http_resend_confirmation_conf_error();

    ngx_str_t sentinel_password = ngx_null_string;
    for (ngx_uint_t i = target.first; i < cf->args->nelts; ++i) {
        char *rc = parse_parameter(cf, target, redis, &value[i], &sentinel_password);
        if (rc != NGX_CONF_OK) return rc;
    }
    if (redis->user.len != 0 && redis->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"user=\" needs \"password=\"");
        return ngx_http_resend_confirmation_conf_error();
    }
    if (ngx_http_resend_confirmation_tls_configure(cf, redis, &url) != NGX_CONF_OK) {
        return ngx_http_resend_confirmation_conf_error();
    }
    keep_name(cf, redis, target.addresses == nullptr ? &url : nullptr);
    if (configure_topology(cf, &target, redis, &sentinel_password) != NGX_CONF_OK ||
        register_redis(cf, redis) != NGX_CONF_OK) {
        return ngx_http_resend_confirmation_conf_error();
    }
    lcf->redis = redis;
    return NGX_CONF_OK;
}

ngx_int_t ngx_http_resend_confirmation_redis_check_unresolved(ngx_conf_t *cf,
                                                              ngx_http_resend_confirmation_main_conf_t *mcf) noexcept {
    auto **redis = static_cast<ngx_http_resend_confirmation_redis_conf_t **>(mcf->redis.elts);
    for (ngx_uint_t i = 0; i < mcf->redis.nelts; ++i) {
        if (redis[i]->unresolved_file == nullptr) continue;
        ngx_resolver_t *resolver = redis[i]->core->resolver;
        if (resolver != nullptr && resolver->connections.nelts != 0) continue;
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "invalid redis address \"%V\": host not found, and no \"resolver\" to find it "
                      "when connecting in %s:%ui",
                      &redis[i]->addr.name, redis[i]->unresolved_file, redis[i]->unresolved_line);
        return NGX_ERROR;
    }
    return NGX_OK;
}

// --- this worker's links ----------------------------------------------------------

ngx_int_t ngx_http_resend_confirmation_redis_worker_start(ngx_cycle_t *cycle,
                                                          ngx_http_resend_confirmation_main_conf_t *mcf) noexcept {
    worker_links_count = 0;
    worker_links = static_cast<ngx_http_resend_confirmation_link_t **>(
        ngx_pcalloc(cycle->pool, (mcf->redis.nelts + 1) * sizeof(ngx_http_resend_confirmation_link_t *)));
    if (worker_links == nullptr) return NGX_ERROR;
    auto **redis = static_cast<ngx_http_resend_confirmation_redis_conf_t **>(mcf->redis.elts);
    for (ngx_uint_t i = 0; i < mcf->redis.nelts; ++i) {
        worker_links[i] = redis[i]->sentinel != nullptr ? ngx_http_resend_confirmation_sentinel_link_create(redis[i], cycle)
                          : redis[i]->cluster != nullptr ? ngx_http_resend_confirmation_cluster_link_create(redis[i], cycle)
                                                         : ngx_http_resend_confirmation_link_create(redis[i], cycle);
        if (worker_links[i] == nullptr) return NGX_ERROR;
        worker_links_count = i + 1;
    }
    return NGX_OK;
}

void ngx_http_resend_confirmation_redis_worker_exit() noexcept {
    for (ngx_uint_t i = 0; i < worker_links_count; ++i) {
        ngx_http_resend_confirmation_link_t *link = worker_links[i];
        auto *conf = ngx_http_resend_confirmation_link_conf(link);
        void *state = ngx_http_resend_confirmation_link_topology_data(link);
        if (conf->sentinel != nullptr) ngx_http_resend_confirmation_sentinel_destroy(state);
        if (conf->cluster != nullptr) ngx_http_resend_confirmation_cluster_destroy(state);
        ngx_http_resend_confirmation_link_destroy(link);
    }
    worker_links_count = 0;
}

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_worker_link(ngx_http_resend_confirmation_redis_conf_t *conf) noexcept {
    return worker_links[conf->index];
}

ngx_http_resend_confirmation_link_t *ngx_http_resend_confirmation_worker_link_named(std::string_view name) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_resend_confirmation_module));
    if (mcf == nullptr) return nullptr;
    auto **redis = static_cast<ngx_http_resend_confirmation_redis_conf_t **>(mcf->redis.elts);
    for (ngx_uint_t i = 0; i < worker_links_count; ++i) {
        if (ngx_http_resend_confirmation_view(redis[i]->spool_name) == name) return worker_links[i];
    }
    // Records kept before " db=N" was: the address alone, the first with it.
    for (ngx_uint_t i = 0; i < worker_links_count; ++i) {
        if (ngx_http_resend_confirmation_view(redis[i]->addr.name) == name) return worker_links[i];
    }
    return nullptr;
}
