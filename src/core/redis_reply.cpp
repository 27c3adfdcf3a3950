#include "redis_reply.hpp"

#include <cstdio>
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

// What a type byte's line holds: a bulk string's length (its body follows),
// an aggregate's number of elements (or of pairs), or neither.
enum class line_kind : unsigned char { bulk, aggregate, pairs, other };

line_kind kind_of(char type) noexcept {
    switch (type) {
    case '$':  // RESP2 bulk string
    case '=':  // RESP3 verbatim string (hiredis 1.x)
    case '!':  // RESP3 blob error
        return line_kind::bulk;
    case '*':  // RESP2 array
    case '~':  // RESP3 set
    case '>':  // RESP3 push
        return line_kind::aggregate;
    case '%':  // RESP3 map
    case '|':  // RESP3 attribute
        return line_kind::pairs;
    default:
        return line_kind::other;
    }
}

}  // namespace

std::size_t reply_scanner::fail(std::size_t at, const char *what, std::size_t limit) noexcept {
    exceeded_ = true;
    std::snprintf(why_, sizeof(why_), "a reply over the module's limits: %s %zu", what, limit);
    return at;
}

void reply_scanner::end_line() noexcept {
    state_ = state::type;
    // hiredis takes a length of digits, with a '-' for -1 (nil); anything
    // else it fails. A length that may have a body is skipped with it.
    if (kind_of(type_) == line_kind::bulk && counting_ && !malformed_ && line_size_ > (negative_ ? 2u : 1u) &&
        !(negative_ && number_ != 0)) {
        body_left_ = number_ + 2;  // and its CR LF
        state_ = state::body;
    }
}

std::size_t reply_scanner::scan(const char *data, std::size_t size) noexcept {
    if (exceeded_) return 0;
    for (std::size_t i = 0; i < size;) {
        if (state_ == state::body) {
            std::size_t n = size - i < body_left_ ? size - i : body_left_;
            i += n;
            body_left_ -= n;
            if (body_left_ == 0) state_ = state::type;
            continue;
        }
        char c = data[i];
        if (state_ == state::type) {
            type_ = c;
            state_ = state::line;
            cr_ = negative_ = malformed_ = false;
            counting_ = kind_of(c) != line_kind::other;
            line_size_ = number_ = 0;
            ++i;
            continue;
        }
        if (cr_ && c == '\n') {
            end_line();
            ++i;
            continue;
        }
        ++line_size_;
        if (line_size_ - (c == '\r') > limits_.line) return fail(i, "a line longer than", limits_.line);
        if (cr_) malformed_ = true;  // a CR inside the line
        cr_ = c == '\r';
        if (counting_ && !malformed_ && !cr_) {
            line_kind kind = kind_of(type_);
            std::size_t limit = kind == line_kind::bulk        ? limits_.bulk
                                : kind == line_kind::aggregate ? limits_.elements
                                                               : limits_.elements / 2;
            if (c == '-' && line_size_ == 1) {
                negative_ = true;
            } else if (c < '0' || c > '9') {
                malformed_ = true;
            } else if (negative_) {
                number_ = number_ != 0 || c != '0';  // only whether it is -0
            } else {
                number_ = number_ * 10 + static_cast<std::size_t>(c - '0');
                if (number_ > limit) {
                    return fail(i,
                                kind == line_kind::bulk ? "a bulk string longer than"
                                                        : "an aggregate with more elements than",
                                kind == line_kind::pairs ? limit * 2 : limit);
                }
            }
        }
        ++i;
    }
    return size;
}

reply_reader::reply_reader(const reply_limits &limits) noexcept : scanner_(limits) {
    redisReader *reader = redisReaderCreateWithFunctions(&callbacks);
    if (reader != nullptr) reader->privdata = this;
    reader_ = reader;
}

reply_reader::~reply_reader() {
    if (reader_ != nullptr) redisReaderFree(static_cast<redisReader *>(reader_));
}

bool reply_reader::feed(const char *data, std::size_t size) noexcept {
    if (scanner_.exceeded() != nullptr) return false;
    // hiredis has only the bytes within the limits: the reply that passes
    // one never completes, and next() says why once the replies before it
    // are out.
    std::size_t within = scanner_.scan(data, size);
    return redisReaderFeed(static_cast<redisReader *>(reader_), data, within) == REDIS_OK;
}

const char *reply_reader::failure() const noexcept { return failure_; }

std::size_t reply_reader::buffered() const noexcept {
    const auto *reader = static_cast<const redisReader *>(reader_);
    return reader == nullptr ? 0 : reader->len - reader->pos;
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
        failure_ = "protocol error";
        return status::protocol_error;
    }
    if (object == nullptr) {
        if (scanner_.exceeded() == nullptr) return status::incomplete;
        failure_ = scanner_.exceeded();
        return status::protocol_error;
    }
    reply.kind = last_kind_;
    reply.error = {error_, error_size_};
    reply.elements = {elements_, element_count_};
    reply.truncated = truncated_;
    reply.integer = integer_;
    return status::reply;
}

void reply_reader::reset() noexcept {
    scanner_ = reply_scanner(scanner_.limits());
    failure_ = "protocol error";
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
