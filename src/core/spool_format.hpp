// The spool's segment files: what a record looks like on disk, and how a
// reader tells a good record from a torn or corrupt one. Pure: no I/O.
//
//   segment := header record*
//   header  := "RCSPOOL2" acked:u64le          (16 bytes; `acked` is the offset of the
//                                                first record not yet acknowledged)
//   record  := length:u32le crc:u32le payload   (crc = CRC32C of payload)
//   payload := count:u16le (size:u32le bytes){count}
//
// The items of a payload are the record as the spool keeps it: the Redis
// address (as configured, with " db=N" for a database other than 0), the stream, its maxlen, the number n of its shared limits, the
// dry-run flag, n x (key in Redis, per, period, burst) as the script takes
// them, then the fields as sent (name, value)... Segments of version 1
// ("RCSPOOL1", written before shared limits were kept) have the fields
// right after the maxlen: they are replayed as they were, without limits.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace resend::spool {

// CRC32C (Castagnoli, reflected 0x82F63B78), as iSCSI and ext4 use it:
// crc32c("123456789") == 0xE3069283. `crc` continues an earlier value.
std::uint32_t crc32c(const void *data, std::size_t size, std::uint32_t crc = 0) noexcept;

inline constexpr std::string_view magic = "RCSPOOL2";
inline constexpr std::string_view magic_v1 = "RCSPOOL1";
inline constexpr std::size_t header_size = 16;
inline constexpr std::size_t record_overhead = 8;  // length and CRC
inline constexpr std::size_t max_payload = 1 << 20;
inline constexpr std::size_t max_items = 512;

void write_header(char *out, std::uint64_t acked) noexcept;  // header_size bytes
// False when `in` (n bytes) is not a segment header; *version is 1 or 2.
bool read_header(const char *in, std::size_t n, std::uint64_t *acked, unsigned *version) noexcept;

// A record's items, as kept: where it goes, its shared limits, its fields.
struct kept_record {
    std::string_view address, stream, maxlen, dry_run;
    std::span<const std::string_view> limits;  // 4 items per limit
    std::span<const std::string_view> fields;
};
inline constexpr std::size_t items_before_limits = 5;
// False when `items` cannot be a record of `version`.
bool read_items(std::span<const std::string_view> items, unsigned version, kept_record *out) noexcept;

// Bytes write_record() writes for `items`; 0 when they cannot be one record
// (more than max_items, or a payload over max_payload).
std::size_t record_size(std::span<const std::string_view> items) noexcept;
// Writes the record; `out` holds record_size(items) bytes. Returns the end.
char *write_record(char *out, std::span<const std::string_view> items) noexcept;

enum class scan : unsigned char {
    record,      // a whole, intact record: *size bytes, its items in `items`
    incomplete,  // the bytes end inside a record (more to read, or a torn tail)
    corrupt,     // not a record: impossible length, CRC mismatch, or a bad payload
};

// Reads the record at the start of `in` (n bytes). On `record`, *size is its
// size and items[0 .. *count) point into `in`; `items` holds max_items.
scan read_record(const char *in, std::size_t n, std::size_t *size, std::string_view *items,
                 std::size_t *count) noexcept;

// Where the records go on after damage at the start of `in` (n bytes): the
// first offset from 1 at which a whole record reads. Byte by byte, not by
// the damaged record's length: a flipped bit there (a length that still
// ends on a later record) would skip the intact records in between. When
// no record reads: n if `at_end` (the bytes end where the segment does),
// else the first offset whose record would end past the n bytes (read from
// there and look again).
std::size_t next_record_start(const char *in, std::size_t n, bool at_end) noexcept;

}  // namespace resend::spool
