// libFuzzer target: arbitrary bytes from "Redis".
// - Fed in two pieces, they give the same replies (and the same reason to
//   fail) as fed at once, and never crash the reader.
// - The reply limits are small ones taken from the input (or the defaults),
//   so that every limit is reached, and the reader is checked against
//   hiredis reading the same bytes without limits: the same replies up to
//   the first one hiredis shows to be over a limit, and there a failure
//   that names the limits; never a failure for a reply within them.
// - Once the reader says a reply is incomplete, what it holds is at most
//   what the limits allow for one unfinished item.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>
#include <hiredis/read.h>

#include "core/redis_reply.hpp"

namespace {

enum class end { incomplete, protocol_error, limit };

struct seen {
    resend::reply_kind kind;
    std::string error;
    bool operator==(const seen &) const = default;
};

struct read {
    std::vector<seen> replies;
    end how = end::incomplete;
    bool operator==(const read &) const = default;
};

void read_all(resend::reply_reader &reader, const resend::reply_limits &limits, read &out) {
    resend::redis_reply reply;
    for (;;) {
        auto status = reader.next(reply);
        if (status == resend::reply_reader::status::incomplete) {
            // A line, or a bulk string's header and body so far.
            if (reader.buffered() > limits.line + limits.bulk + 4) std::abort();
            out.how = end::incomplete;
            return;
        }
        if (status == resend::reply_reader::status::protocol_error) {
            bool limit = std::string_view(reader.failure()).starts_with("a reply over the module's limits");
            out.how = limit ? end::limit : end::protocol_error;
            return;
        }
        out.replies.push_back({reply.kind, std::string(reply.error)});
    }
}

// The oracle: hiredis without limits, noting of each top-level reply its
// kind, error text and whether any of its elements is over the limits.
struct oracle_reply {
    seen what;
    bool over;
};

const resend::reply_limits *oracle_limits;
seen oracle_top;
bool oracle_over;
bool oracle_unknown;  // a kind this check does not know (RESP3 in hiredis 1.x)
char oracle_object;

std::size_t digits(unsigned long long n) {
    std::size_t count = 1;
    for (; n >= 10; n /= 10) ++count;
    return count;
}

void oracle_note(const redisReadTask *task, resend::reply_kind kind, std::string_view error,
                 bool over) {
    if (task->parent == nullptr) {
        oracle_top = {kind, std::string(error)};
        oracle_over = false;
    }
    oracle_over = oracle_over || over;
}

void *oracle_string(const redisReadTask *task, char *text, size_t size) {
    const resend::reply_limits &l = *oracle_limits;
    switch (task->type) {
    case REDIS_REPLY_STATUS:
        oracle_note(task, resend::reply_kind::status, {}, size > l.line);
        break;
    case REDIS_REPLY_ERROR:
        oracle_note(task, resend::reply_kind::error,
                    std::string_view(text, size).substr(0, 128), size > l.line);
        break;
    case REDIS_REPLY_STRING:
        oracle_note(task, resend::reply_kind::string, {}, size > l.bulk || digits(size) > l.line);
        break;
    default:
        oracle_unknown = true;
    }
    return &oracle_object;
}

#if HIREDIS_MAJOR >= 1
using element_count = size_t;
#else
using element_count = int;
#endif

void *oracle_array(const redisReadTask *task, element_count count) {
    if (task->type != REDIS_REPLY_ARRAY) oracle_unknown = true;
    auto n = static_cast<std::size_t>(count);
    oracle_note(task, resend::reply_kind::array, {}, n > oracle_limits->elements || digits(n) > oracle_limits->line);
    return &oracle_object;
}

void *oracle_integer(const redisReadTask *task, long long value) {
    std::size_t size = value < 0 ? 1 + digits(0ULL - static_cast<unsigned long long>(value))
                                 : digits(static_cast<unsigned long long>(value));
    oracle_note(task, resend::reply_kind::integer, {}, size > oracle_limits->line);
    return &oracle_object;
}

void *oracle_nil(const redisReadTask *task) {
    oracle_note(task, resend::reply_kind::nil, {}, 2 > oracle_limits->line);  // "-1"
    return &oracle_object;
}

#if HIREDIS_MAJOR >= 1
void *oracle_double(const redisReadTask *, double, char *, size_t) {
    oracle_unknown = true;
    return &oracle_object;
}

void *oracle_bool(const redisReadTask *, int) {
    oracle_unknown = true;
    return &oracle_object;
}
#endif

void oracle_free(void *) {}

redisReplyObjectFunctions oracle_functions = {
    .createString = oracle_string,
    .createArray = oracle_array,
    .createInteger = oracle_integer,
#if HIREDIS_MAJOR >= 1
    .createDouble = oracle_double,
#endif
    .createNil = oracle_nil,
#if HIREDIS_MAJOR >= 1
    .createBool = oracle_bool,
#endif
    .freeObject = oracle_free,
};

// Returns false when the bytes hold a kind the oracle does not know.
bool oracle_read(const char *bytes, std::size_t size, const resend::reply_limits &limits,
                 std::vector<oracle_reply> &replies, end &how) {
    oracle_limits = &limits;
    oracle_unknown = false;
    redisReader *reader = redisReaderCreateWithFunctions(&oracle_functions);
    if (reader == nullptr) std::abort();
    how = end::incomplete;
    if (redisReaderFeed(reader, bytes, size) != REDIS_OK) std::abort();
    for (;;) {
        void *object = nullptr;
        if (redisReaderGetReply(reader, &object) != REDIS_OK) {
            how = end::protocol_error;
            break;
        }
        if (object == nullptr) break;
        replies.push_back({oracle_top, oracle_over});
    }
    redisReaderFree(reader);
    return !oracle_unknown;
}

void check_against_oracle(const char *bytes, std::size_t size, const resend::reply_limits &limits,
                          const read &got) {
    std::vector<oracle_reply> replies;
    end how;
    if (!oracle_read(bytes, size, limits, replies, how)) return;
    std::size_t first_over = 0;
    while (first_over < replies.size() && !replies[first_over].over) ++first_over;
    if (got.replies.size() != first_over) std::abort();
    for (std::size_t i = 0; i < first_over; ++i) {
        if (!(got.replies[i] == replies[i].what)) std::abort();
    }
    if (first_over < replies.size()) {
        if (got.how != end::limit) std::abort();
    } else if (got.how != how && got.how != end::limit) {
        // Where hiredis stops (incomplete, or a protocol error), the reader
        // may have stopped at a limit first; nothing else.
        std::abort();
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const char *bytes = reinterpret_cast<const char *>(data);
    resend::reply_limits limits;
    if (size >= 4 && data[1] % 2 == 0) {
        limits = {.bulk = data[1] % 64u, .elements = data[2] % 16u, .line = 1u + data[3] % 32u};
    }

    resend::reply_reader whole(limits);
    if (!whole.valid()) return 0;
    read expected;
    if (!whole.feed(bytes, size)) std::abort();  // a fresh reader takes any bytes
    read_all(whole, limits, expected);
    check_against_oracle(bytes, size, limits, expected);

    std::size_t cut = size == 0 ? 0 : data[0] % (size + 1);
    resend::reply_reader pieces(limits);
    if (!pieces.valid()) return 0;
    read got;
    if (!pieces.feed(bytes, cut)) std::abort();
    read_all(pieces, limits, got);
    if (got.how == end::incomplete) {
        if (pieces.feed(bytes + cut, size - cut)) read_all(pieces, limits, got);
        else got.how = end::protocol_error;  // hiredis refused bytes (out of memory)
    }
    if (!(got == expected)) std::abort();
    return 0;
}
