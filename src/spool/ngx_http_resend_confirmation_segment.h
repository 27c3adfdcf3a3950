// Inside the spool: what its files share. The configuration and the zone
// (spool_directive.cpp), segment files and their names, and what the
// writer (spool_writer.cpp) and the replayer (spool_replay.cpp) ask of
// each other; each keeps its own state.
#pragma once

#include "spool/ngx_http_resend_confirmation_spool.h"

#include <sys/stat.h>

#include <cstdio>
#include <cstring>

enum class ngx_http_resend_confirmation_fsync_t : unsigned char { off, always, every };

struct ngx_http_resend_confirmation_spool_conf_s {
    ngx_str_t path;  // the directory, without a trailing slash, null-terminated
    off_t max_size;
    ngx_http_resend_confirmation_fsync_t fsync;
    ngx_msec_t fsync_interval;
    ngx_shm_zone_t *zone;
    ngx_cycle_t *cycle;  // the one configured: init_zone() finds `user` there
#if (NGX_THREADS)
    ngx_thread_pool_t *thread_pool;
#endif
};

// In the spool's shared zone: every worker's, kept across reloads.
struct ngx_http_resend_confirmation_spool_shared_t {
    ngx_atomic_t bytes;     // of segment files on disk
    ngx_atomic_t records;   // kept, not yet acknowledged by Redis
    ngx_atomic_t replayed;  // acknowledged by Redis on replay
    ngx_atomic_t corrupt;   // damaged spans skipped, damaged headers
};

// What the writer and the replayer of a worker both start from.
struct ngx_http_resend_confirmation_spool_worker_t {
    ngx_http_resend_confirmation_spool_conf_t *conf;  // null: no spool
    ngx_http_resend_confirmation_spool_shared_t *sh;
    ngx_log_t *log;
};

// Sets up a spool timer or posted event. nginx's debug lines read an
// event's data as a connection (its fd): it must point to readable memory.
inline void ngx_http_resend_confirmation_spool_event(ngx_event_t *ev, ngx_event_handler_pt handler, void *data,
                                                     ngx_log_t *log) noexcept {
    ev->handler = handler;
    ev->data = data;
    ev->log = log;
    ev->cancelable = 1;
}

// A segment's name (`<ms>-<pid>-<n>.seg`) is shorter than this.
constexpr size_t ngx_http_resend_confirmation_segment_name_max = 64;

inline bool ngx_http_resend_confirmation_is_segment_name(const char *name) noexcept {
    size_t n = std::strlen(name);
    return n > 4 && n < ngx_http_resend_confirmation_segment_name_max && std::strcmp(name + n - 4, ".seg") == 0 &&
           name[0] >= '0' && name[0] <= '9';
}

inline void ngx_http_resend_confirmation_segment_path(const ngx_http_resend_confirmation_spool_conf_t *conf,
                                                      char *out, size_t size, const char *name) noexcept {
    std::snprintf(out, size, "%s/%s", reinterpret_cast<const char *>(conf->path.data), name);
}

// A log line that could come with every request, record or tick: true
// when the last one (at *last) is `interval` old or more.
inline bool ngx_http_resend_confirmation_once_every(ngx_msec_t *last, ngx_msec_t interval) noexcept {
    if (*last != 0 && ngx_current_msec - *last < interval) return false;
    *last = ngx_current_msec;
    return true;
}

inline bool ngx_http_resend_confirmation_once_a_second(ngx_msec_t *last) noexcept {
    return ngx_http_resend_confirmation_once_every(last, 1000);
}

// spool_directive.cpp
// The user the workers run as: `user` when the master runs as root, else
// whoever runs nginx.
ngx_uid_t ngx_http_resend_confirmation_workers_uid(ngx_cycle_t *cycle) noexcept;
// Opens a segment with `flags`, never following a link nor blocking (a
// FIFO), and keeps it only as a regular file of the workers' user or root:
// PATH belongs to the workers' user, and the master (root) reads it too.
// -1 with *planted saying what the entry is when it is not a segment,
// else with errno from open().
int ngx_http_resend_confirmation_open_segment(const char *path, int flags, ngx_uid_t workers, struct stat *st,
                                              const char **planted) noexcept;

// spool_writer.cpp
ngx_int_t ngx_http_resend_confirmation_writer_start(ngx_cycle_t *cycle,
                                                   const ngx_http_resend_confirmation_spool_worker_t &spool) noexcept;
void ngx_http_resend_confirmation_writer_exit() noexcept;
// The segment being written: whether `name` is it; its size (0: none).
bool ngx_http_resend_confirmation_writer_holds(const char *name) noexcept;
off_t ngx_http_resend_confirmation_writer_size() noexcept;
// Stops appending to the current segment, which any worker may then replay.
void ngx_http_resend_confirmation_writer_seal() noexcept;

// spool_replay.cpp
ngx_int_t ngx_http_resend_confirmation_replay_start(const ngx_http_resend_confirmation_spool_worker_t &spool) noexcept;
void ngx_http_resend_confirmation_replay_exit() noexcept;
// A record was kept: the replayer looks for it soon, unless it already will.
void ngx_http_resend_confirmation_replay_kept() noexcept;
