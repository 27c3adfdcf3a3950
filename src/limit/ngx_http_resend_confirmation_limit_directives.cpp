// The rate-limit directives: resend_confirmation_limit_zone (a zone, and
// when it is checked: its kind is decided here, once, from the compiled
// key), resend_confirmation_limit (a zone applied to a level) and
// resend_confirmation_limit_secret (the HMAC key of email zones, read from
// its file). They are registered with the others in module.cpp; the zones
// themselves and the per-request check are limit.cpp.

#include "ngx_http_resend_confirmation.h"
#include "limit/ngx_http_resend_confirmation_limit.h"

#include <optional>

namespace {

// True when the compiled `key` reads the variable `index` itself (not
// through another variable, such as a map's). nginx lists every variable a
// compiled value reads in `flushes`, ended by (ngx_uint_t) -1.
bool key_reads(const ngx_http_complex_value_t &key, ngx_int_t index) noexcept {
    if (key.flushes == nullptr) return false;  // no variables at all
    for (ngx_uint_t *v = key.flushes; *v != static_cast<ngx_uint_t>(-1); ++v) {
        if (*v == static_cast<ngx_uint_t>(index)) return true;
    }
    return false;
}

// zone=NAME:SIZE of resend_confirmation_limit_zone (`arg`: its value).
char *zone_param(ngx_conf_t *cf, ngx_str_t *param, ngx_str_t arg, ngx_str_t *name, ssize_t *size) noexcept {
    u_char *end = arg.data + arg.len;
    u_char *colon = ngx_strlchr(arg.data, end, ':');
    if (colon == nullptr) return ngx_http_resend_confirmation_invalid_parameter(cf, param);
    *name = {static_cast<size_t>(colon - arg.data), arg.data};
    ngx_str_t s = {static_cast<size_t>(end - colon - 1), colon + 1};
    *size = ngx_parse_size(&s);
    if (name->len == 0 || *size == NGX_ERROR) return ngx_http_resend_confirmation_invalid_parameter(cf, param);
    if (*size < static_cast<ssize_t>(8 * ngx_pagesize)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "zone \"%V\" is too small: at least %uz bytes", name,
                           8 * ngx_pagesize);
        return ngx_http_resend_confirmation_conf_error();
    }
    return NGX_CONF_OK;
}

}  // namespace

std::optional<resend::rate> ngx_http_resend_confirmation_rate_param(ngx_conf_t *cf, ngx_str_t *param,
                                                                    ngx_str_t arg) noexcept {
    std::optional<resend::rate> rate = resend::parse_rate(ngx_http_resend_confirmation_view(arg));
    if (!rate) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "invalid rate \"%V\": use Nr/s, Nr/m, Nr/h or Nr/d", param);
    }
    return rate;
}

ngx_int_t ngx_http_resend_confirmation_burst_param(ngx_str_t arg, ngx_uint_t max) noexcept {
    ngx_int_t burst = ngx_atoi(arg.data, arg.len);
    return burst != NGX_ERROR && static_cast<ngx_uint_t>(burst) <= max ? burst : NGX_ERROR;
}

// resend_confirmation_limit_zone KEY zone=NAME:SIZE rate=RATE [after_validation];
char *ngx_http_resend_confirmation_limit_zone(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);

    auto *zone = static_cast<ngx_http_resend_confirmation_zone_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_zone_t)));
    if (zone == nullptr) return ngx_http_resend_confirmation_conf_error();
    zone->mcf = mcf;

    if (!ngx_http_resend_confirmation_compile(cf, &value[1], &zone->key)) {
        return ngx_http_resend_confirmation_conf_error();
    }
    static ngx_str_t email_variable = ngx_string("resend_confirmation_email");
    zone->email_index = ngx_http_get_variable_index(cf, &email_variable);
    if (zone->email_index == NGX_ERROR) return ngx_http_resend_confirmation_conf_error();
    bool after_validation = key_reads(zone->key, zone->email_index);
    zone->cmcf = static_cast<ngx_http_core_main_conf_t *>(
        ngx_http_conf_get_module_main_conf(cf, ngx_http_core_module));

    ngx_str_t name = ngx_null_string;
    ssize_t size = 0;
    bool have_rate = false;
    for (ngx_uint_t i = 2; i < cf->args->nelts; ++i) {
        ngx_str_t arg;
        if (ngx_http_resend_confirmation_has_prefix(value[i], "zone=", &arg)) {
            char *rv = zone_param(cf, &value[i], arg, &name, &size);
            if (rv != NGX_CONF_OK) return rv;
        } else if (ngx_http_resend_confirmation_is(value[i], "after_validation")) {
            after_validation = true;
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "rate=", &arg)) {
            std::optional<resend::rate> rate = ngx_http_resend_confirmation_rate_param(cf, &value[i], arg);
            if (!rate) return ngx_http_resend_confirmation_conf_error();
            zone->rate = *rate;
            have_rate = true;
        } else {
            return ngx_http_resend_confirmation_invalid_parameter(cf, &value[i]);
        }
    }
    if (name.len == 0 || !have_rate) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" needs \"zone=NAME:SIZE\" and \"rate=\"",
                           &value[0]);
        return ngx_http_resend_confirmation_conf_error();
    }
    zone->name = name;
    zone->phase = after_validation ? ngx_http_resend_confirmation_limit_phase_t::email
                                   : ngx_http_resend_confirmation_limit_phase_t::client;

    ngx_shm_zone_t *shm_zone =
        ngx_shared_memory_add(cf, &name, size, &ngx_http_resend_confirmation_module);
    if (shm_zone == nullptr) return ngx_http_resend_confirmation_conf_error();
    if (shm_zone->data != nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "duplicate zone \"%V\"", &name);
        return ngx_http_resend_confirmation_conf_error();
    }
    shm_zone->init = ngx_http_resend_confirmation_limit_init_zone;
    shm_zone->data = zone;
    return NGX_CONF_OK;
}

// resend_confirmation_limit zone=NAME [burst=N] [silent];
char *ngx_http_resend_confirmation_limit(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *lcf = static_cast<ngx_http_resend_confirmation_loc_conf_t *>(conf);
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);

    ngx_shm_zone_t *shm_zone = nullptr;
    ngx_int_t burst = 0;
    bool silent = false;
    for (ngx_uint_t i = 1; i < cf->args->nelts; ++i) {
        ngx_str_t arg;
        if (ngx_http_resend_confirmation_has_prefix(value[i], "zone=", &arg)) {
            shm_zone = ngx_shared_memory_add(cf, &arg, 0, &ngx_http_resend_confirmation_module);
            if (shm_zone == nullptr) return ngx_http_resend_confirmation_conf_error();
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "burst=", &arg)) {
            burst = ngx_http_resend_confirmation_burst_param(arg, 1000000);
            if (burst == NGX_ERROR) goto invalid;
        } else if (ngx_http_resend_confirmation_is(value[i], "silent")) {
            silent = true;
        } else {
            goto invalid;
        }
        continue;
    invalid:
        return ngx_http_resend_confirmation_invalid_parameter(cf, &value[i]);
    }
    if (shm_zone == nullptr) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "\"%V\" needs \"zone=NAME\"", &value[0]);
        return ngx_http_resend_confirmation_conf_error();
    }

    if (lcf->limits == NGX_CONF_UNSET_PTR || lcf->limits == nullptr) {
        lcf->limits = ngx_array_create(cf->pool, 2, sizeof(ngx_http_resend_confirmation_limit_t));
        if (lcf->limits == nullptr) return ngx_http_resend_confirmation_conf_error();
    }
    auto *limits = static_cast<ngx_http_resend_confirmation_limit_t *>(lcf->limits->elts);
    for (ngx_uint_t i = 0; i < lcf->limits->nelts; ++i) {
        if (limits[i].shm_zone == shm_zone) return const_cast<char *>("is duplicate");
    }
    auto *limit = static_cast<ngx_http_resend_confirmation_limit_t *>(ngx_array_push(lcf->limits));
    if (limit == nullptr) return ngx_http_resend_confirmation_conf_error();
    limit->shm_zone = shm_zone;
    limit->burst = static_cast<ngx_uint_t>(burst);
    limit->silent = silent;
    return NGX_CONF_OK;
}

// resend_confirmation_limit_secret FILE;  (at least 16 bytes, read at start)
// A regular file (opened without blocking, so a FIFO named there cannot
// hang nginx -t); one others than its owner can read or write is taken,
// with a [warn]: anyone who reads it can compute the keys of any address.
char *ngx_http_resend_confirmation_limit_secret(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(conf);
    if (mcf->limit_secret.data != nullptr) return const_cast<char *>("is duplicate");
    ngx_str_t path = static_cast<ngx_str_t *>(cf->args->elts)[1];
    if (ngx_conf_full_name(cf->cycle, &path, 1) != NGX_OK) return ngx_http_resend_confirmation_conf_error();

    ngx_fd_t fd = ngx_open_file(path.data, NGX_FILE_RDONLY | NGX_FILE_NONBLOCK, NGX_FILE_OPEN, 0);
    if (fd == NGX_INVALID_FILE) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "cannot open the secret file \"%V\"", &path);
        return ngx_http_resend_confirmation_conf_error();
    }
    ngx_file_info_t info;
    if (ngx_fd_info(fd, &info) == NGX_FILE_ERROR) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, ngx_fd_info_n " \"%V\" failed", &path);
        ngx_close_file(fd);
        return ngx_http_resend_confirmation_conf_error();
    }
    if (!ngx_is_file(&info)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "the secret file \"%V\" is %s", &path,
                           ngx_is_dir(&info) ? "a directory" : "not a regular file");
        ngx_close_file(fd);
        return ngx_http_resend_confirmation_conf_error();
    }
    ngx_uint_t mode = ngx_file_access(&info);
    if ((mode & 077) != 0) {
        ngx_conf_log_error(NGX_LOG_WARN, cf, 0,
                           "the secret file \"%V\" is open to others than its owner (mode 0%ui%ui%ui): "
                           "make it 0600 or 0400",
                           &path, mode >> 6 & 7, mode >> 3 & 7, mode & 7);
    }
    u_char buffer[4096];
    ssize_t n = read(fd, buffer, sizeof(buffer));
    ngx_err_t read_error = n < 0 ? ngx_errno : 0;
    ngx_close_file(fd);
    if (n < 0) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, read_error, "cannot read the secret file \"%V\"", &path);
        return ngx_http_resend_confirmation_conf_error();
    }
    while (n > 0 && (buffer[n - 1] == '\n' || buffer[n - 1] == '\r')) --n;
    if (n < 16) {
        ngx_explicit_memzero(buffer, sizeof(buffer));
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0,
                           "the secret in \"%V\" is shorter than 16 bytes", &path);
        return ngx_http_resend_confirmation_conf_error();
    }
    mcf->limit_secret.data = static_cast<u_char *>(ngx_pnalloc(cf->pool, n));
    if (mcf->limit_secret.data == nullptr) return ngx_http_resend_confirmation_conf_error();
    ngx_memcpy(mcf->limit_secret.data, buffer, n);
    mcf->limit_secret.len = n;
    ngx_explicit_memzero(buffer, sizeof(buffer));
    return NGX_CONF_OK;
}
