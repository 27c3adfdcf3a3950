#include "redis_reply.hpp"

#include <cstring>

#include <hiredis/hiredis.h>  // HIREDIS_MAJOR
#include <hiredis/read.h>

namespace resend {
namespace {

// Every object the reader asks for is this placeholder: nothing is
// allocated; the top-level reply's kind (an error's text, an integer's
// value) is kept (note()), and every element in the reader's bounded
// buffers (keep()).
char placeholder;

reply_reader *owner(const redisReadTask *task) noexcept {
    // Walk up to the root task: its privdata is the reader's.
    while (task->parent != nullptr) task = task->parent;
    return static_cast<reply_reader *>(task->privdata);
}

unsigned depth_of(const redisReadTask *task) noexcept {
    unsigned depth = 0;
    for (; task->parent != nullptr; task = task->parent) ++depth;
    return depth;
}

void keep(const redisReadTask *task, reply_kind kind, const char *text, size_t size,
          long long integer = 0, size_t count = 0) noexcept {
    owner(task)->keep(depth_of(task), kind, text, size, integer, count);
}

void *on_string(const redisReadTask *task, char *text, size_t size) noexcept {
    reply_kind kind = task->type == REDIS_REPLY_ERROR    ? reply_kind::error
                      : task->type == REDIS_REPLY_STATUS ? reply_kind::status
                                                         : reply_kind::string;
    if (task->parent == nullptr) owner(task)->note(kind, text, size);
    keep(task, kind, text, size);
    return &placeholder;
}

// hiredis 1.0 counts array elements in a size_t (0.14: int) and adds RESP3's
// doubles and booleans; only RESP2 is spoken here, but a reply of those kinds
// is still noted rather than left to look like the previous one.
#if HIREDIS_MAJOR >= 1
using element_count = size_t;
#else
using element_count = int;
#endif

void *on_array(const redisReadTask *task, element_count count) noexcept {
    if (task->parent == nullptr) owner(task)->note(reply_kind::array, nullptr, 0);
    keep(task, reply_kind::array, nullptr, 0, 0, static_cast<size_t>(count));
    return &placeholder;
}

void *on_integer(const redisReadTask *task, long long value) noexcept {
    if (task->parent == nullptr) owner(task)->note(reply_kind::integer, nullptr, 0, value);
    keep(task, reply_kind::integer, nullptr, 0, value);
    return &placeholder;
}

void *on_nil(const redisReadTask *task) noexcept {
    if (task->parent == nullptr) owner(task)->note(reply_kind::nil, nullptr, 0);
    keep(task, reply_kind::nil, nullptr, 0);
    return &placeholder;
}

#if HIREDIS_MAJOR >= 1
void *on_double(const redisReadTask *task, double, char *text, size_t size) noexcept {
    if (task->parent == nullptr) owner(task)->note(reply_kind::string, text, size);
    keep(task, reply_kind::string, text, size);
    return &placeholder;
}

void *on_bool(const redisReadTask *task, int value) noexcept {
    if (task->parent == nullptr) owner(task)->note(reply_kind::integer, nullptr, 0);
    keep(task, reply_kind::integer, nullptr, 0, value);
    return &placeholder;
}
#endif

void on_free(void *) noexcept {}

// Designated, so that the members each hiredis version has are named, not
// counted.
redisReplyObjectFunctions callbacks = {
    .createString = on_string,
    .createArray = on_array,
    .createInteger = on_integer,
#if HIREDIS_MAJOR >= 1
    .createDouble = on_double,
#endif
    .createNil = on_nil,
#if HIREDIS_MAJOR >= 1
    .createBool = on_bool,
#endif
    .freeObject = on_free,
};

}  // namespace

reply_reader::reply_reader() noexcept {
    redisReader *reader = redisReaderCreateWithFunctions(&callbacks);
    if (reader != nullptr) reader->privdata = this;
    reader_ = reader;
}

reply_reader::~reply_reader() {
    if (reader_ != nullptr) redisReaderFree(static_cast<redisReader *>(reader_));
}

bool reply_reader::feed(const char *data, std::size_t size) noexcept {
    return redisReaderFeed(static_cast<redisReader *>(reader_), data, size) == REDIS_OK;
}

void reply_reader::note(reply_kind kind, const char *text, std::size_t size, long long integer) noexcept {
    last_kind_ = kind;
    error_size_ = 0;
    integer_ = integer;
    if (kind == reply_kind::error) {
        error_size_ = size < sizeof(error_) ? size : sizeof(error_);
        std::memcpy(error_, text, error_size_);
    }
}

void reply_reader::keep(unsigned depth, reply_kind kind, const char *text, std::size_t size,
                        long long integer, std::size_t count) noexcept {
    if (depth == 0) {  // a new reply begins
        element_count_ = 0;
        text_used_ = 0;
        truncated_ = false;
    }
    if (element_count_ == max_elements) {
        truncated_ = true;
        return;
    }
    std::size_t room = max_text - text_used_;
    if (size > room) {
        truncated_ = true;
        size = room;
    }
    if (size != 0) std::memcpy(text_ + text_used_, text, size);
    elements_[element_count_++] = {kind, depth, count, integer, {text_ + text_used_, size}};
    text_used_ += size;
}

std::size_t reply_skip(std::span<const reply_element> elements, std::size_t i) noexcept {
    unsigned depth = elements[i].depth;
    for (++i; i < elements.size() && elements[i].depth > depth; ++i) {}
    return i;
}

reply_reader::status reply_reader::next(redis_reply &reply) noexcept {
    void *object = nullptr;
    if (redisReaderGetReply(static_cast<redisReader *>(reader_), &object) != REDIS_OK) {
        return status::protocol_error;
    }
    if (object == nullptr) return status::incomplete;
    reply.kind = last_kind_;
    reply.error = {error_, error_size_};
    reply.elements = {elements_, element_count_};
    reply.truncated = truncated_;
    reply.integer = integer_;
    return status::reply;
}

void reply_reader::reset() noexcept {
    if (reader_ != nullptr) redisReaderFree(static_cast<redisReader *>(reader_));
    redisReader *reader = redisReaderCreateWithFunctions(&callbacks);
    if (reader != nullptr) reader->privdata = this;
    reader_ = reader;
}

bool redis_cannot_write_now(std::string_view error) noexcept {
    std::string_view word = error.substr(0, error.find(' '));
    return word == "LOADING" || word == "OOM" || word == "READONLY" || word == "MASTERDOWN";
}

}  // namespace resend
