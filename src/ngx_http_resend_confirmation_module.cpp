// Module definition: registers every directive and parses those of the
// endpoint, the Redis link, the stream and the record's fields (the limit
// directives' parsers are in limit_directives.cpp, the shared limits' in
// shared_limit.cpp); decides what a level
// inherits and refuses a `resend_confirmation` location without a Redis; and
// makes each worker's JSON parser (sized for the largest body limit) and
// Redis links. The request flow starts in ngx_http_resend_confirmation_handler.cpp.

#include "ngx_http_resend_confirmation.h"

#include <new>

// The largest body limit a location may set: every worker keeps one parser
// sized for the largest limit in use, so the bound keeps that memory small.
static const size_t max_body_size_ceiling = 1024 * 1024;
static const size_t max_body_size_default = 4096;
static const ngx_msec_t redis_connect_timeout_default = 1000;
static const ngx_msec_t redis_timeout_default = 1000;
static ngx_str_t stream_default = ngx_string("resend_confirmation");
static ngx_str_t maxlen_default = ngx_string("1000000");

static char *ngx_http_resend_confirmation_enable(ngx_conf_t *cf, ngx_command_t *cmd,
                                                 void *conf) noexcept;
static char *ngx_http_resend_confirmation_check_body_size(ngx_conf_t *cf, void *post,
                                                          void *data) noexcept;
static char *ngx_http_resend_confirmation_redis(ngx_conf_t *cf, ngx_command_t *cmd,
                                                void *conf) noexcept;
static char *ngx_http_resend_confirmation_stream(ngx_conf_t *cf, ngx_command_t *cmd,
                                                 void *conf) noexcept;
static void ngx_http_resend_confirmation_redis_name(ngx_conf_t *cf,
                                                    ngx_http_resend_confirmation_redis_conf_t *redis,
                                                    ngx_url_t *url) noexcept;
static bool ngx_http_resend_confirmation_redis_unresolved(ngx_conf_t *cf,
                                                          ngx_http_resend_confirmation_redis_conf_t *redis,
                                                          ngx_url_t *url) noexcept;
static ngx_int_t ngx_http_resend_confirmation_redis_check_unresolved(
    ngx_conf_t *cf, ngx_http_resend_confirmation_main_conf_t *mcf) noexcept;
static char *ngx_http_resend_confirmation_field(ngx_conf_t *cf, ngx_command_t *cmd,
                                                void *conf) noexcept;
static ngx_int_t ngx_http_resend_confirmation_preconfiguration(ngx_conf_t *cf) noexcept;
static ngx_int_t ngx_http_resend_confirmation_postconfiguration(ngx_conf_t *cf) noexcept;
static void *ngx_http_resend_confirmation_create_main_conf(ngx_conf_t *cf) noexcept;
static void *ngx_http_resend_confirmation_create_loc_conf(ngx_conf_t *cf) noexcept;
static char *ngx_http_resend_confirmation_merge_loc_conf(ngx_conf_t *cf, void *parent,
                                                         void *child) noexcept;
static ngx_int_t ngx_http_resend_confirmation_init_process(ngx_cycle_t *cycle) noexcept;
static void ngx_http_resend_confirmation_exit_process(ngx_cycle_t *cycle) noexcept;

static ngx_conf_post_t ngx_http_resend_confirmation_body_size_post = {
    ngx_http_resend_confirmation_check_body_size};

static ngx_conf_enum_t ngx_http_resend_confirmation_log_levels[] = {
    {ngx_string("info"), NGX_LOG_INFO},
    {ngx_string("notice"), NGX_LOG_NOTICE},
    {ngx_string("warn"), NGX_LOG_WARN},
    {ngx_string("error"), NGX_LOG_ERR},
    {ngx_null_string, 0}};

static ngx_conf_num_bounds_t ngx_http_resend_confirmation_limit_status_bounds = {
    ngx_conf_check_num_bounds, 400, 599};

static ngx_conf_enum_t ngx_http_resend_confirmation_redis_failure_policies[] = {
    {ngx_string("reject"), static_cast<ngx_uint_t>(ngx_http_resend_confirmation_redis_failure_t::reject)},
    {ngx_string("accept"), static_cast<ngx_uint_t>(ngx_http_resend_confirmation_redis_failure_t::accept)},
    {ngx_string("spool"), static_cast<ngx_uint_t>(ngx_http_resend_confirmation_redis_failure_t::spool)},
    {ngx_null_string, 0}};

// resend_confirmation_redis_failure reject|accept|spool; and where it is,
// for the error of a `spool` without a spool.
static char *ngx_http_resend_confirmation_redis_failure(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_enum_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    lcf->redis_failure_file = cf->conf_file->file.name.data;
    lcf->redis_failure_line = cf->conf_file->line;
    return NGX_CONF_OK;
}

#define RESEND_ANY_LEVEL (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF)

static ngx_command_t ngx_http_resend_confirmation_commands[] = {
    {ngx_string("resend_confirmation"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_http_resend_confirmation_enable, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_max_body_size"), RESEND_ANY_LEVEL | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_resend_confirmation_loc_conf_t, max_body_size),
     &ngx_http_resend_confirmation_body_size_post},
    {ngx_string("resend_confirmation_redis"), RESEND_ANY_LEVEL | NGX_CONF_1MORE,
     ngx_http_resend_confirmation_redis, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_stream"), RESEND_ANY_LEVEL | NGX_CONF_TAKE12,
     ngx_http_resend_confirmation_stream, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_field"), RESEND_ANY_LEVEL | NGX_CONF_TAKE2,
     ngx_http_resend_confirmation_field, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_redis_failure"), RESEND_ANY_LEVEL | NGX_CONF_TAKE1,
     ngx_http_resend_confirmation_redis_failure, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_resend_confirmation_loc_conf_t, redis_failure),
     ngx_http_resend_confirmation_redis_failure_policies},
    {ngx_string("resend_confirmation_spool"), NGX_HTTP_MAIN_CONF | NGX_CONF_1MORE,
     ngx_http_resend_confirmation_spool_directive, NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_limit_zone"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE3 | NGX_CONF_TAKE4,
     ngx_http_resend_confirmation_limit_zone, NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_limit"), RESEND_ANY_LEVEL | NGX_CONF_TAKE123,
     ngx_http_resend_confirmation_limit, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_limit_dry_run"), RESEND_ANY_LEVEL | NGX_CONF_FLAG,
     ngx_conf_set_flag_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_resend_confirmation_loc_conf_t, limit_dry_run), nullptr},
    {ngx_string("resend_confirmation_limit_status"), RESEND_ANY_LEVEL | NGX_CONF_TAKE1,
     ngx_conf_set_num_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_resend_confirmation_loc_conf_t, limit_status),
     &ngx_http_resend_confirmation_limit_status_bounds},
    {ngx_string("resend_confirmation_limit_log_level"), RESEND_ANY_LEVEL | NGX_CONF_TAKE1,
     ngx_conf_set_enum_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_resend_confirmation_loc_conf_t, limit_log_level),
     ngx_http_resend_confirmation_log_levels},
    {ngx_string("resend_confirmation_limit_secret"), NGX_HTTP_MAIN_CONF | NGX_CONF_TAKE1,
     ngx_http_resend_confirmation_limit_secret, NGX_HTTP_MAIN_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_shared_limit"), RESEND_ANY_LEVEL | NGX_CONF_TAKE23,
     ngx_http_resend_confirmation_shared_limit, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_client_prefix"), RESEND_ANY_LEVEL | NGX_CONF_TAKE12,
     ngx_http_resend_confirmation_client_prefix, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_metrics"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_http_resend_confirmation_metrics_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_metrics_name"), RESEND_ANY_LEVEL | NGX_CONF_TAKE1,
     ngx_conf_set_str_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_resend_confirmation_loc_conf_t, metrics_name), nullptr},
    ngx_null_command};

static ngx_http_module_t ngx_http_resend_confirmation_module_ctx = {
    ngx_http_resend_confirmation_preconfiguration,
    ngx_http_resend_confirmation_postconfiguration,
    ngx_http_resend_confirmation_create_main_conf,
    nullptr,  // init main conf
    nullptr,  // create server conf
    nullptr,  // merge server conf
    ngx_http_resend_confirmation_create_loc_conf,
    ngx_http_resend_confirmation_merge_loc_conf,
};

extern "C" {
ngx_module_t ngx_http_resend_confirmation_module = {
    NGX_MODULE_V1,
    &ngx_http_resend_confirmation_module_ctx,
    ngx_http_resend_confirmation_commands,
    NGX_HTTP_MODULE,
    nullptr,  // init master
    nullptr,  // init module
    ngx_http_resend_confirmation_init_process,
    nullptr,  // init thread
    nullptr,  // exit thread
    ngx_http_resend_confirmation_exit_process,
    nullptr,  // exit master
    NGX_MODULE_V1_PADDING};
}

// One parser per worker process, and one Redis link per
// `resend_confirmation_redis` directive; workers are single-threaded.
static resend::body_parser *worker_parser;
static ngx_http_resend_confirmation_link_t **worker_links;
static ngx_uint_t worker_links_count;

resend::body_parser *ngx_http_resend_confirmation_parser() noexcept { return worker_parser; }

ngx_http_resend_confirmation_link_t *
ngx_http_resend_confirmation_worker_link(ngx_http_resend_confirmation_redis_conf_t *conf) noexcept {
    return worker_links[conf->index];
}

ngx_http_resend_confirmation_link_t *ngx_http_resend_confirmation_worker_link_named(std::string_view name) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_resend_confirmation_module));
    if (mcf == nullptr) return nullptr;
    auto **redis = static_cast<ngx_http_resend_confirmation_redis_conf_t **>(mcf->redis.elts);
    auto view = [](const ngx_str_t &s) { return std::string_view(reinterpret_cast<const char *>(s.data), s.len); };
    for (ngx_uint_t i = 0; i < worker_links_count; ++i) {
        if (view(redis[i]->spool_name) == name) return worker_links[i];
    }
    // Records kept before " db=N" was: the address alone, the first with it.
    for (ngx_uint_t i = 0; i < worker_links_count; ++i) {
        if (view(redis[i]->addr.name) == name) return worker_links[i];
    }
    return nullptr;
}


static char *ngx_http_resend_confirmation_enable(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    if (lcf->enabled != NGX_CONF_UNSET) return const_cast<char *>("is duplicate");
    lcf->enabled = 1;
    lcf->enabled_file = cf->conf_file->file.name.data;
    lcf->enabled_line = cf->conf_file->line;

    auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    clcf->handler = ngx_http_resend_confirmation_handler;
    return NGX_CONF_OK;
}

static char *ngx_http_resend_confirmation_check_body_size(ngx_conf_t *cf, void *, void *data) noexcept {
    size_t size = *static_cast<size_t *>(data);
    if (size == 0 || size > max_body_size_ceiling) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"resend_confirmation_max_body_size\" must be between 1 and %uz bytes",
                           max_body_size_ceiling);
        return ngx_http_resend_confirmation_conf_error();
    }
    return NGX_CONF_OK;
}

// resend_confirmation_redis ADDRESS [db=N] [user=NAME] [password=SECRET]
//                           [connect_timeout=TIME] [timeout=TIME]
//                           [tls [tls_verify=on|off] [tls_ca=FILE] [tls_cert=FILE tls_key=FILE]
//                                [tls_name=NAME]];
// resend_confirmation_redis sentinel=MASTER HOST:PORT... [sentinel_password=SECRET] [...as above];
// resend_confirmation_redis cluster HOST:PORT... [...as above but db=];
static char *ngx_http_resend_confirmation_redis(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    if (lcf->redis != NGX_CONF_UNSET_PTR) return const_cast<char *>("is duplicate");
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);

    auto *redis = static_cast<ngx_http_resend_confirmation_redis_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_redis_conf_t)));
    if (redis == nullptr) return ngx_http_resend_confirmation_conf_error();

    // sentinel= and cluster: the addresses that follow, up to the first
    // NAME=VALUE parameter or "tls".
    ngx_str_t master = ngx_null_string, sentinel_password = ngx_null_string;
    bool sentinel = ngx_http_resend_confirmation_has_prefix(value[1], "sentinel=", &master);
    bool cluster = ngx_http_resend_confirmation_is(value[1], "cluster");
    ngx_array_t *addresses = nullptr;
    ngx_uint_t first = 2;
    if (sentinel || cluster) {
        if (sentinel && master.len == 0) return ngx_http_resend_confirmation_invalid_parameter(cf, &value[1]);
        // Resolved at start, each (names are not followed: Sentinel and
        // the cluster name their nodes by address).
        addresses = ngx_array_create(cf->pool, 4, sizeof(ngx_addr_t));
        if (addresses == nullptr) return ngx_http_resend_confirmation_conf_error();
        for (; first < cf->args->nelts && ngx_strlchr(value[first].data, value[first].data + value[first].len, '=') == nullptr &&
               !ngx_http_resend_confirmation_is(value[first], "tls");
             ++first) {
            ngx_url_t node;
            ngx_memzero(&node, sizeof(ngx_url_t));
            node.url = value[first];
            node.default_port = sentinel ? 26379 : 6379;
            auto *address = static_cast<ngx_addr_t *>(ngx_array_push(addresses));
            if (address == nullptr) return ngx_http_resend_confirmation_conf_error();
            if (ngx_parse_url(cf->pool, &node) != NGX_OK || node.naddrs == 0 || node.family == AF_UNIX) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid %s address \"%V\": %s",
                                   sentinel ? "Sentinel" : "cluster node", &value[first],
                                   node.err != nullptr ? node.err : node.naddrs == 0 ? "host not found" : "not HOST:PORT");
                return ngx_http_resend_confirmation_conf_error();
            }
            *address = node.addrs[0];
            address->name = value[first];
        }
        if (addresses->nelts == 0) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" needs at least one %s address (HOST:PORT)",
                               &value[1], sentinel ? "Sentinel" : "node");
            return ngx_http_resend_confirmation_conf_error();
        }
    }

    ngx_url_t url;
    ngx_memzero(&url, sizeof(ngx_url_t));
    url.url = addresses != nullptr ? static_cast<ngx_addr_t *>(addresses->elts)[0].name : value[1];
    url.default_port = sentinel ? 26379 : 6379;
    if (ngx_parse_url(cf->pool, &url) == NGX_OK && url.naddrs != 0) {
        redis->addr = url.addrs[0];
    } else if (addresses != nullptr || !ngx_http_resend_confirmation_redis_unresolved(cf, redis, &url)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid redis address \"%V\": %s", &url.url,
                           url.err != nullptr ? url.err : "host not found");
        return ngx_http_resend_confirmation_conf_error();
    }
    // Logs and metrics name a cluster by its first node.
    redis->addr.name = cluster ? url.url : value[1];
    redis->connect_timeout = redis_connect_timeout_default;
    redis->timeout = redis_timeout_default;

    for (ngx_uint_t i = first; i < cf->args->nelts; ++i) {
        ngx_str_t arg;
        if (ngx_http_resend_confirmation_has_prefix(value[i], "db=", &arg)) {
            if (ngx_atoi(arg.data, arg.len) == NGX_ERROR) goto invalid;
            if (cluster) {
                ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"db=\" is not possible with \"cluster\": a cluster has database 0 only");
                return ngx_http_resend_confirmation_conf_error();
            }
            if (ngx_atoi(arg.data, arg.len) != 0) redis->db_text = arg;
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "user=", &arg) && arg.len > 0) {
            redis->user = arg;
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "password=", &arg) && arg.len > 0) {
            redis->password = arg;
        } else if (sentinel && ngx_http_resend_confirmation_has_prefix(value[i], "sentinel_password=", &arg) &&
                   arg.len > 0) {
            sentinel_password = arg;
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "connect_timeout=", &arg)) {
            redis->connect_timeout = ngx_parse_time(&arg, 0);
            if (redis->connect_timeout == (ngx_msec_t) NGX_ERROR || redis->connect_timeout == 0) goto invalid;
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "timeout=", &arg)) {
            redis->timeout = ngx_parse_time(&arg, 0);
            if (redis->timeout == (ngx_msec_t) NGX_ERROR || redis->timeout == 0) goto invalid;
        } else if (ngx_int_t rc = ngx_http_resend_confirmation_tls_parameter(cf, redis, &value[i]);
                   rc != NGX_OK) {
            if (rc == NGX_DECLINED) goto invalid;
            if (redis->tls == nullptr) return ngx_http_resend_confirmation_conf_error();
            goto invalid;
        }
        continue;
    invalid:
        return ngx_http_resend_confirmation_invalid_parameter(cf, &value[i]);
    }
    if (redis->user.len != 0 && redis->password.len == 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"user=\" needs \"password=\"");
        return ngx_http_resend_confirmation_conf_error();
    }
    if (ngx_http_resend_confirmation_tls_configure(cf, redis, &url) != NGX_CONF_OK) {
        return ngx_http_resend_confirmation_conf_error();
    }
    ngx_http_resend_confirmation_redis_name(cf, redis, addresses == nullptr ? &url : nullptr);
    if (sentinel && ngx_http_resend_confirmation_sentinel_configure(cf, redis, addresses, &master,
                                                                    &sentinel_password) != NGX_CONF_OK) {
        return ngx_http_resend_confirmation_conf_error();
    }
    if (cluster && ngx_http_resend_confirmation_cluster_configure(cf, redis, addresses) != NGX_CONF_OK) {
        return ngx_http_resend_confirmation_conf_error();
    }

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
    lcf->redis = redis;
    return NGX_CONF_OK;
}

// An address given by name is resolved again on each connect when the
// directive's level has a `resolver` (looked at when connecting: the
// resolver is inherited only once the configuration is merged).
static void ngx_http_resend_confirmation_redis_name(ngx_conf_t *cf,
                                                    ngx_http_resend_confirmation_redis_conf_t *redis,
                                                    ngx_url_t *url) noexcept {
    redis->core = static_cast<ngx_http_core_loc_conf_t *>(
        ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
    if (url == nullptr) return;  // sentinel= and cluster: addresses resolved at start
    if (url->family == AF_UNIX || url->host.len == 0 || url->host.data[0] == '[') return;
    if (ngx_inet_addr(url->host.data, url->host.len) != INADDR_NONE) return;
    redis->host = url->host;
    redis->port = url->port;
}

// A name the system does not resolve at start may still be resolved by
// nginx's resolver when the link connects: the address is kept when it is
// otherwise valid, and postconfiguration, once the resolvers are inherited,
// refuses it where there is none.
static bool ngx_http_resend_confirmation_redis_unresolved(ngx_conf_t *cf,
                                                          ngx_http_resend_confirmation_redis_conf_t *redis,
                                                          ngx_url_t *url) noexcept {
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

static ngx_int_t ngx_http_resend_confirmation_redis_check_unresolved(
    ngx_conf_t *cf, ngx_http_resend_confirmation_main_conf_t *mcf) noexcept {
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

// resend_confirmation_stream KEY [maxlen=N];
static char *ngx_http_resend_confirmation_stream(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    if (lcf->stream.data != nullptr) return const_cast<char *>("is duplicate");
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    if (value[1].len == 0) return const_cast<char *>("needs a non-empty stream key");
    lcf->stream = value[1];
    if (cf->args->nelts == 3) {
        ngx_str_t arg;
        if (!ngx_http_resend_confirmation_has_prefix(value[2], "maxlen=", &arg) || ngx_atoi(arg.data, arg.len) <= 0) {
            return ngx_http_resend_confirmation_invalid_parameter(cf, &value[2]);
        }
        lcf->maxlen_text = arg;
    }
    return NGX_CONF_OK;
}

// resend_confirmation_field NAME VALUE;  (VALUE may hold variables)
static char *ngx_http_resend_confirmation_field(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    static const char *const reserved[] = {"email", "ip", "request_id", "received_at"};
    for (const char *name : reserved) {
        if (ngx_http_resend_confirmation_is(value[1], name)) {
            ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                               "field \"%V\" is always recorded by the module", &value[1]);
            return ngx_http_resend_confirmation_conf_error();
        }
    }
    if (value[1].len == 0) return const_cast<char *>("needs a non-empty field name");

    if (lcf->fields == NGX_CONF_UNSET_PTR || lcf->fields == nullptr) {
        lcf->fields = ngx_array_create(cf->pool, 4, sizeof(ngx_http_resend_confirmation_field_t));
        if (lcf->fields == nullptr) return ngx_http_resend_confirmation_conf_error();
    }
    auto *field = static_cast<ngx_http_resend_confirmation_field_t *>(ngx_array_push(lcf->fields));
    if (field == nullptr) return ngx_http_resend_confirmation_conf_error();
    field->name = value[1];

    if (!ngx_http_resend_confirmation_compile(cf, &value[2], &field->value)) {
        return ngx_http_resend_confirmation_conf_error();
    }
    return NGX_CONF_OK;
}

static ngx_int_t ngx_http_resend_confirmation_preconfiguration(ngx_conf_t *cf) noexcept {
    return ngx_http_resend_confirmation_add_variables(cf);
}

static ngx_int_t ngx_http_resend_confirmation_postconfiguration(ngx_conf_t *cf) noexcept {
    auto *mcf = ngx_http_resend_confirmation_conf_main_conf(cf);
    static ngx_str_t request_id = ngx_string("request_id");
    mcf->request_id_index = ngx_http_get_variable_index(cf, &request_id);
    if (mcf->request_id_index == NGX_ERROR) return NGX_ERROR;
    if (ngx_http_resend_confirmation_redis_check_unresolved(cf, mcf) != NGX_OK) return NGX_ERROR;

    if (ngx_http_resend_confirmation_body_filter_init(cf) != NGX_OK) return NGX_ERROR;
    if (ngx_http_resend_confirmation_metrics_init(cf) != NGX_OK) return NGX_ERROR;
    return ngx_http_resend_confirmation_answer_filters_init(cf);
}

static void *ngx_http_resend_confirmation_create_main_conf(ngx_conf_t *cf) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_main_conf_t)));
    if (mcf == nullptr) return nullptr;
    mcf->largest_body = max_body_size_default;
    if (ngx_array_init(&mcf->redis, cf->pool, 2,
                       sizeof(ngx_http_resend_confirmation_redis_conf_t *)) != NGX_OK) {
        return nullptr;
    }
    return mcf;
}

static void *ngx_http_resend_confirmation_create_loc_conf(ngx_conf_t *cf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_loc_conf_t)));
    if (lcf == nullptr) return nullptr;
    lcf->enabled = NGX_CONF_UNSET;
    lcf->max_body_size = NGX_CONF_UNSET_SIZE;
    lcf->redis = static_cast<ngx_http_resend_confirmation_redis_conf_t *>(NGX_CONF_UNSET_PTR);
    lcf->fields = static_cast<ngx_array_t *>(NGX_CONF_UNSET_PTR);
    lcf->redis_failure = NGX_CONF_UNSET_UINT;
    lcf->limits = static_cast<ngx_array_t *>(NGX_CONF_UNSET_PTR);
    lcf->limit_dry_run = NGX_CONF_UNSET;
    lcf->limit_status = NGX_CONF_UNSET_UINT;
    lcf->limit_log_level = NGX_CONF_UNSET_UINT;
    return lcf;
}

static char *ngx_http_resend_confirmation_merge_loc_conf(ngx_conf_t *cf, void *parent_conf,
                                                         void *child_conf) noexcept {
    auto *parent = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(parent_conf);
    auto *conf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(child_conf);

    // `resend_confirmation;` is a location's content handler: not inherited.
    if (conf->enabled == NGX_CONF_UNSET) conf->enabled = 0;
    ngx_conf_merge_size_value(conf->max_body_size, parent->max_body_size,
                              max_body_size_default);
    ngx_conf_merge_ptr_value(conf->redis, parent->redis, nullptr);
    ngx_conf_merge_ptr_value(conf->fields, parent->fields, nullptr);
    if (conf->redis_failure == NGX_CONF_UNSET_UINT) {
        conf->redis_failure_file = parent->redis_failure_file;
        conf->redis_failure_line = parent->redis_failure_line;
    }
    ngx_conf_merge_uint_value(conf->redis_failure, parent->redis_failure,
                              static_cast<ngx_uint_t>(ngx_http_resend_confirmation_redis_failure_t::reject));
    // Limits: a level that sets any replaces the inherited list (limit_req).
    ngx_conf_merge_ptr_value(conf->limits, parent->limits, nullptr);
    ngx_conf_merge_value(conf->limit_dry_run, parent->limit_dry_run, 0);
    ngx_conf_merge_uint_value(conf->limit_status, parent->limit_status, 429);
    ngx_conf_merge_uint_value(conf->limit_log_level, parent->limit_log_level, NGX_LOG_ERR);
    if (conf->stream.data == nullptr) {
        conf->stream = parent->stream.data != nullptr ? parent->stream : stream_default;
        if (parent->stream.data != nullptr) conf->maxlen_text = parent->maxlen_text;
    }
    if (conf->maxlen_text.data == nullptr) conf->maxlen_text = maxlen_default;
    ngx_conf_merge_str_value(conf->metrics_name, parent->metrics_name, "");

    if (conf->enabled && conf->redis == nullptr) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"resend_confirmation\" needs a Redis to record requests in: add "
                      "\"resend_confirmation_redis\" in this location or above it in %s:%ui",
                      conf->enabled_file, conf->enabled_line);
        return ngx_http_resend_confirmation_conf_error();
    }

    if (conf->enabled &&
        static_cast<ngx_http_resend_confirmation_redis_failure_t>(conf->redis_failure) ==
            ngx_http_resend_confirmation_redis_failure_t::spool &&
        ngx_http_resend_confirmation_conf_main_conf(cf)->spool == nullptr) {
        ngx_log_error(NGX_LOG_EMERG, cf->log, 0,
                      "\"resend_confirmation_redis_failure spool\" needs \"resend_confirmation_spool\" "
                      "at http level in %s:%ui",
                      conf->redis_failure_file, conf->redis_failure_line);
        return ngx_http_resend_confirmation_conf_error();
    }

    char *shared = ngx_http_resend_confirmation_shared_limit_merge(cf, parent, conf);
    if (shared != NGX_CONF_OK) return shared;

    if (conf->enabled) {
        // Its outcomes are counted under its metrics name, by default the
        // location's own (its URI, or @name).
        auto *clcf = static_cast<ngx_http_core_loc_conf_t *>(
            ngx_http_conf_get_module_loc_conf(cf, ngx_http_core_module));
        conf->metrics = ngx_http_resend_confirmation_metrics_ref(
            cf, conf->metrics_name.len != 0 ? conf->metrics_name : clcf->name, true);
        if (conf->metrics == nullptr) return ngx_http_resend_confirmation_conf_error();
    }

    auto *mcf = ngx_http_resend_confirmation_conf_main_conf(cf);
    if (conf->enabled && conf->max_body_size > mcf->largest_body) {
        mcf->largest_body = conf->max_body_size;
    }
    return NGX_CONF_OK;
}

static ngx_int_t ngx_http_resend_confirmation_init_process(ngx_cycle_t *cycle) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_resend_confirmation_module));
    if (mcf == nullptr) return NGX_OK;  // no http block

    worker_links_count = 0;
    worker_links = static_cast<ngx_http_resend_confirmation_link_t **>(
        ngx_pcalloc(cycle->pool, (mcf->redis.nelts + 1) * sizeof(ngx_http_resend_confirmation_link_t *)));
    if (worker_links == nullptr) return NGX_ERROR;
    auto **redis = static_cast<ngx_http_resend_confirmation_redis_conf_t **>(mcf->redis.elts);
    for (ngx_uint_t i = 0; i < mcf->redis.nelts; ++i) {
        worker_links[i] = ngx_http_resend_confirmation_link_create(redis[i], cycle);
        if (worker_links[i] == nullptr) return NGX_ERROR;
        worker_links_count = i + 1;
    }

    ngx_http_resend_confirmation_metrics_worker_start(cycle);
    if (ngx_http_resend_confirmation_spool_worker_start(cycle) != NGX_OK) return NGX_ERROR;
    worker_parser = new (std::nothrow) resend::body_parser();
    if (worker_parser == nullptr || !worker_parser->reserve(mcf->largest_body)) {
        ngx_log_error(NGX_LOG_EMERG, cycle->log, 0,
                      "resend_confirmation: cannot allocate the JSON parser for %uz-byte bodies",
                      mcf->largest_body);
        return NGX_ERROR;
    }
    return NGX_OK;
}

static void ngx_http_resend_confirmation_exit_process(ngx_cycle_t *) noexcept {
    // Close the Redis connections ourselves: nginx reports sockets a worker
    // leaves open at exit as [alert]. The spool first: its progress is
    // written and its segments' locks let go.
    ngx_http_resend_confirmation_spool_worker_exit();
    for (ngx_uint_t i = 0; i < worker_links_count; ++i) {
        ngx_http_resend_confirmation_link_destroy(worker_links[i]);
    }
    worker_links_count = 0;
    ngx_http_resend_confirmation_metrics_worker_exit();
    delete worker_parser;
    worker_parser = nullptr;
}
