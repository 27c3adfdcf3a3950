// A link's pending commands and their deadlines. Every command has one
// deadline, `timeout` after it was handed to the link, whatever it waits
// for (connect, the handshake, Redis, its acknowledgement). One timer,
// `overdue`, stays at or before the earliest deadline of what is in flight,
// kept or waiting for WAIT. When it fires:
// - a command not yet written (queued behind the handshake) is taken back
//   and its request answered alone: the connection attempt goes on;
// - a command written with the link's whole timeout (or a handshake one)
//   means Redis is stalled: the connection fails;
// - a command sent again (MOVED, ASK, the script after NOSCRIPT) with what
//   was left of its request's time, or a record stored and waiting for its
//   WAIT, is answered alone, as written but unconfirmed.

#include "redis/ngx_http_resend_confirmation_link.h"

#include "core/redis_command.hpp"

namespace {

using kind = ngx_http_resend_confirmation_pending_kind_t;
using fate = ngx_http_resend_confirmation_fate_t;

bool reserve(ngx_http_resend_confirmation_link_t *link, size_t more) noexcept {
    auto &out = link->out;
    if (out.sent == out.size) out.sent = out.size = 0;
    if (out.size + more <= out.capacity) return true;
    // Grows to the largest burst seen and stays there: no allocation per
    // request once the worker is warm.
    size_t capacity = ngx_max(out.capacity * 2, out.size + more);
    capacity = ngx_max(capacity, (size_t) 4096);
    auto *bigger = static_cast<u_char *>(ngx_alloc(capacity, link->log));
    if (bigger == nullptr) return false;
    if (out.data != nullptr) {
        ngx_memcpy(bigger, out.data + out.sent, out.size - out.sent);
        ngx_free(out.data);
    }
    out.size -= out.sent;
    out.sent = 0;
    out.data = bigger;
    out.capacity = capacity;
    return true;
}

// Takes the commands first..last (consecutive, none of their bytes
// written) out of the link, and answers their requests: never sent.
void take_back(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *first,
               ngx_http_resend_confirmation_pending_t *last) noexcept {
    auto &out = link->out;
    size_t len = last->end - first->start;
    u_char *from = out.data + out.sent + (first->start - out.written);
    u_char *to = out.data + out.sent + (last->end - out.written);
    ngx_memmove(from, to, out.data + out.size - to);
    out.size -= len;
    out.appended -= len;

    ngx_queue_t taken;
    ngx_queue_init(&taken);
    ngx_queue_t *q = &first->queue;
    ngx_uint_t count = 0;
    for (;;) {
        ngx_queue_t *next = ngx_queue_next(q);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&taken, q);
        ++count;
        if (q == &last->queue) break;
        q = next;
    }
    ngx_http_resend_confirmation_link_count_in_flight(link, link->in_flight - count);
    for (q = ngx_queue_head(&link->pending); q != ngx_queue_sentinel(&link->pending); q = ngx_queue_next(q)) {
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (entry->start >= first->start) {
            entry->start -= len;
            entry->end -= len;
        }
    }
    while (!ngx_queue_empty(&taken)) {
        q = ngx_queue_head(&taken);
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&link->spare, q);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        ngx_http_resend_confirmation_link_finish(link, entry, nullptr, fate::unsent);
    }
}

// Answers the request of `entry` now, as written but unconfirmed; the
// entry stays where it is, for its reply, with nobody waiting for it.
void answer_alone(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *entry) noexcept {
    ngx_http_resend_confirmation_pending_t alone = *entry;
    ngx_http_resend_confirmation_link_detach(entry);
    ngx_http_resend_confirmation_link_finish(link, &alone, nullptr, fate::unknown);
}

// A command sent again, here by MOVED or ASK or after NOSCRIPT, with what
// was left of its request's time, is overdue: the request is answered
// alone, and this Redis, which may be healthy, has the whole timeout to
// reply before it counts as stalled.
void answer_resent(ngx_http_resend_confirmation_link_t *link, ngx_http_resend_confirmation_pending_t *entry) noexcept {
    if (entry->r != nullptr) {  // else the client had gone (or it is the ASKING before one)
        ngx_log_error(NGX_LOG_ERR, link->log, 0, "resend_confirmation: redis %V: no reply in time to a command sent %s",
                      &link->name,
                      entry->redirects > 1   ? "here by redirects"
                      : entry->redirects > 0 ? "here by a redirect"
                                             : "again with what was left of its request's time");
    }
    entry->redirects = 0;
    entry->deadline = ngx_current_msec + link->conf->timeout;
    entry->queued = ngx_current_msec;
    answer_alone(link, entry);
}

// One step of the overdue scan, oldest command first; false when nothing
// (more) is overdue. Answering a request may send commands or fail the
// link, so every step that answers one starts the scan again.
bool overdue_step(ngx_http_resend_confirmation_link_t *link) noexcept {
    ngx_http_resend_confirmation_pending_t *first = nullptr, *last = nullptr;
    for (ngx_queue_t *q = ngx_queue_head(&link->pending); q != ngx_queue_sentinel(&link->pending);
         q = ngx_queue_next(q)) {
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        bool due = !ngx_http_resend_confirmation_before(entry->deadline);
        if (entry->kind != kind::handshake && link->out.written <= entry->start) {
            // Not written yet: the overdue ones, consecutive, are taken
            // back and answered alone.
            if (due) {
                if (first == nullptr) first = entry;
                last = entry;
                continue;
            }
            if (first != nullptr) break;
            continue;
        }
        if (!due) continue;
        if (static_cast<ngx_msec_int_t>(entry->deadline - entry->queued) >=
            static_cast<ngx_msec_int_t>(link->conf->timeout)) {
            // Written with the link's whole timeout, or a handshake
            // command: Redis is stalled.
            ngx_http_resend_confirmation_metrics_link(link->conf->metrics,
                                                      ngx_http_resend_confirmation_link_event_t::timed_out);
            ngx_http_resend_confirmation_link_fail(link, "no reply in time");
            return false;
        }
        answer_resent(link, entry);
        return true;
    }
    if (first != nullptr) {
        take_back(link, first, last);
        return true;
    }
    // Stored on the master, its WAIT not answered yet: the request's time
    // is up, so it is answered alone as written but unconfirmed.
    auto &replicating = link->ack.replicating;
    for (ngx_queue_t *q = ngx_queue_head(&replicating); q != ngx_queue_sentinel(&replicating); q = ngx_queue_next(q)) {
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (entry->r == nullptr || ngx_http_resend_confirmation_before(entry->deadline)) continue;
        answer_alone(link, entry);
        return true;
    }
    return false;
}

// Moves the overdue timer to the earliest deadline of `queue`'s entries
// (those with a request only, when asked).
void due_by_any(ngx_http_resend_confirmation_link_t *link, ngx_queue_t *queue, bool requests_only) noexcept {
    for (ngx_queue_t *q = ngx_queue_head(queue); q != ngx_queue_sentinel(queue); q = ngx_queue_next(q)) {
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (requests_only && entry->r == nullptr) continue;
        ngx_http_resend_confirmation_link_due_by(link, entry->deadline);
    }
}

}  // namespace

void ngx_http_resend_confirmation_link_count_in_flight(ngx_http_resend_confirmation_link_t *link,
                                                       ngx_uint_t count) noexcept {
    ngx_http_resend_confirmation_metrics_in_flight(
        link->conf->metrics, static_cast<ngx_int_t>(count) - static_cast<ngx_int_t>(link->in_flight));
    link->in_flight = count;
}

void ngx_http_resend_confirmation_link_due_by(ngx_http_resend_confirmation_link_t *link, ngx_msec_t deadline) noexcept {
    if (link->overdue.timer_set) {
        if (static_cast<ngx_msec_int_t>(link->overdue.timer.key - deadline) <= 0) return;
        ngx_del_timer(&link->overdue);
    }
    ngx_msec_int_t left = static_cast<ngx_msec_int_t>(deadline - ngx_current_msec);
    ngx_add_timer(&link->overdue, left > 0 ? left : 1);
}

bool ngx_http_resend_confirmation_link_encode(ngx_http_resend_confirmation_link_t *link,
                                              ngx_http_resend_confirmation_pending_t *entry,
                                              std::span<const std::string_view> args) noexcept {
    if (!reserve(link, resend::resp_size(args))) return false;
    auto &out = link->out;
    u_char *end = reinterpret_cast<u_char *>(resend::resp_write(reinterpret_cast<char *>(out.data + out.size), args));
    entry->start = out.appended;
    out.appended += end - (out.data + out.size);
    entry->end = out.appended;
    out.size = end - out.data;
    entry->command = args[0];
    ngx_queue_insert_tail(&link->pending, &entry->queue);
    ngx_http_resend_confirmation_link_count_in_flight(link, link->in_flight + 1);
    // Only a command due before the timer (one sent again by a redirect, or
    // queued behind a handshake command with a later deadline) moves it.
    ngx_http_resend_confirmation_link_due_by(link, entry->deadline);
    return true;
}

ngx_http_resend_confirmation_pending_t *
ngx_http_resend_confirmation_link_append(ngx_http_resend_confirmation_link_t *link,
                                         std::span<const std::string_view> args,
                                         ngx_http_resend_confirmation_pending_kind_t what, ngx_http_request_t *r,
                                         ngx_msec_t deadline, ngx_http_resend_confirmation_link_done_pt done,
                                         void *data) noexcept {
    ngx_http_resend_confirmation_pending_t *entry;
    if (!ngx_queue_empty(&link->spare)) {
        ngx_queue_t *q = ngx_queue_head(&link->spare);
        ngx_queue_remove(q);
        entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
    } else {
        entry = static_cast<ngx_http_resend_confirmation_pending_t *>(
            ngx_palloc(link->pool, sizeof(ngx_http_resend_confirmation_pending_t)));
        if (entry == nullptr) return nullptr;
    }
    entry->deadline = deadline;
    entry->queued = ngx_current_msec;
    if (!ngx_http_resend_confirmation_link_encode(link, entry, args)) {
        ngx_queue_insert_head(&link->spare, &entry->queue);
        return nullptr;
    }
    entry->kind = what;
    entry->r = r;
    entry->args = r != nullptr ? args : std::span<const std::string_view>();
    entry->redirects = 0;
    entry->done = done;
    entry->data = data;
    entry->holder = nullptr;
    if (what == kind::request || what == kind::replay) ngx_http_resend_confirmation_ack_queued(link, entry);
    return entry;
}

void ngx_http_resend_confirmation_link_arm_overdue(ngx_http_resend_confirmation_link_t *link) noexcept {
    if (link->overdue.timer_set) ngx_del_timer(&link->overdue);
    due_by_any(link, &link->kept, false);
    due_by_any(link, &link->pending, false);
    // Those answered alone wait for WAIT with nobody behind them.
    due_by_any(link, &link->ack.replicating, true);
}

void ngx_http_resend_confirmation_link_overdue(ngx_event_t *ev) noexcept {
    auto *link = static_cast<ngx_http_resend_confirmation_link_t *>(ev->data);
    // Kept records (another master may take them) whose time is up, never sent again.
    while (!ngx_queue_empty(&link->kept)) {
        ngx_queue_t *q = ngx_queue_head(&link->kept);
        auto *entry = ngx_queue_data(q, ngx_http_resend_confirmation_pending_t, queue);
        if (ngx_http_resend_confirmation_before(entry->deadline)) break;
        ngx_queue_remove(q);
        ngx_queue_insert_tail(&link->spare, q);
        ngx_http_resend_confirmation_link_finish(link, entry, nullptr, fate::unsent);
    }
    while (overdue_step(link)) {
    }
    ngx_http_resend_confirmation_link_arm_overdue(link);
}
