// The spool's writer: each worker appends to a segment file of its own,
// `PATH/<ms>-<pid>-<n>.seg` (the format: src/core/spool_format.hpp), which
// it holds with an exclusive flock() while it writes. An append is one
// pwrite() into the page cache, as access_log writes; nothing waits for the
// disk on the event loop. fsync=TIME syncs the segment on a timer,
// fsync=always before the 200 is sent; both in nginx's thread pool (on the
// event loop where nginx has no threads). An append that would take the
// spool past max_size, or that the disk refuses (ENOSPC), is not kept and
// the request is answered 503.

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"
#include "limit/ngx_http_resend_confirmation_limit.h"
#include "redis/ngx_http_resend_confirmation_redis.h"
#include "spool/ngx_http_resend_confirmation_segment.h"

#include "core/spool_format.hpp"

#include <sys/file.h>

#include <cstring>

namespace {

using fsync_mode = ngx_http_resend_confirmation_fsync_t;
constexpr size_t name_max = ngx_http_resend_confirmation_segment_name_max;
// A segment is sealed (and a new one begun) past this size, so that no
// segment outlives its records for long.
constexpr off_t segment_max = 4 * 1024 * 1024;

// One fsync in the thread pool: of `fd`, closed afterwards when `close_fd`,
// and of the directory (`dir`, null: not) when a segment was begun since.
struct sync_job {
    int fd;
    bool close_fd;
    const char *dir;
    bool failed;
    ngx_uint_t generation;  // appends up to this one are on disk when it is done
};


// A request waiting for its record's fsync (fsync=always).
struct waiter {
    ngx_queue_t queue;
    ngx_http_request_t *r;
    ngx_uint_t generation;
};

// This worker's segment, and its fsyncs.
struct writer : ngx_http_resend_confirmation_spool_worker_t {
    // The segment this worker appends to.
    int fd;
    off_t size;
    char name[name_max];
    ngx_uint_t sequence;      // segments begun by this worker
    ngx_uint_t generation;    // appends so far
    ngx_uint_t synced;        // appends known to be on disk
    bool dirty;
    bool dir_dirty;           // a segment was named since PATH was last synced
    ngx_event_t fsync_timer;  // fsync=TIME
    ngx_queue_t waiters;      // fsync=always
    bool syncing;             // an fsync task is out
    sync_job loop_job;        // an fsync done on the event loop (no thread pool)
    // Segments sealed with unsynced appends while an fsync was out, oldest
    // first: each synced (then closed) in turn, up to its last append.
    struct {
        int fd;
        ngx_uint_t generation;
    } sealed[4];
    ngx_uint_t nsealed;
    ngx_msec_t full_logged;   // when "full" was last logged
#if (NGX_THREADS)
    ngx_thread_task_t *task;
#endif
};

writer W;  // this worker's; workers are single-threaded

// --- fsync -------------------------------------------------------------------------


// fdatasync() of `fd`, then of the directory `dir` (unless null): a
// segment's name is on disk only once its directory is synced.
bool sync_files(int fd, const char *dir, ngx_log_t *log) noexcept {
    if (fdatasync(fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno, "resend_confirmation: spool fdatasync() failed");
        return false;
    }
    if (dir == nullptr) return true;
    int dir_fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (dir_fd == -1 || fsync(dir_fd) == -1) {
        ngx_log_error(NGX_LOG_ALERT, log, ngx_errno, "resend_confirmation: spool fsync(\"%s\") failed", dir);
        if (dir_fd != -1) close(dir_fd);
        return false;
    }
    close(dir_fd);
    return true;
}

void sync_finished(sync_job *job) noexcept;

// The job's fsync(s), then its fd closed when it says so: in a thread of
// the pool, or on the event loop.
void run_sync_job(sync_job *job, ngx_log_t *log) noexcept {
    job->failed = !sync_files(job->fd, job->dir, log);
    if (job->close_fd) close(job->fd);
}

// Syncs `fd`, its appends up to `generation`, off the event loop (in
// nginx's thread pool; on it where nginx has no threads), then closes it
// when `close_fd`.
void sync_start(int fd, bool close_fd, ngx_uint_t generation) noexcept {
    W.syncing = true;
    sync_job *job = &W.loop_job;
#if (NGX_THREADS)
    if (W.conf->thread_pool != nullptr && W.task != nullptr) job = static_cast<sync_job *>(W.task->ctx);
#endif
    job->fd = fd;
    job->close_fd = close_fd;
    job->dir = W.dir_dirty ? reinterpret_cast<const char *>(W.conf->path.data) : nullptr;
    job->failed = false;
    job->generation = generation;
    W.dir_dirty = false;
#if (NGX_THREADS)
    if (job != &W.loop_job && ngx_thread_task_post(W.conf->thread_pool, W.task) == NGX_OK) return;
#endif
    run_sync_job(job, W.log);
    sync_finished(job);
}

#if (NGX_THREADS)
void sync_in_thread(void *data, ngx_log_t *log) noexcept { run_sync_job(static_cast<sync_job *>(data), log); }

void sync_done(ngx_event_t *ev) noexcept {
    sync_finished(static_cast<sync_job *>(static_cast<ngx_thread_task_t *>(ev->data)->ctx));
}
#endif

// Answers the requests whose records are on disk now (fsync=always).
void wake_waiters(bool failed) noexcept {
    while (!ngx_queue_empty(&W.waiters)) {
        ngx_queue_t *q = ngx_queue_head(&W.waiters);
        auto *w = ngx_queue_data(q, waiter, queue);
        if (!failed && static_cast<ngx_int_t>(w->generation - W.synced) > 0) break;
        ngx_queue_remove(q);
        ngx_queue_init(q);  // the request's cleanup finds it out of the queue
        ngx_http_request_t *r = w->r;
        auto *ctx = ngx_http_resend_confirmation_get_ctx(r);
        ngx_connection_t *c = r->connection;
        // A failed fsync: the record is in the file and may still be
        // replayed, but the disk did not say it has it.
        ngx_http_finalize_request(r, ngx_http_resend_confirmation_answer(
                                         r, ctx, failed ? resend::outcome::redis_timeout
                                                        : ngx_http_resend_confirmation_spooled(ctx)));
        ngx_http_run_posted_requests(c);
    }
}

// The oldest segment sealed while a sync was out, out of the queue.
auto pop_sealed() noexcept {
    auto oldest = W.sealed[0];
    std::memmove(&W.sealed[0], &W.sealed[1], --W.nsealed * sizeof(W.sealed[0]));
    return oldest;
}

void sync_finished(sync_job *job) noexcept {
    W.syncing = false;
    if (job->failed) {
        W.dir_dirty = W.dir_dirty || job->dir != nullptr;  // synced with the next one
    } else {
        W.synced = job->generation;
    }
    wake_waiters(job->failed);
    if (W.syncing) return;
    // Segments sealed meanwhile first, then appends that came while it ran.
    if (W.nsealed > 0) {
        auto next = pop_sealed();
        sync_start(next.fd, true, next.generation);
        return;
    }
    if (!ngx_queue_empty(&W.waiters) && W.fd != -1) {
        int fd = dup(W.fd);
        if (fd == -1) {
            wake_waiters(true);
            return;
        }
        W.dirty = false;
        sync_start(fd, true, W.generation);
    }
}

void fsync_tick(ngx_event_t *) noexcept {
    if (W.dirty && W.fd != -1 && !W.syncing) {
        int fd = dup(W.fd);
        if (fd != -1) {
            W.dirty = false;
            sync_start(fd, true, W.generation);
        }
    }
    if (W.fd != -1) ngx_add_timer(&W.fsync_timer, W.conf->fsync_interval);
}

// --- writing -----------------------------------------------------------------------

// Stops appending to the current segment: it is synced (unless fsync=off)
// and closed, which lets its lock go, and any worker may replay it.
void seal() noexcept {
    if (W.fd == -1) return;
    int fd = W.fd;
    W.fd = -1;
    if (W.fsync_timer.timer_set) ngx_del_timer(&W.fsync_timer);
    if (W.conf->fsync != fsync_mode::off && W.dirty) {
        W.dirty = false;
        if (!W.syncing) {
            sync_start(fd, true, W.generation);
            return;
        }
        // Its turn comes when the syncs before it end (fsync=always:
        // requests wait for it, and must not be woken by another file's).
        if (W.nsealed == sizeof(W.sealed) / sizeof(W.sealed[0])) {
            // Sealed five times within one fsync (4 MB segments): the oldest
            // is synced here, on the event loop; if that fails, every
            // waiting request is told so (503).
            auto oldest = pop_sealed();
            if (!sync_files(oldest.fd, nullptr, W.log)) wake_waiters(true);
            close(oldest.fd);
        }
        W.sealed[W.nsealed++] = {fd, W.generation};
        return;
    }
    // fsync=off: the kernel writes it back in its own time.
    close(fd);
}

// The spool cannot keep a record (full, or the disk refuses): the request
// is answered 503. Once a second at most: it would otherwise log every request.
void log_full(const char *why, ngx_err_t err) noexcept {
    if (!ngx_http_resend_confirmation_once_a_second(&W.full_logged)) return;
    ngx_log_error(NGX_LOG_ERR, W.log, err,
                  "resend_confirmation: spool \"%V\" %s: requests are answered 503 until it can keep "
                  "records again",
                  &W.conf->path, why);
}

bool open_segment() noexcept {
    ngx_time_t *now = ngx_timeofday();
    char name[name_max];
    std::snprintf(name, sizeof(name), "%013llu-%d-%lu.seg",
                  static_cast<unsigned long long>(now->sec) * 1000 + now->msec, static_cast<int>(ngx_pid),
                  static_cast<unsigned long>(++W.sequence));
    // Made under a name no replayer looks at, locked, its header written,
    // then renamed: a segment is never seen unlocked before it is whole.
    char path[NGX_MAX_PATH], draft[NGX_MAX_PATH + 8];
    ngx_http_resend_confirmation_segment_path(W.conf, path, sizeof(path), name);
    std::snprintf(draft, sizeof(draft), "%s.new", path);
    // O_EXCL|O_NOFOLLOW: nothing planted at that name is followed or truncated.
    int fd = open(draft, O_RDWR | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd == -1) {
        log_full("cannot begin a segment", ngx_errno);  // once a second, not per request
        return false;
    }
    char header[resend::spool::header_size];
    resend::spool::write_header(header, resend::spool::header_size);
    if (flock(fd, LOCK_EX | LOCK_NB) == -1 ||
        pwrite(fd, header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)) ||
        rename(draft, path) == -1) {
        log_full("cannot begin a segment", ngx_errno);
        close(fd);
        unlink(draft);
        return false;
    }
    W.fd = fd;
    W.size = sizeof(header);
    W.dir_dirty = true;
    std::memcpy(W.name, name, sizeof(name));
    (void) ngx_atomic_fetch_add(&W.sh->bytes, sizeof(header));
    if (W.conf->fsync == fsync_mode::every) ngx_add_timer(&W.fsync_timer, W.conf->fsync_interval);
    return true;
}


void waiter_cleanup(void *data) noexcept {
    auto *w = static_cast<waiter *>(data);
    if (ngx_queue_next(&w->queue) != &w->queue) {  // still waiting: the request went away
        ngx_queue_remove(&w->queue);
    }
    ngx_queue_init(&w->queue);
}

}  // namespace

ngx_int_t ngx_http_resend_confirmation_spool_append(ngx_http_request_t *r,
                                                   ngx_http_resend_confirmation_ctx_t *ctx) noexcept {
    if (W.conf == nullptr) return NGX_DECLINED;
    auto *lcf = ngx_http_resend_confirmation_loc_conf(r);

    // The record as kept (core/spool_format.hpp): where it was going, its
    // shared limits as the script takes them, then its fields as sent. A
    // silenced request's entry goes to its silence stream, without limits.
    bool silenced = ctx->silence_key.size() != 0;
    std::span<const std::string_view> limits;
    std::string_view dry_run = "0";
    if (lcf->shared_limits != nullptr && !silenced &&
        !ngx_http_resend_confirmation_shared_limit_sent(ctx, &limits, &dry_run)) {
        return NGX_DECLINED;  // its limits were never worked out (out of memory)
    }
    u_char nlimits[NGX_INT_T_LEN];
    size_t count = resend::spool::items_before_limits + limits.size() + ctx->nfields;
    auto *items = static_cast<std::string_view *>(ngx_palloc(r->pool, count * sizeof(std::string_view)));
    if (items == nullptr) return NGX_DECLINED;
    size_t at = 0;
    items[at++] = ngx_http_resend_confirmation_view(lcf->redis->spool_name);
    items[at++] = silenced ? ctx->silence_key : ngx_http_resend_confirmation_view(lcf->stream);
    items[at++] = silenced ? "1" : ngx_http_resend_confirmation_view(lcf->maxlen_text);
    items[at++] = {reinterpret_cast<const char *>(nlimits),
                   static_cast<size_t>(ngx_sprintf(nlimits, "%uz", limits.size() / 4) - nlimits)};
    items[at++] = dry_run;
    for (std::string_view item : limits) items[at++] = item;
    for (ngx_uint_t i = 0; i < ctx->nfields; ++i) items[at++] = ctx->fields[i];
    size_t size = resend::spool::record_size({items, count});
    if (size == 0) return NGX_DECLINED;

    off_t more = static_cast<off_t>(size) + (W.fd == -1 ? resend::spool::header_size : 0);
    if (static_cast<off_t>(W.sh->bytes) + more > W.conf->max_size) {
        log_full("is full (max_size)", 0);
        return NGX_DECLINED;
    }
    if (W.fd != -1 && W.size + static_cast<off_t>(size) > segment_max) seal();
    if (W.fd == -1 && !open_segment()) return NGX_DECLINED;

    auto *bytes = static_cast<char *>(ngx_pnalloc(r->pool, size));
    if (bytes == nullptr) return NGX_DECLINED;
    resend::spool::write_record(bytes, {items, count});
    ssize_t n = pwrite(W.fd, bytes, size, W.size);
    if (n != static_cast<ssize_t>(size)) {
        ngx_err_t err = n == -1 ? ngx_errno : NGX_ENOSPC;
        if (n > 0 && ftruncate(W.fd, W.size) == -1) {
            // The torn record stays; a reader truncates it. Nothing after
            // it may be appended: begin a new segment.
            seal();
        }
        log_full(err == NGX_ENOSPC ? "has no space left" : "cannot be written", err);
        return NGX_DECLINED;
    }
    W.size += size;
    ++W.generation;
    W.dirty = true;
    (void) ngx_atomic_fetch_add(&W.sh->bytes, size);
    (void) ngx_atomic_fetch_add(&W.sh->records, 1);
    ngx_log_debug1(NGX_LOG_DEBUG_HTTP, r->connection->log, 0, "resend_confirmation: record spooled in %s",
                   W.name);
    ngx_http_resend_confirmation_replay_kept();

    if (W.conf->fsync != fsync_mode::always) return NGX_OK;
    auto *w = static_cast<waiter *>(ngx_palloc(r->pool, sizeof(waiter)));
    ngx_pool_cleanup_t *cleanup = ngx_pool_cleanup_add(r->pool, 0);
    if (w == nullptr || cleanup == nullptr) return NGX_BUSY;
    w->r = r;
    w->generation = W.generation;
    ngx_queue_insert_tail(&W.waiters, &w->queue);
    cleanup->handler = waiter_cleanup;
    cleanup->data = w;
    r->main->count++;  // the caller finalizes with NGX_DONE; the fsync's end answers
    if (!W.syncing) {
        int fd = dup(W.fd);
        if (fd == -1) {
            ngx_queue_remove(&w->queue);
            ngx_queue_init(&w->queue);
            r->main->count--;
            return NGX_BUSY;
        }
        W.dirty = false;
        sync_start(fd, true, W.generation);
    }
    return NGX_AGAIN;
}


ngx_int_t ngx_http_resend_confirmation_writer_start(ngx_cycle_t *cycle,
                                                   const ngx_http_resend_confirmation_spool_worker_t &spool) noexcept {
    ngx_memzero(&W, sizeof(W));
    W.fd = -1;
    if (spool.conf == nullptr) return NGX_OK;
    static_cast<ngx_http_resend_confirmation_spool_worker_t &>(W) = spool;
    ngx_queue_init(&W.waiters);
    ngx_http_resend_confirmation_spool_event(&W.fsync_timer, fsync_tick, &W, W.log);
#if (NGX_THREADS)
    if (W.conf->thread_pool != nullptr) {
        W.task = ngx_thread_task_alloc(cycle->pool, sizeof(sync_job));
        if (W.task == nullptr) return NGX_ERROR;
        W.task->handler = sync_in_thread;
        W.task->event.handler = sync_done;
        W.task->event.data = W.task;
        W.task->event.log = cycle->log;
    }
#endif
    return NGX_OK;
}

void ngx_http_resend_confirmation_writer_exit() noexcept {
    if (W.conf == nullptr) return;
    for (ngx_uint_t i = 0; i < W.nsealed; ++i) {
        (void) fdatasync(W.sealed[i].fd);  // exit only
        close(W.sealed[i].fd);
    }
    W.nsealed = 0;
    if (W.fd != -1) {
        // The last appends reach the disk before the lock goes (exit only).
        if (W.conf->fsync != fsync_mode::off && W.dirty) (void) fdatasync(W.fd);
        close(W.fd);
        W.fd = -1;
    }
    W.conf = nullptr;
}

bool ngx_http_resend_confirmation_writer_holds(const char *name) noexcept {
    return W.fd != -1 && std::strcmp(name, W.name) == 0;
}

off_t ngx_http_resend_confirmation_writer_size() noexcept { return W.fd != -1 ? W.size : 0; }

void ngx_http_resend_confirmation_writer_seal() noexcept { seal(); }
