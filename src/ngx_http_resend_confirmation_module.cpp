// Module definition: directives, configuration create/merge, worker start.
// The request flow starts in ngx_http_resend_confirmation_handler.cpp.

#include "ngx_http_resend_confirmation.h"

#include <new>

// The largest body limit a location may set: every worker keeps one parser
// sized for the largest limit in use, so the bound keeps that memory small.
static const size_t max_body_size_ceiling = 1024 * 1024;
static const size_t max_body_size_default = 4096;

static char *ngx_http_resend_confirmation_enable(ngx_conf_t *cf, ngx_command_t *cmd,
                                                 void *conf) noexcept;
static char *ngx_http_resend_confirmation_check_body_size(ngx_conf_t *cf, void *post,
                                                          void *data) noexcept;
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

static ngx_command_t ngx_http_resend_confirmation_commands[] = {
    {ngx_string("resend_confirmation"), NGX_HTTP_LOC_CONF | NGX_CONF_NOARGS,
     ngx_http_resend_confirmation_enable, NGX_HTTP_LOC_CONF_OFFSET, 0, nullptr},
    {ngx_string("resend_confirmation_max_body_size"),
     NGX_HTTP_MAIN_CONF | NGX_HTTP_SRV_CONF | NGX_HTTP_LOC_CONF | NGX_CONF_TAKE1,
     ngx_conf_set_size_slot, NGX_HTTP_LOC_CONF_OFFSET,
     offsetof(ngx_http_resend_confirmation_loc_conf_t, max_body_size),
     &ngx_http_resend_confirmation_body_size_post},
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

// One parser per worker process; workers are single-threaded.
static resend::body_parser *worker_parser;

resend::body_parser *ngx_http_resend_confirmation_parser() noexcept { return worker_parser; }

static char *ngx_http_resend_confirmation_enable(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    if (lcf->enabled != NGX_CONF_UNSET) return const_cast<char *>("is duplicate");
    lcf->enabled = 1;

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
        return static_cast<char *>(NGX_CONF_ERROR);
    }
    return NGX_CONF_OK;
}

static ngx_int_t ngx_http_resend_confirmation_preconfiguration(ngx_conf_t *cf) noexcept {
    return ngx_http_resend_confirmation_add_variables(cf);
}

static ngx_int_t ngx_http_resend_confirmation_postconfiguration(ngx_conf_t *cf) noexcept {
    if (ngx_http_resend_confirmation_body_filter_init(cf) != NGX_OK) return NGX_ERROR;
    return ngx_http_resend_confirmation_reply_filters_init(cf);
}

static void *ngx_http_resend_confirmation_create_main_conf(ngx_conf_t *cf) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_main_conf_t)));
    if (mcf == nullptr) return nullptr;
    mcf->largest_body = max_body_size_default;
    return mcf;
}

static void *ngx_http_resend_confirmation_create_loc_conf(ngx_conf_t *cf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_loc_conf_t)));
    if (lcf == nullptr) return nullptr;
    lcf->enabled = NGX_CONF_UNSET;
    lcf->max_body_size = NGX_CONF_UNSET_SIZE;
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

    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_resend_confirmation_module));
    if (conf->enabled && conf->max_body_size > mcf->largest_body) {
        mcf->largest_body = conf->max_body_size;
    }
    return NGX_CONF_OK;
}

static ngx_int_t ngx_http_resend_confirmation_init_process(ngx_cycle_t *cycle) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_resend_confirmation_module));
    if (mcf == nullptr) return NGX_OK;  // no http block

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
    delete worker_parser;
    worker_parser = nullptr;
}
