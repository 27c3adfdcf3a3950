// The spool's replayer. A segment that no process holds (its worker sealed
// it, died, or was an earlier nginx's) is adopted: locked by one worker,
// replayed from the offset its header says is acknowledged, in order, at
// most `max_in_flight` commands at a time, then deleted.
//
// - A record keeps what its request's command was made of: the stream, the
//   fields as sent, and the keys and rates of its shared limits (already
//   keyed: no address in clear), so that the replay sends the very command
//   a live request sends: the shared-limit script (fleet limits apply when
//   it reaches Redis; NOSCRIPT: sent again with EVAL), or XADD.
// - Replies may come in any order (records for several Redis); the
//   acknowledged offset moves over the records answered without a gap, and
//   is written back to the header as they come: a reload or restart goes on
//   from there (commands in flight then are sent again: at least once).
// - A record that does not read back whole (a CRC mismatch, a damaged
//   length) is skipped: the replay goes on at the next offset where a whole
//   record reads (core: next_record_start), so only the damage is lost. A
//   segment whose header is damaged is read record by record from its
//   start. Damage at the end (a torn tail) is cut off. One line per segment.
// - Nothing under PATH is followed or blocks (open_segment()).

#include "ngx_http_resend_confirmation.h"
#include "http/ngx_http_resend_confirmation_http.h"
#include "limit/ngx_http_resend_confirmation_limit.h"
#include "metrics/ngx_http_resend_confirmation_metrics.h"
#include "redis/ngx_http_resend_confirmation_redis.h"
#include "spool/ngx_http_resend_confirmation_segment.h"

#include "core/shared_limit.hpp"
#include "core/spool_format.hpp"

#include <dirent.h>
#include <sys/file.h>

#include <algorithm>
#include <cstdint>
#include <cstring>

namespace {

constexpr size_t name_max = ngx_http_resend_confirmation_segment_name_max;
// Replay commands in flight per worker: live requests never wait behind more.
constexpr ngx_uint_t max_in_flight = 32;
constexpr ngx_msec_t idle_interval = 1000;   // looking for work while nothing is spooled
constexpr ngx_msec_t retry_interval = 1000;  // after a failed replay, or Redis not ready
constexpr size_t max_scanned = 1024;          // segment names looked at per scan

// A replay command in flight: where its record ends, and its answer.
struct replay_slot {
    off_t end;
    ngx_uint_t limits;  // shared limits it was checked against (0: XADD)
    enum class state : unsigned char { waiting, stored, failed } state;
};

// The segment being replayed, and the segments left alone. About 20
// fields: its parts are grouped (damage, buffer, commands in flight).
struct replayer : ngx_http_resend_confirmation_spool_worker_t {
    int fd;
    char name[name_max];
    unsigned version;  // of its format; 0: its header is damaged
    off_t acked, read_at, end;
    off_t resume_at;        // the header's offset, until a record reads there (-1: done)
    ngx_uint_t acks_unwritten;
    struct {
        off_t at;           // where the damage being stepped over began (-1: none)
        off_t counted;      // damage before this offset is counted (a retry goes over it again)
        bool torn;          // the damage began with a record cut short
        bool logged;        // once per segment
    } damage;
    struct {
        replay_slot slots[max_in_flight];  // the records in flight, oldest at `head`
        ngx_uint_t head, count;
    } flight;
    bool failed;        // a record in flight failed: send no more until all are answered
    bool gap;           // a failed record was reached: the ones after it are not acknowledged
    bool retry_soon;    // the failure is soon mended (NOSCRIPT, MOVED)
    bool eval_next;     // NOSCRIPT: the next script goes in full (EVAL), which loads it
    struct {
        u_char *data;
        size_t capacity, len;
        off_t at;
    } buf;
    ngx_event_t tick;  // replay: timer and posted

    // Segments that could not be deleted (replayed) or opened: left alone
    // for a while, still counted.
    struct {
        struct {
            char name[name_max];
            ngx_msec_t at;
            bool planted;  // not a segment (a link, a FIFO...): not counted as one
        } entries[32];
        ngx_msec_t logged;  // when a segment that found no room there was last logged
    } stuck;
    ngx_msec_t opendir_logged;   // when PATH could not be read
    ngx_msec_t progress_logged;  // when "progress not written" was
};

replayer R;  // this worker's; workers are single-threaded


void shared_sub(ngx_atomic_t *counter, ngx_atomic_uint_t n) noexcept {
    // Never below zero, whatever was miscounted (a tail lost to a crash).
    for (;;) {
        ngx_atomic_uint_t old = *counter;
        ngx_atomic_uint_t now = old > n ? old - n : 0;
        if (ngx_atomic_cmp_set(counter, old, now)) return;
    }
}

void schedule(ngx_msec_t delay) noexcept {
    if (R.tick.timer_set) ngx_del_timer(&R.tick);
    if (delay == 0) {
        if (!R.tick.posted) {
            ngx_post_event(&R.tick, &ngx_posted_events);
        }
        return;
    }
    if (!R.tick.posted) ngx_add_timer(&R.tick, delay);
}

// A log line that could come with every request, record or tick: true

// Writes the acknowledged offset into the segment's header.
void write_progress() noexcept {
    if (R.fd == -1 || R.acks_unwritten == 0) return;
    // A header that did not read is left as it is: written as version 2, a
    // version 1 segment's records would no longer read (replayed again from
    // its start after a restart instead: at least once).
    if (R.version == 0) {
        R.acks_unwritten = 0;
        return;
    }
    char header[resend::spool::header_size];
    resend::spool::write_header(header, static_cast<std::uint64_t>(R.acked));
    if (pwrite(R.fd, header, sizeof(header), 0) != static_cast<ssize_t>(sizeof(header)) &&
        ngx_http_resend_confirmation_once_a_second(&R.progress_logged)) {
        // The records acknowledged since the last write are sent again after
        // a restart (at least once).
        ngx_log_error(NGX_LOG_ALERT, R.log, ngx_errno,
                      "resend_confirmation: spool \"%s\": progress not written", R.name);
    }
    R.acks_unwritten = 0;
}

// A segment that could not be deleted is looked at again after this long
// (its records are all acknowledged: adopting it again only tries again).
constexpr ngx_msec_t stuck_interval = 60000;

// Whether `name` is left alone for now; *planted: it is not a segment.
bool is_stuck(const char *name, bool *planted) noexcept {
    for (const auto &stuck : R.stuck.entries) {
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
    for (auto &stuck : R.stuck.entries) {
        if (stuck.name[0] == '\0' || ngx_current_msec - stuck.at >= stuck_interval) {
            std::memcpy(stuck.name, name, name_max);
            stuck.at = ngx_current_msec;
            stuck.planted = planted;
            return true;
        }
    }
    return ngx_http_resend_confirmation_once_every(&R.stuck.logged, stuck_interval);
}

// The segment is done (every record acknowledged): deleted. False when the
// file stays (the directory refuses): left alone for a minute, counted in
// the spool's bytes while it is there, logged once each time.
bool finish_segment() noexcept {
    char path[NGX_MAX_PATH];
    ngx_http_resend_confirmation_segment_path(R.conf, path, sizeof(path), R.name);
    bool deleted = unlink(path) == 0 || ngx_errno == NGX_ENOENT;
    if (!deleted) {
        ngx_err_t err = ngx_errno;
        if (note_stuck(R.name)) {
            ngx_log_error(NGX_LOG_ALERT, R.log, err,
                          "resend_confirmation: spool unlink(\"%s\") failed: its records are all in Redis; "
                          "tried again in a minute",
                          path);
        }
    }
    close(R.fd);
    R.fd = -1;
    if (!deleted) return false;
    shared_sub(&R.sh->bytes, static_cast<ngx_atomic_uint_t>(R.end));
    ngx_log_error(NGX_LOG_INFO, R.log, 0, "resend_confirmation: spool \"%s\" replayed and deleted", R.name);
    return true;
}

// The damage that began at R.damage.at ends at `to`, where a whole record
// reads again, or at the segment's end: counted (once: a failed replay goes
// over it again), logged once per segment. Damage at the end is cut off, as
// a record torn by a crash is.
void damage_ends(off_t to) noexcept {
    off_t from = R.damage.at;
    R.damage.at = -1;
    bool tail = to >= R.end;
    if (from >= R.damage.counted) {
        R.damage.counted = to;
        (void) ngx_atomic_fetch_add(&R.sh->corrupt, 1);
        if (!R.damage.logged) {
            R.damage.logged = true;
            if (tail) {
                ngx_log_error(NGX_LOG_WARN, R.log, 0,
                              "resend_confirmation: spool \"%s\": a %s record at offset %O, truncated there "
                              "(%O bytes dropped)",
                              R.name, R.damage.torn ? "torn" : "corrupt", from, R.end - from);
            } else {
                ngx_log_error(NGX_LOG_WARN, R.log, 0,
                              "resend_confirmation: spool \"%s\": a corrupt record at offset %O, skipped (%O "
                              "bytes); the records after it are replayed",
                              R.name, from, to - from);
            }
        }
    }
    if (!tail) return;
    if (ftruncate(R.fd, from) == -1) {
        ngx_log_error(NGX_LOG_ALERT, R.log, ngx_errno, "resend_confirmation: spool ftruncate() failed");
    }
    shared_sub(&R.sh->bytes, static_cast<ngx_atomic_uint_t>(R.end - from));
    R.end = from;
}

// Damage at R.read_at, unless damage before it is being stepped over.
void damage_begins(bool torn) noexcept {
    if (R.damage.at != -1) return;
    R.damage.at = R.read_at;
    R.damage.torn = torn;
}

// The record at R.read_at does not read back whole (`torn`: it ends past
// what could be read): R.read_at moves on to the next offset where one may
// begin, the segment's end when none does.
void skip_damage(bool torn) noexcept {
    if (R.read_at == R.resume_at) {
        // No record where the header says the replay goes on: the offset
        // itself may be damaged. From the start instead (at least once).
        R.resume_at = -1;
        R.read_at = R.acked = resend::spool::header_size;
        return;
    }
    damage_begins(torn);
    size_t offset = static_cast<size_t>(R.read_at - R.buf.at);
    if (R.buf.len == 0 || R.read_at < R.buf.at || offset >= R.buf.len) {
        R.read_at = R.end;  // nothing could be read there: the file ends sooner
        return;
    }
    bool at_end = R.buf.at + static_cast<off_t>(R.buf.len) >= R.end;
    size_t next = resend::spool::next_record_start(reinterpret_cast<const char *>(R.buf.data) + offset,
                                                   R.buf.len - offset, at_end);
    R.read_at = std::min(R.read_at + static_cast<off_t>(next), R.end);
}

// Takes a segment that no process holds, the oldest first; false when there
// is none. *others: the segments found, but this worker's own (unknown:
// the directory could not be read).
constexpr size_t others_unknown = SIZE_MAX;

bool adopt(size_t *others) noexcept {
    *others = 0;
    DIR *dir = opendir(reinterpret_cast<const char *>(R.conf->path.data));
    if (dir == nullptr) {
        if (ngx_http_resend_confirmation_once_every(&R.opendir_logged, stuck_interval)) {  // looked at every second
            ngx_log_error(NGX_LOG_ALERT, R.log, ngx_errno, "resend_confirmation: spool opendir(\"%V\") failed",
                          &R.conf->path);
        }
        *others = others_unknown;  // not "none": the gauges stay as they are
        return false;
    }
    static char names[max_scanned][name_max];
    static char *order[max_scanned];
    size_t n = 0, stuck = 0;
    while (struct dirent *entry = readdir(dir)) {
        if (n == max_scanned) break;
        if (!ngx_http_resend_confirmation_is_segment_name(entry->d_name)) continue;
        if (ngx_http_resend_confirmation_writer_holds(entry->d_name)) continue;  // ours, being written
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
        ngx_http_resend_confirmation_segment_path(R.conf, path, sizeof(path), order[i]);
        struct stat st;
        const char *planted = nullptr;
        int fd = ngx_http_resend_confirmation_open_segment(path, O_RDWR, ngx_http_resend_confirmation_workers_uid(const_cast<ngx_cycle_t *>(ngx_cycle)), &st, &planted);
        if (fd == -1) {
            // Not a segment (a link, a FIFO, a directory, another user's file
            // planted under a segment's name): left alone, told once a minute.
            // Another owner's that cannot be opened (an earlier `user`), too.
            // (ENOENT: just replayed and deleted by another worker.)
            ngx_err_t err = ngx_errno;
            if (planted != nullptr && note_stuck(order[i], true)) {
                ngx_log_error(NGX_LOG_WARN, R.log, 0, "resend_confirmation: spool \"%s\" %s: skipped", path,
                              planted);
            } else if (planted == nullptr && err != NGX_ENOENT && note_stuck(order[i])) {
                ngx_log_error(NGX_LOG_ALERT, R.log, err,
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
                (void) ngx_atomic_fetch_add(&R.sh->corrupt, 1);
                ngx_log_error(NGX_LOG_WARN, R.log, 0,
                              "resend_confirmation: spool \"%s\" has a damaged header: its records are read one "
                              "by one from the start",
                              path);
            }
        }
        R.fd = fd;
        R.version = version;
        std::memcpy(R.name, order[i], name_max);
        R.end = st.st_size;
        // An offset past the end is damage (the header has no CRC): from the start.
        if (acked > static_cast<std::uint64_t>(R.end)) acked = resend::spool::header_size;
        R.acked = std::max<off_t>(static_cast<off_t>(acked), resend::spool::header_size);
        R.read_at = R.acked;
        R.resume_at = R.acked > static_cast<off_t>(resend::spool::header_size) ? R.acked : -1;
        R.flight.head = R.flight.count = R.acks_unwritten = 0;
        R.failed = R.gap = false;
        R.damage.at = -1;
        R.damage.counted = 0;
        R.damage.logged = false;
        R.buf.len = 0;
        R.buf.at = 0;
        ngx_log_error(NGX_LOG_INFO, R.log, 0, "resend_confirmation: spool \"%s\": replaying from offset %O of %O",
                      R.name, R.acked, R.end);
        return true;
    }
    return false;
}

// The record at R.read_at: `record`, or why there is none (`incomplete`:
// the segment ends; `corrupt`: it cannot be read back). *failed: it could
// not be read now (a read error, no memory): nothing is known of the rest.
resend::spool::scan next_record(size_t *size, std::string_view *items, size_t *count, bool *failed) noexcept {
    *failed = false;
    for (int attempt = 0;; ++attempt) {
        size_t offset = static_cast<size_t>(R.read_at - R.buf.at);
        if (R.buf.len > 0 && R.read_at >= R.buf.at && offset < R.buf.len) {
            auto result = resend::spool::read_record(reinterpret_cast<const char *>(R.buf.data) + offset,
                                                     R.buf.len - offset, size, items, count);
            if (result != resend::spool::scan::incomplete) return result;
            if (offset == 0 && R.buf.at + static_cast<off_t>(R.buf.len) >= R.end) return result;
        }
        if (R.read_at >= R.end || attempt == 2) return resend::spool::scan::incomplete;
        if (offset == 0 && R.buf.len == R.buf.capacity) {
            // A record larger than the buffer: room for the largest.
            size_t capacity = resend::spool::record_overhead + resend::spool::max_payload;
            auto *bigger = static_cast<u_char *>(ngx_alloc(capacity, R.log));
            if (bigger == nullptr) {
                *failed = true;
                return resend::spool::scan::incomplete;
            }
            ngx_free(R.buf.data);
            R.buf.data = bigger;
            R.buf.capacity = capacity;
        }
        size_t want = static_cast<size_t>(std::min<off_t>(R.end - R.read_at, R.buf.capacity));
        ssize_t got = pread(R.fd, R.buf.data, want, R.read_at);
        if (got <= 0) {
            // An error: tried again later. Nothing (the file ends before
            // where it did): the tail is torn.
            if (got == -1) {
                ngx_log_error(NGX_LOG_ALERT, R.log, ngx_errno, "resend_confirmation: spool pread(\"%s\") failed",
                              R.name);
                *failed = true;
            }
            R.buf.len = 0;
            return resend::spool::scan::incomplete;
        }
        R.buf.at = R.read_at;
        R.buf.len = static_cast<size_t>(got);
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
    while (R.flight.count < max_in_flight && !R.failed) {
        size_t size = 0, count = 0;
        resend::spool::kept_record record;
        bool unreadable = false;
        auto result = next_record(&size, items, &count, &unreadable);
        if (unreadable) {
            schedule(retry_interval);  // the records stay where they are
            return;
        }
        if (result != resend::spool::scan::record) {
            if (R.read_at >= R.end) {
                if (R.damage.at != -1) damage_ends(R.end);
                break;
            }
            skip_damage(result == resend::spool::scan::incomplete);
            continue;
        }
        // Whole (its CRC holds) but not a record of this version: stepped
        // over by its length, which the CRC vouches for.
        bool kept = R.version != 0 ? resend::spool::read_items({items, count}, R.version, &record)
                                   : resend::spool::read_items({items, count}, 2, &record) ||
                                         resend::spool::read_items({items, count}, 1, &record);
        if (!kept) {
            damage_begins(false);
            R.read_at += static_cast<off_t>(size);
            continue;
        }
        R.resume_at = -1;
        if (R.damage.at != -1) damage_ends(R.read_at);
        ngx_http_resend_confirmation_link_t *link = link_for(record.address);
        if (link == nullptr) return;
        if (!ngx_http_resend_confirmation_link_ready(link)) {
            // On its way up: looked at again soon. Down: woken, and looked
            // at again in a second (not ten connection attempts a second to
            // a Redis that is down while another one is up).
            bool connecting = ngx_http_resend_confirmation_link_connecting(link);
            if (!connecting) ngx_http_resend_confirmation_link_wake(link);
            schedule(connecting && R.flight.count == 0 ? retry_interval / 10 : retry_interval);
            return;
        }
        // The command a live request sends: the script with its limits, else XADD.
        size_t nlimits = record.limits.size() / 4;
        bool full = nlimits > 0 && R.eval_next;
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
        ngx_uint_t token = (R.flight.head + R.flight.count) % max_in_flight;
        if (!ngx_http_resend_confirmation_link_send_replay(link, {args, argc}, replayed,
                                                           reinterpret_cast<void *>(token))) {
            schedule(retry_interval);
            return;
        }
        if (full) R.eval_next = false;
        R.flight.slots[token] = {R.read_at + static_cast<off_t>(size), nlimits, replay_slot::state::waiting};
        ++R.flight.count;
        R.read_at += static_cast<off_t>(size);
    }
    if (R.flight.count == 0 && !R.failed && R.read_at >= R.end) {
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
    ngx_atomic_uint_t ours = static_cast<ngx_atomic_uint_t>(ngx_http_resend_confirmation_writer_size());
    if (records != 0) (void) ngx_atomic_cmp_set(&R.sh->records, records, 0);
    if (bytes != ours) (void) ngx_atomic_cmp_set(&R.sh->bytes, bytes, ours);
}

void tick(ngx_event_t *) noexcept {
    if (ngx_exiting || ngx_terminate || ngx_quit) return;
    if (R.fd == -1) {
        // The directory is looked at whatever the gauges say: segments an
        // nginx they did not count left there (a binary upgrade's old
        // workers) are replayed all the same.
        ngx_atomic_uint_t bytes = R.sh->bytes, records = R.sh->records;
        size_t others = 0;
        if (!adopt(&others)) {
            // Our own segment holds records.
            bool ours = ngx_http_resend_confirmation_writer_size() > static_cast<off_t>(resend::spool::header_size);
            if (others == 0 && !ours) settle_gauges(bytes, records);
            // Nothing free: our own segment is sealed for the next turn once
            // Redis can take it (not before: sealing while it is down would
            // only make many small segments).
            if (!ours) {
                schedule(idle_interval);
                return;
            }
            if (any_link_ready()) {
                ngx_http_resend_confirmation_writer_seal();
                schedule(retry_interval / 10);
            } else {
                schedule(retry_interval);
            }
            return;
        }
    }
    send_more();
    if (!R.tick.timer_set && !R.tick.posted && R.flight.count == 0) schedule(retry_interval);
}

// A replay command's reply (null: none) and fate, in any order: `data` is
// its slot (several links answer, each in its own time).
void replayed(ngx_http_resend_confirmation_link_t *, void *data, const resend::redis_reply *reply,
              ngx_http_resend_confirmation_fate_t fate) noexcept {
    auto token = reinterpret_cast<uintptr_t>(data);
    if (token >= max_in_flight || R.flight.count == 0) return;  // not ours any more (cannot happen)
    replay_slot &slot = R.flight.slots[token];
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
            R.eval_next = true;
            R.retry_soon = true;
        }
    }
    if (fate == ngx_http_resend_confirmation_fate_t::unsent && reply != nullptr) {
        R.retry_soon = true;  // MOVED or ASK: sent again to the node named
    }
    slot.state = stored ? replay_slot::state::stored : replay_slot::state::failed;
    if (!stored) R.failed = true;

    // The acknowledged offset moves over the records answered without a gap.
    while (R.flight.count > 0 && R.flight.slots[R.flight.head].state != replay_slot::state::waiting) {
        replay_slot &oldest = R.flight.slots[R.flight.head];
        if (oldest.state == replay_slot::state::failed) R.gap = true;
        if (!R.gap) {
            R.acked = oldest.end;
            ++R.acks_unwritten;
            shared_sub(&R.sh->records, 1);
            (void) ngx_atomic_fetch_add(&R.sh->replayed, 1);
        }
        // After a failure, later records are sent again (at least once).
        oldest.state = replay_slot::state::waiting;
        R.flight.head = (R.flight.head + 1) % max_in_flight;
        --R.flight.count;
    }
    if (R.flight.count == 0) {
        write_progress();
        if (R.failed) {
            // Go back to the first record not acknowledged, a little later.
            R.failed = R.gap = false;
            R.read_at = R.acked;
            R.damage.at = -1;
            schedule(R.retry_soon ? retry_interval / 10 : retry_interval);
            R.retry_soon = false;
            return;
        }
    } else if (R.acks_unwritten >= max_in_flight) {
        write_progress();
    }
    if (R.flight.count <= max_in_flight / 2 && !R.failed) schedule(0);
}

}  // namespace

ngx_int_t ngx_http_resend_confirmation_replay_start(const ngx_http_resend_confirmation_spool_worker_t &spool) noexcept {
    ngx_memzero(&R, sizeof(R));
    R.fd = -1;
    if (spool.conf == nullptr) return NGX_OK;
    static_cast<ngx_http_resend_confirmation_spool_worker_t &>(R) = spool;
    R.buf.capacity = 64 * 1024;
    R.buf.data = static_cast<u_char *>(ngx_alloc(R.buf.capacity, R.log));
    if (R.buf.data == nullptr) return NGX_ERROR;
    ngx_http_resend_confirmation_spool_event(&R.tick, tick, &R, R.log);
    // Look for segments left by an earlier nginx or a worker that died.
    schedule(retry_interval / 10);
    return NGX_OK;
}

void ngx_http_resend_confirmation_replay_exit() noexcept {
    if (R.conf == nullptr) return;
    if (R.fd != -1) {
        write_progress();
        close(R.fd);
        R.fd = -1;
    }
    // The worker ends here: its timers and posted events go with it.
    ngx_free(R.buf.data);
    R.buf.data = nullptr;
    R.conf = nullptr;
}

void ngx_http_resend_confirmation_replay_kept() noexcept {
    if (!R.tick.timer_set && !R.tick.posted) schedule(retry_interval);
}
