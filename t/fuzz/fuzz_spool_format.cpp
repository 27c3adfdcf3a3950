// libFuzzer target: arbitrary bytes as a spool segment's records (a torn,
// corrupt or hostile file on disk). The reader must never crash or read
// out of bounds, must report a size within the bytes it was given, and
// what it reads back as a record must write back to the same bytes. After
// damage, the scan for the next record lands on a whole record (or the
// end), skips none, and stops no later when more bytes may follow.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "core/spool_format.hpp"

namespace spool = resend::spool;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t *data, std::size_t size) {
    // A copy of just `size` bytes, so that ASan sees any read past them.
    std::vector<char> bytes(data, data + size);
    static std::string_view items[spool::max_items];
    std::size_t at = 0;
    while (at < bytes.size()) {
        std::size_t record = 0, count = 0;
        spool::scan result = spool::read_record(bytes.data() + at, bytes.size() - at, &record, items, &count);
        if (result != spool::scan::record) {
            std::size_t rest = bytes.size() - at;
            std::size_t next = spool::next_record_start(bytes.data() + at, rest, true);
            if (next == 0 || next > rest) std::abort();
            if (next < rest && spool::read_record(bytes.data() + at + next, rest - next, &record, items, &count) !=
                                   spool::scan::record) {
                std::abort();
            }
            // Nothing whole in between (checked on short inputs: it is quadratic).
            for (std::size_t skipped = 1; rest <= 512 && skipped < next; ++skipped) {
                if (spool::read_record(bytes.data() + at + skipped, rest - skipped, &record, items, &count) ==
                    spool::scan::record) {
                    std::abort();
                }
            }
            std::size_t sooner = spool::next_record_start(bytes.data() + at, rest, false);
            if (sooner == 0 || sooner > next) std::abort();
            if (sooner < rest && spool::read_record(bytes.data() + at + sooner, rest - sooner, &record, items,
                                                    &count) == spool::scan::corrupt) {
                std::abort();
            }
            at += next;
            continue;
        }
        if (record == 0 || record > bytes.size() - at || count > spool::max_items) std::abort();
        // Written again from its items, a record is the same bytes.
        std::vector<std::string_view> read(items, items + count);
        if (spool::record_size(read) != record) std::abort();
        std::string again(record, '\0');
        if (spool::write_record(again.data(), read) != again.data() + record) std::abort();
        if (std::memcmp(again.data(), bytes.data() + at, record) != 0) std::abort();
        // Its items as a kept record, in either version: the parts stay inside them.
        for (unsigned version : {1u, 2u}) {
            spool::kept_record kept;
            if (!spool::read_items(read, version, &kept)) continue;
            if (kept.limits.size() % 4 != 0) std::abort();
            if (kept.limits.size() + kept.fields.size() > count) std::abort();
        }
        at += record;
    }
    std::uint64_t acked = 0;
    unsigned version = 0;
    if (spool::read_header(bytes.data(), bytes.size(), &acked, &version) && version != 1 && version != 2) {
        std::abort();
    }
    return 0;
}
