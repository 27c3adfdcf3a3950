// Redis commands in RESP: the bytes that go on the wire.
//
// Every argument is sent as a length-prefixed bulk string, so an email, a
// header or any other value cannot end a command early or start another one.
// Written here rather than with hiredis's redisFormatCommandArgv because
// that allocates each command on the heap; these write into a buffer the
// caller owns (nginx's per-worker link buffer).
#pragma once

#include <cstddef>
#include <span>
#include <string_view>

namespace resend {

// Bytes that resp_write() will write for `args`.
std::size_t resp_size(std::span<const std::string_view> args) noexcept;

// Writes `*N\r\n` then `$len\r\n<bytes>\r\n` per argument; returns the end.
// `out` must hold resp_size(args) bytes.
char *resp_write(char *out, std::span<const std::string_view> args) noexcept;

}  // namespace resend
