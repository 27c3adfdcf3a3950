// The spool (policy `resend_confirmation_redis_failure spool`): records that
// Redis could not take in time are kept on local disk (spool_writer.cpp)
// and replayed once the link is healthy again (spool_replay.cpp). This file:
// the directive, the shared zone that counts every worker's segments (the
// master counts what the directory holds at start), the gauges, and each
// worker's start and end.
//
// Nothing under PATH is followed or blocks: segments are opened
// O_NOFOLLOW|O_NONBLOCK and kept only as regular files of the workers'
// user (or root); the master, which counts them as root, checks the same.

#include "ngx_http_resend_confirmation.h"
#include "spool/ngx_http_resend_confirmation_segment.h"

#include "core/spool_format.hpp"

#include <dirent.h>
#include <sys/random.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

using fsync_mode = ngx_http_resend_confirmation_fsync_t;
using shared_state = ngx_http_resend_confirmation_spool_shared_t;
constexpr off_t max_size_default = 64 * 1024 * 1024;
constexpr ngx_msec_t fsync_default = 1000;
constexpr size_t zone_size = 32 * 1024;

}  // namespace

ngx_uid_t ngx_http_resend_confirmation_workers_uid(ngx_cycle_t *cycle) noexcept {
    auto *ccf = reinterpret_cast<ngx_core_conf_t *>(ngx_get_conf(cycle->conf_ctx, ngx_core_module));
    return ccf != nullptr && ccf->user != static_cast<ngx_uid_t>(NGX_CONF_UNSET_UINT) ? ccf->user : geteuid();
}

int ngx_http_resend_confirmation_open_segment(const char *path, int flags, ngx_uid_t workers, struct stat *st,
                                              const char **planted) noexcept {
    *planted = nullptr;
    int fd = open(path, flags | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd == -1) {
        if (ngx_errno == ELOOP) *planted = "is a symbolic link";
        if (ngx_errno == EISDIR) *planted = "is a directory";
        return -1;
    }
    if (fstat(fd, st) == -1) {
        ngx_err_t err = ngx_errno;
        close(fd);
        ngx_set_errno(err);
        return -1;
    }
    if (S_ISDIR(st->st_mode)) {
        *planted = "is a directory";
    } else if (!S_ISREG(st->st_mode)) {
        *planted = "is not a regular file";
    } else if (st->st_uid != workers && st->st_uid != 0) {
        *planted = "belongs to another user";
    }
    if (*planted == nullptr) return fd;
    close(fd);
    return -1;
}

// --- the worker --------------------------------------------------------------------

ngx_int_t ngx_http_resend_confirmation_spool_worker_start(ngx_cycle_t *cycle) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_resend_confirmation_module));
    ngx_http_resend_confirmation_spool_worker_t spool{};
    if (mcf != nullptr && mcf->spool != nullptr) {
        spool = {mcf->spool, static_cast<shared_state *>(mcf->spool->zone->data), cycle->log};
    }
    if (ngx_http_resend_confirmation_writer_start(cycle, spool) != NGX_OK) return NGX_ERROR;
    return ngx_http_resend_confirmation_replay_start(spool);
}

void ngx_http_resend_confirmation_spool_worker_exit() noexcept {
    ngx_http_resend_confirmation_replay_exit();
    ngx_http_resend_confirmation_writer_exit();
}

ngx_http_resend_confirmation_spool_stats_t
ngx_http_resend_confirmation_spool_stats(ngx_http_resend_confirmation_main_conf_t *mcf) noexcept {
    ngx_http_resend_confirmation_spool_stats_t stats{};
    if (mcf->spool == nullptr || mcf->spool->zone->data == nullptr) return stats;
    auto *sh = static_cast<shared_state *>(mcf->spool->zone->data);
    stats.configured = true;
    stats.bytes = sh->bytes;
    stats.records = sh->records;
    stats.replayed = sh->replayed;
    stats.corrupt = sh->corrupt;
    if (stats.bytes == 0) return stats;
    // The oldest segment's name begins with when it was begun (ms).
    DIR *dir = opendir(reinterpret_cast<const char *>(mcf->spool->path.data));
    if (dir == nullptr) return stats;
    std::uint64_t oldest = 0;
    while (struct dirent *entry = readdir(dir)) {
        if (!ngx_http_resend_confirmation_is_segment_name(entry->d_name)) continue;
        struct stat st;  // a link or a FIFO under a segment's name is not one
        if (fstatat(dirfd(dir), entry->d_name, &st, AT_SYMLINK_NOFOLLOW) == -1 || !S_ISREG(st.st_mode)) continue;
        std::uint64_t begun = 0;
        for (const char *p = entry->d_name; *p >= '0' && *p <= '9'; ++p) begun = begun * 10 + (*p - '0');
        if (oldest == 0 || begun < oldest) oldest = begun;
    }
    closedir(dir);
    ngx_time_t *now = ngx_timeofday();
    std::uint64_t now_ms = static_cast<std::uint64_t>(now->sec) * 1000 + now->msec;
    if (oldest != 0 && now_ms > oldest) stats.oldest_ms = now_ms - oldest;
    return stats;
}

// --- configuration -------------------------------------------------------------------

namespace {

// A new zone counts what the directory holds (left by an earlier nginx);
// a reload keeps the running counts.
ngx_int_t init_zone(ngx_shm_zone_t *zone, void *data) noexcept {
    auto *conf = static_cast<ngx_http_resend_confirmation_spool_conf_t *>(zone->data);
    if (data != nullptr) {
        zone->data = data;
        return NGX_OK;
    }
    auto *shpool = reinterpret_cast<ngx_slab_pool_t *>(zone->shm.addr);
    if (zone->shm.exists) {
        zone->data = shpool->data;
        return NGX_OK;
    }
    auto *sh = static_cast<shared_state *>(ngx_slab_calloc(shpool, sizeof(shared_state)));
    if (sh == nullptr) return NGX_ERROR;
    shpool->data = sh;
    zone->data = sh;

    DIR *dir = opendir(reinterpret_cast<const char *>(conf->path.data));
    if (dir == nullptr) return NGX_OK;
    ngx_atomic_uint_t bytes_found = 0, records_found = 0;
    ngx_uid_t workers = ngx_http_resend_confirmation_workers_uid(conf->cycle);
    while (struct dirent *entry = readdir(dir)) {
        if (!ngx_http_resend_confirmation_is_segment_name(entry->d_name)) continue;
        char path[NGX_MAX_PATH];
        std::snprintf(path, sizeof(path), "%s/%s", reinterpret_cast<const char *>(conf->path.data), entry->d_name);
        struct stat st;
        const char *planted = nullptr;
        int fd = ngx_http_resend_confirmation_open_segment(path, O_RDONLY, workers, &st, &planted);
        if (fd == -1) {
            if (planted != nullptr) {
                ngx_log_error(NGX_LOG_WARN, zone->shm.log, 0,
                              "resend_confirmation: spool \"%s\" %s: skipped", path, planted);
            }
            continue;
        }
        if (st.st_size > 0) {
            bytes_found += st.st_size;
            // Records after the acknowledged offset (from the start when the
            // header is damaged), stepping over damage as the replay does.
            auto *bytes = static_cast<char *>(ngx_alloc(st.st_size, zone->shm.log));
            std::uint64_t acked = 0;
            unsigned version = 0;
            if (bytes != nullptr && read(fd, bytes, st.st_size) == st.st_size) {
                auto size = static_cast<size_t>(st.st_size);
                if (!resend::spool::read_header(bytes, size, &acked, &version) || acked > size) acked = 0;
                static std::string_view items[resend::spool::max_items];
                size_t at = std::max<std::uint64_t>(acked, resend::spool::header_size), record = 0, count = 0;
                while (at < size) {
                    if (resend::spool::read_record(bytes + at, size - at, &record, items, &count) ==
                        resend::spool::scan::record) {
                        ++records_found;
                        at += record;
                    } else {
                        at += resend::spool::next_record_start(bytes + at, size - at, true);
                    }
                }
            }
            if (bytes != nullptr) ngx_free(bytes);
        }
        close(fd);
    }
    closedir(dir);
    sh->bytes = bytes_found;
    sh->records = records_found;
    return NGX_OK;
}

// PATH must be a directory this process can create files in: checked by
// creating one, as the user nginx -t runs as. Not with access(): as root it
// passes whatever the directory allows. PATH belongs to the workers' user,
// who may plant links there: the probe's name is random and it is made with
// O_EXCL|O_NOFOLLOW, which never follows nor truncates anything there.
bool check_directory(ngx_conf_t *cf, const ngx_str_t &path) noexcept {
    struct stat st;
    if (stat(reinterpret_cast<const char *>(path.data), &st) == -1) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "resend_confirmation_spool \"%V\" cannot be used", &path);
        return false;
    }
    if (!S_ISDIR(st.st_mode)) {
        ngx_conf_log_error(NGX_LOG_EMERG, cf, 0, "resend_confirmation_spool \"%V\" is not a directory", &path);
        return false;
    }
    for (int attempt = 0;; ++attempt) {
        unsigned char name[8];
        if (getrandom(name, sizeof(name), GRND_NONBLOCK) != static_cast<ssize_t>(sizeof(name))) {
            auto value = static_cast<std::uint64_t>(ngx_random()) << 32 ^ static_cast<std::uint64_t>(ngx_time());
            std::memcpy(name, &value, sizeof(name));
        }
        char probe[NGX_MAX_PATH];
        int at = std::snprintf(probe, sizeof(probe), "%s/.probe-", reinterpret_cast<const char *>(path.data));
        for (unsigned char byte : name) at += std::snprintf(probe + at, sizeof(probe) - at, "%02x", byte);
        int fd = open(probe, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
        if (fd != -1) {
            close(fd);
            unlink(probe);
            return true;
        }
        if (ngx_errno != NGX_EEXIST || attempt == 3) {  // EEXIST: taken, another name
            ngx_conf_log_error(NGX_LOG_EMERG, cf, ngx_errno, "resend_confirmation_spool \"%V\" is not writable",
                               &path);
            return false;
        }
    }
}

}  // namespace

// resend_confirmation_spool PATH [max_size=SIZE] [fsync=always|off|TIME];
char *ngx_http_resend_confirmation_spool_directive(ngx_conf_t *cf, ngx_command_t *, void *conf) noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(conf);
    if (mcf->spool != nullptr) return const_cast<char *>("is duplicate");
    auto *value = static_cast<ngx_str_t *>(cf->args->elts);
    auto *spool = static_cast<ngx_http_resend_confirmation_spool_conf_t *>(
        ngx_pcalloc(cf->pool, sizeof(ngx_http_resend_confirmation_spool_conf_t)));
    if (spool == nullptr) return ngx_http_resend_confirmation_conf_error();

    ngx_str_t path = value[1];
    while (path.len > 1 && path.data[path.len - 1] == '/') --path.len;
    if (path.len == 0) return ngx_http_resend_confirmation_invalid_parameter(cf, &value[1]);
    if (ngx_conf_full_name(cf->cycle, &path, 0) != NGX_OK) return ngx_http_resend_confirmation_conf_error();
    spool->path.data = static_cast<u_char *>(ngx_pnalloc(cf->pool, path.len + 1));
    if (spool->path.data == nullptr) return ngx_http_resend_confirmation_conf_error();
    ngx_memcpy(spool->path.data, path.data, path.len);
    spool->path.data[path.len] = '\0';
    spool->path.len = path.len;
    if (path.len + 1 + ngx_http_resend_confirmation_segment_name_max >= NGX_MAX_PATH) return ngx_http_resend_confirmation_invalid_parameter(cf, &value[1]);

    spool->max_size = max_size_default;
    spool->fsync = fsync_mode::every;
    spool->fsync_interval = fsync_default;
    for (ngx_uint_t i = 2; i < cf->args->nelts; ++i) {
        ngx_str_t arg;
        if (ngx_http_resend_confirmation_has_prefix(value[i], "max_size=", &arg)) {
            spool->max_size = ngx_parse_offset(&arg);
            if (spool->max_size == NGX_ERROR || spool->max_size < 4096) {
                return ngx_http_resend_confirmation_invalid_parameter(cf, &value[i]);
            }
        } else if (ngx_http_resend_confirmation_has_prefix(value[i], "fsync=", &arg)) {
            if (ngx_http_resend_confirmation_is(arg, "always")) {
                spool->fsync = fsync_mode::always;
            } else if (ngx_http_resend_confirmation_is(arg, "off")) {
                spool->fsync = fsync_mode::off;
            } else {
                spool->fsync = fsync_mode::every;
                spool->fsync_interval = ngx_parse_time(&arg, 0);
                if (spool->fsync_interval == (ngx_msec_t) NGX_ERROR || spool->fsync_interval == 0) {
                    return ngx_http_resend_confirmation_invalid_parameter(cf, &value[i]);
                }
            }
        } else {
            return ngx_http_resend_confirmation_invalid_parameter(cf, &value[i]);
        }
    }
    if (!check_directory(cf, spool->path)) return ngx_http_resend_confirmation_conf_error();
    // As client_body_temp_path's: when the master runs as root, nginx
    // gives the directory to the workers' `user` (chown, u+rwx) before they
    // start, so that the check above (made as the user nginx -t runs as)
    // holds for the workers too.
    auto *owned = static_cast<ngx_path_t *>(ngx_pcalloc(cf->pool, sizeof(ngx_path_t)));
    if (owned == nullptr) return ngx_http_resend_confirmation_conf_error();
    owned->name = spool->path;
    owned->conf_file = cf->conf_file->file.name.data;
    owned->line = cf->conf_file->line;
    if (ngx_add_path(cf, &owned) != NGX_OK) return ngx_http_resend_confirmation_conf_error();

#if (NGX_THREADS)
    if (spool->fsync != fsync_mode::off) {
        spool->thread_pool = ngx_thread_pool_add(cf, nullptr);  // "default", as `aio threads`
        if (spool->thread_pool == nullptr) return ngx_http_resend_confirmation_conf_error();
    }
#endif
    static ngx_str_t zone_name = ngx_string("resend_confirmation_spool");
    spool->zone = ngx_shared_memory_add(cf, &zone_name, zone_size, &ngx_http_resend_confirmation_module);
    if (spool->zone == nullptr) return ngx_http_resend_confirmation_conf_error();
    spool->zone->init = init_zone;
    spool->zone->data = spool;
    spool->cycle = cf->cycle;
    mcf->spool = spool;
    return NGX_CONF_OK;
}
