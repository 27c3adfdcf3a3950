// The spool (policy `resend_confirmation_redis_failure spool`): records that
// Redis could not take in time are kept on local disk and replayed once the
// link is healthy again.
//
// - Each worker appends to a segment file of its own, `PATH/<ms>-<pid>-<n>.seg`
//   (the format: src/core/spool_format.hpp), which it holds with an
//   exclusive flock() while it writes. An append is one pwrite() into the
//   page cache, as access_log writes; nothing waits for the disk on the
//   event loop. fsync=TIME syncs the segment on a timer, fsync=always before
//   the 200 is sent; both in nginx's thread pool (on the event loop where
//   nginx has no threads).
// - A record keeps what its request's command was made of: the stream, the
//   fields as sent, and the keys and rates of its shared limits (already
//   keyed: no address in clear), so that the replay sends the very command
//   a live request sends: the shared-limit script (fleet limits apply when
//   it reaches Redis; NOSCRIPT: sent again with EVAL), or XADD.
// - A segment that no process holds (its worker sealed it, died, or was an
//   earlier nginx's) is adopted: locked by one worker, replayed from the
//   offset its header says is acknowledged, in order, at most
//   `max_in_flight` commands at a time, then deleted. Replies may come in
//   any order (records for several Redis); the acknowledged offset moves
//   over the records answered without a gap, and is written back to the
//   header as they come: a reload or restart goes on from there (commands
//   in flight then are sent again: at least once).
// - A record that does not read back whole (a CRC mismatch, a damaged
//   length) is skipped: the replay goes on at the next offset where a whole
//   record reads (core: next_record_start), so only the damage is lost. A
//   segment whose header is damaged is read record by record from its
//   start. Damage at the end (a torn tail) is cut off. One line per segment.
// - Nothing under PATH is followed or blocks: segments are opened
//   O_NOFOLLOW|O_NONBLOCK and kept only as regular files of the workers'
//   user (or root); the master, which counts them as root, checks the same.
// - The spool's size (every worker's segments) is kept in a shared zone:
//   an append that would take it past max_size, or that the disk refuses
//   (ENOSPC), is not kept and the request is answered 503.

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"
#include "limit/ngx_http_resend_confirmation_limit.h"
#include "metrics/ngx_http_resend_confirmation_metrics.h"
#include "redis/ngx_http_resend_confirmation_redis.h"
#include "spool/ngx_http_resend_confirmation_spool.h"

#include "core/shared_limit.hpp"
#include "core/spool_format.hpp"

#include <dirent.h>
#include <sys/file.h>
#include <sys/random.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstring>

namespace {

enum class fsync_mode : unsigned char { off, always, every };

constexpr off_t max_size_default = 64 * 1024 * 1024;
constexpr ngx_msec_t fsync_default = 1000;
// Replay commands in flight per worker: live requests never wait behind more.
constexpr ngx_uint_t max_in_flight = 32;
// A segment is sealed (and a new one begun) past this size, so that no
// segment outlives its records for long.
constexpr off_t segment_max = 4 * 1024 * 1024;
constexpr ngx_msec_t idle_interval = 1000;   // looking for work while nothing is spooled
constexpr ngx_msec_t retry_interval = 1000;  // after a failed replay, or Redis not ready
constexpr size_t max_scanned = 1024;          // segment names looked at per scan
constexpr size_t name_max = 64;
constexpr size_t zone_size = 32 * 1024;

}  // namespace

struct ngx_http_resend_confirmation_spool_conf_s {
    ngx_str_t path;  // the directory, without a trailing slash, null-terminated
    off_t max_size;
    fsync_mode fsync;
    ngx_msec_t fsync_interval;
    ngx_shm_zone_t *zone;
    ngx_cycle_t *cycle;  // the one configured: init_zone() finds `user` there
#if (NGX_THREADS)
    ngx_thread_pool_t *thread_pool;
#endif
};

namespace {

// In the spool's shared zone: every worker's, kept across reloads.
struct shared_state {
    ngx_atomic_t bytes;     // of segment files on disk
    ngx_atomic_t records;   // kept, not yet acknowledged by Redis
    ngx_atomic_t replayed;  // acknowledged by Redis on replay
    ngx_atomic_t corrupt;   // damaged spans skipped, damaged headers
};

// One fsync in the thread pool: of `fd`, closed afterwards when `close_fd`,
// and of the directory (`dir`, null: not) when a segment was begun since.
struct sync_job {
    int fd;
    bool close_fd;
    const char *dir;
    bool failed;
    ngx_uint_t generation;  // appends up to this one are on disk when it is done
};

// A replay command in flight: where its record ends, and its answer.
struct replay_slot {
    off_t end;
    ngx_uint_t limits;  // shared limits it was checked against (0: XADD)
    enum class state : unsigned char { waiting, stored, failed } state;
};

// A request waiting for its record's fsync (fsync=always).
struct waiter {
    ngx_queue_t queue;
    ngx_http_request_t *r;
    ngx_uint_t generation;
};

struct worker_state {
    ngx_http_resend_confirmation_spool_conf_t *conf;
    shared_state *sh;
    ngx_log_t *log;

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
    ngx_msec_t progress_logged;  // when "progress not written" was

    // Segments that could not be deleted (replayed) or opened: left alone
    // for a while, still counted.
    struct {
        char name[name_max];
        ngx_msec_t at;
        bool planted;  // not a segment (a link, a FIFO...): not counted as one
    } stuck[32];
    ngx_msec_t stuck_logged;    // when a segment that found no room there was last logged
    ngx_msec_t opendir_logged;  // when PATH could not be read

    // The segment being replayed.
    int rfd;
    char rname[name_max];
    unsigned version;  // of its format; 0: its header is damaged
    off_t acked, read_at, end;
    off_t resume_at;        // the header's offset, until a record reads there (-1: done)
    off_t damaged_at;       // where the damage being stepped over began (-1: none)
    off_t damage_counted;   // damage before this offset is counted (a retry goes over it again)
    bool damage_torn;       // the damage began with a record cut short
    bool damage_logged;     // once per segment
    replay_slot slots[max_in_flight];  // the records in flight, oldest at `head`
    ngx_uint_t head, in_flight;
    ngx_uint_t acks_unwritten;
    bool failed;        // a record in flight failed: send no more until all are answered
    bool gap;           // a failed record was reached: the ones after it are not acknowledged
    bool retry_soon;    // the failure is soon mended (NOSCRIPT, MOVED)
    bool eval_next;     // NOSCRIPT: the next script goes in full (EVAL), which loads it
    u_char *rbuf;
    size_t rbuf_capacity, rbuf_len;
    off_t rbuf_at;
    ngx_event_t tick;  // replay: timer and posted

#if (NGX_THREADS)
    ngx_thread_task_t *task;
#endif
};

worker_state W;  // this worker's; workers are single-threaded

bool is_segment_name(const char *name) noexcept {
    size_t n = std::strlen(name);
    return n > 4 && n < name_max && std::strcmp(name + n - 4, ".seg") == 0 && name[0] >= '0' && name[0] <= '9';
}

void path_of(char *out, size_t size, const char *name) noexcept {
    std::snprintf(out, size, "%s/%s", reinterpret_cast<const char *>(W.conf->path.data), name);
}

// The user the workers run as: `user` when the master runs as root, else
// whoever runs nginx.
ngx_uid_t workers_uid(ngx_cycle_t *cycle) noexcept {
    auto *ccf = reinterpret_cast<ngx_core_conf_t *>(ngx_get_conf(cycle->conf_ctx, ngx_core_module));
    return ccf != nullptr && ccf->user != static_cast<ngx_uid_t>(NGX_CONF_UNSET_UINT) ? ccf->user : geteuid();
}

// Opens a segment with `flags`, never following a link nor blocking (a
// FIFO), and keeps it only as a regular file of the workers' user or root:
// PATH belongs to the workers' user, and the master (root) reads it too.
// -1 with *planted saying what the entry is when it is not a segment,
// else with errno from open().
int open_segment_file(const char *path, int flags, ngx_uid_t workers, struct stat *st,
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

void shared_sub(ngx_atomic_t *counter, ngx_atomic_uint_t n) noexcept {
    // Never below zero, whatever was miscounted (a tail lost to a crash).
    for (;;) {
        ngx_atomic_uint_t old = *counter;
        ngx_atomic_uint_t now = old > n ? old - n : 0;
        if (ngx_atomic_cmp_set(counter, old, now)) return;
    }
}

void schedule(ngx_msec_t delay) noexcept {
    if (W.tick.timer_set) ngx_del_timer(&W.tick);
    if (delay == 0) {
        if (!W.tick.posted) {
            ngx_post_event(&W.tick, &ngx_posted_events);
        }
        return;
    }
    if (!W.tick.posted) ngx_add_timer(&W.tick, delay);
}

// A log line that could come with every request, record or tick: true
// when the last one (at *last) is `interval` old or more.
bool once_every(ngx_msec_t *last, ngx_msec_t interval) noexcept {
    if (*last != 0 && ngx_current_msec - *last < interval) return false;
    *last = ngx_current_msec;
    return true;
}

bool once_a_second(ngx_msec_t *last) noexcept { return once_every(last, 1000); }

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
    if (!once_a_second(&W.full_logged)) return;
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
    path_of(path, sizeof(path), name);
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
    if (!W.tick.timer_set && !W.tick.posted) schedule(retry_interval);

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

// --- replay ------------------------------------------------------------------------

namespace {

// Writes the acknowledged offset into the segment's header.
void write_progress() noexcept {
    if (W.rfd == -1 || W.acks_unwritten == 0) return;
    // A header that did not read is left as it is: written as version 2, a
    // version 1 segment's records would no longer read (replayed again from
    // its start after a restart instead: at least once).
    if (W.version == 0) {
        W.acks_unwritten = 0;
        return;
    }
    char header[resend::spool::header_size];
    resend::spool::write_header(header, static_cast<std::uint64_t>(W.acked));
    if (pwrite(W.rfd, header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)) &&
        once_a_second(&W.progress_logged)) {
        // The records acknowledged since the last write are sent again after
        // a restart (at least once).
        ngx_log_error(NGX_LOG_ALERT, W.log, ngx_errno,
                      "resend_confirmation: spool \"%s\": progress not written", W.rname);
    }
    W.acks_unwritten = 0;
}

// A segment that could not be deleted is looked at again after this long
// (its records are all acknowledged: adopting it again only tries again).
constexpr ngx_msec_t stuck_interval = 60000;

// Whether `name` is left alone for now; *planted: it is not a segment.
bool is_stuck(const char *name, bool *planted) noexcept {
    for (const auto &stuck : W.stuck) {
        if (std::strcmp(name, stuck.name) == 0 && ngx_current_msec - stuck.at < stuck_interval) {
            *planted = stuck.planted;
            return true;
        }
    }
    return false;
}

// Notes `name` as stuck; true when it is worth a log line: a new entry,
// or (no room left) once a minute for all that find none.
bool note_stuck(const char *name, bool planted = false) noexcept {
    for (auto &stuck : W.stuck) {
        if (stuck.name[0] == '\0' || ngx_current_msec - stuck.at >= stuck_interval) {
            std::memcpy(stuck.name, name, name_max);
            stuck.at = ngx_current_msec;
            stuck.planted = planted;
            return true;
        }
    }
    return once_every(&W.stuck_logged, stuck_interval);
}

// The segment is done (every record acknowledged): deleted. False when the
// file stays (the directory refuses): left alone for a minute, counted in
// the spool's bytes while it is there, logged once each time.
bool finish_segment() noexcept {
    char path[NGX_MAX_PATH];
    path_of(path, sizeof(path), W.rname);
    bool deleted = unlink(path) == 0 || ngx_errno == NGX_ENOENT;
    if (!deleted) {
        ngx_err_t err = ngx_errno;
        if (note_stuck(W.rname)) {
            ngx_log_error(NGX_LOG_ALERT, W.log, err,
                          "resend_confirmation: spool unlink(\"%s\") failed: its records are all in Redis; "
                          "tried again in a minute",
                          path);
        }
    }
    close(W.rfd);
    W.rfd = -1;
    if (!deleted) return false;
    shared_sub(&W.sh->bytes, static_cast<ngx_atomic_uint_t>(W.end));
    ngx_log_error(NGX_LOG_INFO, W.log, 0, "resend_confirmation: spool \"%s\" replayed and deleted", W.rname);
    return true;
}

// The damage that began at W.damaged_at ends at `to`, where a whole record
// reads again, or at the segment's end: counted (once: a failed replay goes
// over it again), logged once per segment. Damage at the end is cut off, as
// a record torn by a crash is.
void damage_ends(off_t to) noexcept {
    off_t from = W.damaged_at;
    W.damaged_at = -1;
    bool tail = to >= W.end;
    if (from >= W.damage_counted) {
        W.damage_counted = to;
        (void) ngx_atomic_fetch_add(&W.sh->corrupt, 1);
        if (!W.damage_logged) {
            W.damage_logged = true;
            if (tail) {
                ngx_log_error(NGX_LOG_WARN, W.log, 0,
                              "resend_confirmation: spool \"%s\": a %s record at offset %O, truncated there "
                              "(%O bytes dropped)",
                              W.rname, W.damage_torn ? "torn" : "corrupt", from, W.end - from);
            } else {
                ngx_log_error(NGX_LOG_WARN, W.log, 0,
                              "resend_confirmation: spool \"%s\": a corrupt record at offset %O, skipped (%O "
                              "bytes); the records after it are replayed",
                              W.rname, from, to - from);
            }
        }
    }
    if (!tail) return;
    if (ftruncate(W.rfd, from) == -1) {
        ngx_log_error(NGX_LOG_ALERT, W.log, ngx_errno, "resend_confirmation: spool ftruncate() failed");
    }
    shared_sub(&W.sh->bytes, static_cast<ngx_atomic_uint_t>(W.end - from));
    W.end = from;
}

// Damage at W.read_at, unless damage before it is being stepped over.
void damage_begins(bool torn) noexcept {
    if (W.damaged_at != -1) return;
    W.damaged_at = W.read_at;
    W.damage_torn = torn;
}

// The record at W.read_at does not read back whole (`torn`: it ends past
// what could be read): W.read_at moves on to the next offset where one may
// begin, the segment's end when none does.
void skip_damage(bool torn) noexcept {
    if (W.read_at == W.resume_at) {
        // No record where the header says the replay goes on: the offset
        // itself may be damaged. From the start instead (at least once).
        W.resume_at = -1;
        W.read_at = W.acked = resend::spool::header_size;
        return;
    }
    damage_begins(torn);
    size_t offset = static_cast<size_t>(W.read_at - W.rbuf_at);
    if (W.rbuf_len == 0 || W.read_at < W.rbuf_at || offset >= W.rbuf_len) {
        W.read_at = W.end;  // nothing could be read there: the file ends sooner
        return;
    }
    bool at_end = W.rbuf_at + static_cast<off_t>(W.rbuf_len) >= W.end;
    size_t next = resend::spool::next_record_start(reinterpret_cast<const char *>(W.rbuf) + offset,
                                                   W.rbuf_len - offset, at_end);
    W.read_at = std::min(W.read_at + static_cast<off_t>(next), W.end);
}

// Takes a segment that no process holds, the oldest first; false when there
// is none. *others: the segments found, but this worker's own (unknown:
// the directory could not be read).
constexpr size_t others_unknown = SIZE_MAX;

bool adopt(size_t *others) noexcept {
    *others = 0;
    DIR *dir = opendir(reinterpret_cast<const char *>(W.conf->path.data));
    if (dir == nullptr) {
        if (once_every(&W.opendir_logged, stuck_interval)) {  // looked at every second
            ngx_log_error(NGX_LOG_ALERT, W.log, ngx_errno, "resend_confirmation: spool opendir(\"%V\") failed",
                          &W.conf->path);
        }
        *others = others_unknown;  // not "none": the gauges stay as they are
        return false;
    }
    static char names[max_scanned][name_max];
    static char *order[max_scanned];
    size_t n = 0, stuck = 0;
    while (struct dirent *entry = readdir(dir)) {
        if (n == max_scanned) break;
        if (!is_segment_name(entry->d_name)) continue;
        if (W.fd != -1 && std::strcmp(entry->d_name, W.name) == 0) continue;  // ours, being written
        bool planted = false;
        if (is_stuck(entry->d_name, &planted)) {
            stuck += planted ? 0 : 1;  // still there, still counted: not adopted for now
            continue;
        }
        std::memcpy(names[n], entry->d_name, std::strlen(entry->d_name) + 1);
        order[n] = names[n];
        ++n;
    }
    closedir(dir);
    *others = n + stuck;
    std::sort(order, order + n, [](const char *a, const char *b) { return std::strcmp(a, b) < 0; });

    for (size_t i = 0; i < n; ++i) {
        char path[NGX_MAX_PATH];
        path_of(path, sizeof(path), order[i]);
        struct stat st;
        const char *planted = nullptr;
        int fd = open_segment_file(path, O_RDWR, workers_uid(const_cast<ngx_cycle_t *>(ngx_cycle)), &st, &planted);
        if (fd == -1) {
            // Not a segment (a link, a FIFO, a directory, another user's file
            // planted under a segment's name): left alone, told once a minute.
            // Another owner's that cannot be opened (an earlier `user`), too.
            // (ENOENT: just replayed and deleted by another worker.)
            ngx_err_t err = ngx_errno;
            if (planted != nullptr && note_stuck(order[i], true)) {
                ngx_log_error(NGX_LOG_WARN, W.log, 0, "resend_confirmation: spool \"%s\" %s: skipped", path,
                              planted);
            } else if (planted == nullptr && err != NGX_ENOENT && note_stuck(order[i])) {
                ngx_log_error(NGX_LOG_ALERT, W.log, err,
                              "resend_confirmation: spool \"%s\" cannot be opened: not replayed", path);
            }
            continue;
        }
        if (flock(fd, LOCK_EX | LOCK_NB) == -1 || st.st_nlink == 0) {
            close(fd);  // held by its writer or another replayer, or just deleted
            continue;
        }
        char header[resend::spool::header_size];
        std::uint64_t acked = 0;
        unsigned version = 0;
        ssize_t got = pread(fd, header, sizeof(header), 0);
        if (!resend::spool::read_header(header, got > 0 ? static_cast<size_t>(got) : 0, &acked, &version)) {
            // Its records may be whole all the same: read one by one from
            // the start, as either version (those acknowledged before are
            // sent again).
            version = 0;
            acked = resend::spool::header_size;
            if (st.st_size > 0) {
                (void) ngx_atomic_fetch_add(&W.sh->corrupt, 1);
                ngx_log_error(NGX_LOG_WARN, W.log, 0,
                              "resend_confirmation: spool \"%s\" has a damaged header: its records are read one "
                              "by one from the start",
                              path);
            }
        }
        W.rfd = fd;
        W.version = version;
        std::memcpy(W.rname, order[i], name_max);
        W.end = st.st_size;
        // An offset past the end is damage (the header has no CRC): from the start.
        if (acked > static_cast<std::uint64_t>(W.end)) acked = resend::spool::header_size;
        W.acked = std::max<off_t>(static_cast<off_t>(acked), resend::spool::header_size);
        W.read_at = W.acked;
        W.resume_at = W.acked > static_cast<off_t>(resend::spool::header_size) ? W.acked : -1;
        W.head = W.in_flight = W.acks_unwritten = 0;
        W.failed = W.gap = false;
        W.damaged_at = -1;
        W.damage_counted = 0;
        W.damage_logged = false;
        W.rbuf_len = 0;
        W.rbuf_at = 0;
        ngx_log_error(NGX_LOG_INFO, W.log, 0, "resend_confirmation: spool \"%s\": replaying from offset %O of %O",
                      W.rname, W.acked, W.end);
        return true;
    }
    return false;
}

// The record at W.read_at: `record`, or why there is none (`incomplete`:
// the segment ends; `corrupt`: it cannot be read back). *failed: it could
// not be read now (a read error, no memory): nothing is known of the rest.
resend::spool::scan next_record(size_t *size, std::string_view *items, size_t *count, bool *failed) noexcept {
    *failed = false;
    for (int attempt = 0;; ++attempt) {
        size_t offset = static_cast<size_t>(W.read_at - W.rbuf_at);
        if (W.rbuf_len > 0 && W.read_at >= W.rbuf_at && offset < W.rbuf_len) {
            auto result = resend::spool::read_record(reinterpret_cast<const char *>(W.rbuf) + offset,
                                                     W.rbuf_len - offset, size, items, count);
            if (result != resend::spool::scan::incomplete) return result;
            if (offset == 0 && W.rbuf_at + static_cast<off_t>(W.rbuf_len) >= W.end) return result;
        }
        if (W.read_at >= W.end || attempt == 2) return resend::spool::scan::incomplete;
        if (offset == 0 && W.rbuf_len == W.rbuf_capacity) {
            // A record larger than the buffer: room for the largest.
            size_t capacity = resend::spool::record_overhead + resend::spool::max_payload;
            auto *bigger = static_cast<u_char *>(ngx_alloc(capacity, W.log));
            if (bigger == nullptr) {
                *failed = true;
                return resend::spool::scan::incomplete;
            }
            ngx_free(W.rbuf);
            W.rbuf = bigger;
            W.rbuf_capacity = capacity;
        }
        size_t want = static_cast<size_t>(std::min<off_t>(W.end - W.read_at, W.rbuf_capacity));
        ssize_t got = pread(W.rfd, W.rbuf, want, W.read_at);
        if (got <= 0) {
            // An error: tried again later. Nothing (the file ends before
            // where it did): the tail is torn.
            if (got == -1) {
                ngx_log_error(NGX_LOG_ALERT, W.log, ngx_errno, "resend_confirmation: spool pread(\"%s\") failed",
                              W.rname);
                *failed = true;
            }
            W.rbuf_len = 0;
            return resend::spool::scan::incomplete;
        }
        W.rbuf_at = W.read_at;
        W.rbuf_len = static_cast<size_t>(got);
    }
}

ngx_http_resend_confirmation_link_t *link_for(std::string_view name) noexcept {
    ngx_http_resend_confirmation_link_t *link = ngx_http_resend_confirmation_worker_link_named(name);
    if (link == nullptr) {
        // Its Redis is gone from the configuration: the first one now.
        auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
            ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_resend_confirmation_module));
        if (mcf->redis.nelts == 0) return nullptr;
        link = ngx_http_resend_confirmation_worker_link(
            static_cast<ngx_http_resend_confirmation_redis_conf_t **>(mcf->redis.elts)[0]);
    }
    return link;
}

void replayed(ngx_http_resend_confirmation_link_t *, void *data, const resend::redis_reply *reply,
              ngx_http_resend_confirmation_fate_t fate) noexcept;

// Room for the script's key count and silence key of a record's stream,
// grown to the longest stream seen and kept (the link copies the command).
u_char *script_scratch(std::string_view stream) noexcept {
    static u_char *scratch;
    static size_t capacity;
    size_t size = ngx_http_resend_confirmation_shared_limit_scratch_size(stream);
    if (size > capacity) {
        auto *bigger = static_cast<u_char *>(ngx_alloc(size, ngx_cycle->log));
        if (bigger == nullptr) return nullptr;
        if (scratch != nullptr) ngx_free(scratch);
        scratch = bigger;
        capacity = size;
    }
    return scratch;
}

// Sends the segment's next records, up to max_in_flight.
void send_more() noexcept {
    static std::string_view items[resend::spool::max_items];
    static std::string_view args[ngx_http_resend_confirmation_record_command_args(resend::spool::max_items)];
    while (W.in_flight < max_in_flight && !W.failed) {
        size_t size = 0, count = 0;
        resend::spool::kept_record record;
        bool unreadable = false;
        auto result = next_record(&size, items, &count, &unreadable);
        if (unreadable) {
            schedule(retry_interval);  // the records stay where they are
            return;
        }
        if (result != resend::spool::scan::record) {
            if (W.read_at >= W.end) {
                if (W.damaged_at != -1) damage_ends(W.end);
                break;
            }
            skip_damage(result == resend::spool::scan::incomplete);
            continue;
        }
        // Whole (its CRC holds) but not a record of this version: stepped
        // over by its length, which the CRC vouches for.
        bool kept = W.version != 0 ? resend::spool::read_items({items, count}, W.version, &record)
                                   : resend::spool::read_items({items, count}, 2, &record) ||
                                         resend::spool::read_items({items, count}, 1, &record);
        if (!kept) {
            damage_begins(false);
            W.read_at += static_cast<off_t>(size);
            continue;
        }
        W.resume_at = -1;
        if (W.damaged_at != -1) damage_ends(W.read_at);
        ngx_http_resend_confirmation_link_t *link = link_for(record.address);
        if (link == nullptr) return;
        if (!ngx_http_resend_confirmation_link_ready(link)) {
            // On its way up: looked at again soon. Down: woken, and looked
            // at again in a second (not ten connection attempts a second to
            // a Redis that is down while another one is up).
            bool connecting = ngx_http_resend_confirmation_link_connecting(link);
            if (!connecting) ngx_http_resend_confirmation_link_wake(link);
            schedule(connecting && W.in_flight == 0 ? retry_interval / 10 : retry_interval);
            return;
        }
        // The command a live request sends: the script with its limits, else XADD.
        size_t nlimits = record.limits.size() / 4;
        bool full = nlimits > 0 && W.eval_next;
        u_char *scratch = nlimits > 0 ? script_scratch(record.stream) : nullptr;
        if (nlimits > 0 && scratch == nullptr) {
            schedule(retry_interval);  // out of memory: later
            return;
        }
        size_t argc = nlimits > 0 ? ngx_http_resend_confirmation_shared_limit_args(
                                        record.stream, record.maxlen, record.dry_run, record.limits,
                                        record.fields, full, scratch, args)
                                  : ngx_http_resend_confirmation_record_command(record.stream, record.maxlen,
                                                                                record.fields, args);
        ngx_uint_t token = (W.head + W.in_flight) % max_in_flight;
        if (!ngx_http_resend_confirmation_link_send_replay(link, {args, argc}, replayed,
                                                           reinterpret_cast<void *>(token))) {
            schedule(retry_interval);
            return;
        }
        if (full) W.eval_next = false;
        W.slots[token] = {W.read_at + static_cast<off_t>(size), nlimits, replay_slot::state::waiting};
        ++W.in_flight;
        W.read_at += static_cast<off_t>(size);
    }
    if (W.in_flight == 0 && !W.failed && W.read_at >= W.end) {
        write_progress();
        schedule(finish_segment() ? 0 : retry_interval);  // the next one
    }
}

// Whether a Redis can take records now (its records may be for any of
// them); those that cannot are woken (they connect when they may).
bool any_link_ready() noexcept {
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(ngx_cycle, ngx_http_resend_confirmation_module));
    auto **redis = static_cast<ngx_http_resend_confirmation_redis_conf_t **>(mcf->redis.elts);
    bool ready = false;
    for (ngx_uint_t i = 0; i < mcf->redis.nelts; ++i) {
        ngx_http_resend_confirmation_link_t *link = ngx_http_resend_confirmation_worker_link(redis[i]);
        if (link == nullptr) continue;
        if (ngx_http_resend_confirmation_link_ready(link)) {
            ready = true;
        } else {
            ngx_http_resend_confirmation_link_wake(link);
        }
    }
    return ready;
}

// No segment is left on disk but this worker's, which holds no record:
// the gauges say so, whatever they missed (a tail dropped as corrupt held
// records they counted; a file cut short outside nginx held bytes). Not
// when a worker began a segment or appended meanwhile: the values read
// before the directory was looked at are then gone, and nothing is changed.
void settle_gauges(ngx_atomic_uint_t bytes, ngx_atomic_uint_t records) noexcept {
    ngx_atomic_uint_t ours = W.fd != -1 ? static_cast<ngx_atomic_uint_t>(W.size) : 0;
    if (records != 0) (void) ngx_atomic_cmp_set(&W.sh->records, records, 0);
    if (bytes != ours) (void) ngx_atomic_cmp_set(&W.sh->bytes, bytes, ours);
}

void tick(ngx_event_t *) noexcept {
    if (ngx_exiting || ngx_terminate || ngx_quit) return;
    if (W.rfd == -1) {
        // The directory is looked at whatever the gauges say: segments an
        // nginx they did not count left there (a binary upgrade's old
        // workers) are replayed all the same.
        ngx_atomic_uint_t bytes = W.sh->bytes, records = W.sh->records;
        size_t others = 0;
        if (!adopt(&others)) {
            if (others == 0 && (W.fd == -1 || W.size <= static_cast<off_t>(resend::spool::header_size))) {
                settle_gauges(bytes, records);
            }
            // Nothing free: our own segment is sealed for the next turn once
            // Redis can take it (not before: sealing while it is down would
            // only make many small segments).
            if (W.fd == -1 || W.size <= static_cast<off_t>(resend::spool::header_size)) {
                schedule(idle_interval);
                return;
            }
            if (any_link_ready()) {
                seal();
                schedule(retry_interval / 10);
            } else {
                schedule(retry_interval);
            }
            return;
        }
    }
    send_more();
    if (!W.tick.timer_set && !W.tick.posted && W.in_flight == 0) schedule(retry_interval);
}

// A replay command's reply (null: none) and fate, in any order: `data` is
// its slot (several links answer, each in its own time).
void replayed(ngx_http_resend_confirmation_link_t *, void *data, const resend::redis_reply *reply,
              ngx_http_resend_confirmation_fate_t fate) noexcept {
    auto token = reinterpret_cast<uintptr_t>(data);
    if (token >= max_in_flight || W.in_flight == 0) return;  // not ours any more (cannot happen)
    replay_slot &slot = W.slots[token];
    if (slot.state != replay_slot::state::waiting) return;
    bool stored = fate == ngx_http_resend_confirmation_fate_t::stored;
    if (stored && slot.limits > 0 && reply != nullptr) {
        // The script ran: recorded, or silenced by a fleet limit (nothing
        // to record: acknowledged all the same), or an answer it cannot
        // give (it ran: not sent again).
        resend::shared_limit_answer answer = resend::shared_limit_read_answer(*reply, slot.limits);
        if (answer.result != resend::shared_limit_answer::failed) {
            ngx_http_resend_confirmation_metrics_shared_limit(answer.result);
        }
    }
    if (!stored && reply != nullptr && reply->kind == resend::reply_kind::error) {
        if (resend::shared_limit_read_answer(*reply, slot.limits).result == resend::shared_limit_answer::no_script) {
            W.eval_next = true;
            W.retry_soon = true;
        }
    }
    if (fate == ngx_http_resend_confirmation_fate_t::unsent && reply != nullptr) {
        W.retry_soon = true;  // MOVED or ASK: sent again to the node named
    }
    slot.state = stored ? replay_slot::state::stored : replay_slot::state::failed;
    if (!stored) W.failed = true;

    // The acknowledged offset moves over the records answered without a gap.
    while (W.in_flight > 0 && W.slots[W.head].state != replay_slot::state::waiting) {
        replay_slot &oldest = W.slots[W.head];
        if (oldest.state == replay_slot::state::failed) W.gap = true;
        if (!W.gap) {
            W.acked = oldest.end;
            ++W.acks_unwritten;
            shared_sub(&W.sh->records, 1);
            (void) ngx_atomic_fetch_add(&W.sh->replayed, 1);
        }
        // After a failure, later records are sent again (at least once).
        oldest.state = replay_slot::state::waiting;
        W.head = (W.head + 1) % max_in_flight;
        --W.in_flight;
    }
    if (W.in_flight == 0) {
        write_progress();
        if (W.failed) {
            // Go back to the first record not acknowledged, a little later.
            W.failed = W.gap = false;
            W.read_at = W.acked;
            W.damaged_at = -1;
            schedule(W.retry_soon ? retry_interval / 10 : retry_interval);
            W.retry_soon = false;
            return;
        }
    } else if (W.acks_unwritten >= max_in_flight) {
        write_progress();
    }
    if (W.in_flight <= max_in_flight / 2 && !W.failed) schedule(0);
}

}  // namespace

// --- the worker --------------------------------------------------------------------

ngx_int_t ngx_http_resend_confirmation_spool_worker_start(ngx_cycle_t *cycle) noexcept {
    ngx_memzero(&W, sizeof(W));
    W.fd = W.rfd = -1;
    auto *mcf = static_cast<ngx_http_resend_confirmation_main_conf_t *>(
        ngx_http_cycle_get_module_main_conf(cycle, ngx_http_resend_confirmation_module));
    if (mcf == nullptr || mcf->spool == nullptr) return NGX_OK;
    W.conf = mcf->spool;
    W.log = cycle->log;
    W.sh = static_cast<shared_state *>(W.conf->zone->data);
    ngx_queue_init(&W.waiters);
    W.rbuf_capacity = 64 * 1024;
    W.rbuf = static_cast<u_char *>(ngx_alloc(W.rbuf_capacity, cycle->log));
    if (W.rbuf == nullptr) return NGX_ERROR;
    // nginx's debug lines read an event's data as a connection (its fd):
    // it must point to readable memory.
    W.tick.handler = tick;
    W.tick.data = &W;
    W.tick.log = cycle->log;
    W.tick.cancelable = 1;
    W.fsync_timer.handler = fsync_tick;
    W.fsync_timer.data = &W;
    W.fsync_timer.log = cycle->log;
    W.fsync_timer.cancelable = 1;
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
    // Look for segments left by an earlier nginx or a worker that died.
    schedule(retry_interval / 10);
    return NGX_OK;
}

void ngx_http_resend_confirmation_spool_worker_exit() noexcept {
    if (W.conf == nullptr) return;
    if (W.rfd != -1) {
        write_progress();
        close(W.rfd);
        W.rfd = -1;
    }
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
    // The worker ends here: its timers and posted events go with it.
    ngx_free(W.rbuf);
    W.rbuf = nullptr;
    W.conf = nullptr;
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
        if (!is_segment_name(entry->d_name)) continue;
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
    ngx_uid_t workers = workers_uid(conf->cycle);
    while (struct dirent *entry = readdir(dir)) {
        if (!is_segment_name(entry->d_name)) continue;
        char path[NGX_MAX_PATH];
        std::snprintf(path, sizeof(path), "%s/%s", reinterpret_cast<const char *>(conf->path.data), entry->d_name);
        struct stat st;
        const char *planted = nullptr;
        int fd = open_segment_file(path, O_RDONLY, workers, &st, &planted);
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
    if (path.len + 1 + name_max >= NGX_MAX_PATH) return ngx_http_resend_confirmation_invalid_parameter(cf, &value[1]);

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
