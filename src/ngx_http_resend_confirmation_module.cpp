// Module definition: registers every directive and parses those of the
// endpoint, the Redis link, the stream and the record's fields (the limit
// directives' parsers are in limit_directives.cpp, the shared limits' in
// shared_limit.cpp); decides what a level
// inherits and refuses a `resend_confirmation` location without a Redis; and
// makes each worker's JSON parser (sized for the largest body limit) and
// Redis links. The request flow starts in ngx_http_resend_confirmation_handler.cpp.

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"
#include "limit/ngx_http_resend_confirmation_limit.h"
#include "metrics/ngx_http_resend_confirmation_metrics.h"
#include "redis/ngx_http_resend_confirmation_redis.h"
#include "spool/ngx_http_resend_confirmation_spool.h"

#include <new>

// The largest body limit a location may set: every worker keeps one parser
// sized for the largest limit in use, so the bound keeps that memory small.
static const size_t max_body_size_ceiling = 1024 * 1024;
static const size_t max_body_size_default = 4096;
static ngx_str_t stream_default = ngx_string("resend_confirmation");
static ngx_str_t maxlen_default = ngx_string("1000000");

namespace {

char *enable(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *check_body_size(ngx_conf_t *cf, void *post, void *data) noexcept;
char *stream(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
char *field(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept;
ngx_int_t preconfiguration(ngx_conf_t *cf) noexcept;
ngx_int_t postconfiguration(ngx_conf_t *cf) noexcept;
void *create_main_conf(ngx_conf_t *cf) noexcept;
void *create_loc_conf(ngx_conf_t *cf) noexcept;
char *merge_loc_conf(ngx_conf_t *cf, void *parent, void *child) noexcept;
ngx_int_t init_process(ngx_cycle_t *cycle) noexcept;
void exit_process(ngx_cycle_t *cycle) noexcept;

}  // namespace

static ngx_conf_post_t ngx_http_resend_confirmation_body_size_post = {
    check_body_size};

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

namespace {

// resend_confirmation_redis_failure reject|accept|spool; and where it is,
// for the error of a `spool` without a spool.
char *redis_failure(ngx_conf_t *cf, ngx_command_t *cmd, void *conf) noexcept {
    char *rv = ngx_conf_set_enum_slot(cf, cmd, conf);
    if (rv != NGX_CONF_OK) return rv;
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    lcf->redis_failure_file = cf->conf_file->file.name.data;
    lcf->redis_failure_line = cf->conf_file->line;
    return NGX_CONF_OK;
}

}  // namespace

#define RESEND_ANY_LEVEL (NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF)

static ngx_command_t ngx_http_resend_confirmation_commands[] = {
    {ngx_string("resend_confirmation"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     enable, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_max_body_size"), RESEND_ANY_LEVEL | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_resend_confirmation_loc_conf_t, max_body_size),
     &ngx_http_resend_confirmation_body_size_post},
    {ngx_string("resend_confirmation_redis"), RESEND_ANY_LEVEL | NGX_CONF_1MORE,
     ngx_http_resend_confirmation_redis_directive, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_stream"), RESEND_ANY_LEVEL | NGX_CONF_TAKE12,
     stream, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_field"), RESEND_ANY_LEVEL | NGX_CONF_TAKE2,
     field, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_redis_failure"), RESEND_ANY_LEVEL | NGX_CONF_TAKE1,
     redis_failure, NGX_HTTP_LOC_CONF_OFFSET,
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
    preconfiguration,
    postconfiguration,
    create_main_conf,
    nullptr,  // init main conf
    nullptr,  // create server conf
    nullptr,  // merge server conf
    create_loc_conf,
    merge_loc_conf,
};

extern "C" {
ngx_module_t ngx_http_resend_confirmation_module = {
    NGX_MODULE_V1,
    &ngx_http_resend_confirmation_module_ctx,
    ngx_http_resend_confirmation_commands,
    NGX_HTTP_MODULE,
    nullptr,  // init master
    nullptr,  // init module
    init_process,
    nullptr,  // init thread
    nullptr,  // exit thread
    exit_process,
    nullptr,  // exit master
    NGX_MODULE_V1_PADDING};
}

// One parser per worker process; workers are single-threaded.
static resend::body_parser *worker_parser;

resend::body_parser *ngx_http_resend_confirmation_parser() noexcept { return worker_parser; }

namespace {

char *enable(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
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

char *check_body_size(ngx_conf_t *cf, void *, void *data) noexcept {
    size_t size = *static_cast<size_t *>(data);
    if (size == 0 || size > max_body_size_ceiling) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "\"resend_confirmation_max_body_size\" must be between 1 and %uz bytes",
                           max_body_size_ceiling);
        return ngx_http_resend_confirmation_conf_error();
    }
    return NGX_CONF_OK;
}

// resend_confirmation_stream KEY [maxlen=N];
char *stream(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
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
char *field(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
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

ngx_int_t preconfiguration(ngx_conf_t *cf) noexcept {
    return ngx_http_resend_confirmation_add_variables(cf);
}

ngx_int_t postconfiguration(ngx_conf_t *cf) noexcept {
    auto *mcf = ngx_http_resend_confirmation_conf_main_conf(cf);
    static ngx_str_t request_id = ngx_string("request_id");
    mcf->request_id_index = ngx_http_get_variable_index(cf, &request_id);
    if (mcf->request_id_index == NGX_ERROR) return NGX_ERROR;
    if (ngx_http_resend_confirmation_redis_check_unresolved(cf, mcf) != NGX_OK) return NGX_ERROR;

    if (ngx_http_resend_confirmation_body_filter_init(cf) != NGX_OK) return NGX_ERROR;
    if (ngx_http_resend_confirmation_metrics_init(cf) != NGX_OK) return NGX_ERROR;
    return ngx_http_resend_confirmation_answer_filters_init(cf);
}

void *create_main_conf(ngx_conf_t *cf) noexcept {
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

void *create_loc_conf(ngx_conf_t *cf) noexcept {
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

char *merge_loc_conf(ngx_conf_t *cf, void *parent_conf, void *child_conf) noexcept {
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

ngx_int_t init_process(ngx_cycle_t *cycle) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_resend_confirmation_module));
    if (mcf == nullptr) return NGX_OK;  // no http block

    if (ngx_http_resend_confirmation_redis_worker_start(cycle, mcf) != NGX_OK) return NGX_ERROR;
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

void exit_process(ngx_cycle_t *) noexcept {
    // Close the Redis connections ourselves: nginx reports sockets a worker
    // leaves open at exit as [alert]. The spool first: its progress is
    // written and its segments' locks let go.
    ngx_http_resend_confirmation_spool_worker_exit();
    ngx_http_resend_confirmation_redis_worker_exit();
    ngx_http_resend_confirmation_metrics_worker_exit();
    delete worker_parser;
    worker_parser = nullptr;
}

}  // namespace
