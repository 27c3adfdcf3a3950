// libFuzzer target: arbitrary bytes from "Redis", fed in two pieces, must
// give the same replies as fed at once, and never crash the reader.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <vector>

#include "core/redis_reply.hpp"

namespace {

struct seen {
    resend::reply_kind kind;
    std::string error;
    bool operator==(const seen &) const = default;
};

// Replies until incomplete; a protocol error ends the list with a marker.
std::vector<seen> read_all(resend::reply_reader &reader) {
    std::vector<seen> out;
    resend::redis_reply reply;
    for (;;) {
        auto status = reader.next(reply);
        if (status == resend::reply_reader::status::incomplete) return out;
        if (status == resend::reply_reader::status::protocol_error) {
            out.push_back({resend::reply_kind::nil, "<protocol error>"});
            return out;
        }
        out.push_back({reply.kind, std::string(reply.error)});
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    const char *bytes = reinterpret_cast<const char *>(data);
    resend::reply_reader whole;
    if (!whole.valid()) return 0;
    std::vector<seen> expected;
    if (whole.feed(bytes, size)) expected = read_all(whole);

    std::size_t cut = size == 0 ? 0 : data[0] % (size + 1);
    resend::reply_reader pieces;
    if (!pieces.valid()) return 0;
    std::vector<seen> got;
    if (pieces.feed(bytes, cut)) got = read_all(pieces);
    bool failed = !got.empty() && got.back().error == "<protocol error>";
    if (!failed && pieces.feed(bytes + cut, size - cut)) {
        std::vector<seen> rest = read_all(pieces);
        got.insert(got.end(), rest.begin(), rest.end());
    }
    if (!failed && got != expected) std::abort();
    return 0;
}
