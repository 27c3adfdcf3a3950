#include "redis_topology.hpp"

#include <charconv>

namespace resend {
namespace {

// CRC16-CCITT as Redis Cluster uses it (XMODEM: polynomial 0x1021, initial 0).
unsigned crc16(std::string_view bytes) noexcept {
    unsigned crc = 0;
    for (unsigned char byte : bytes) {
        crc ^= static_cast<unsigned>(byte) << 8;
        for (int bit = 0; bit < 8; ++bit) {
            crc = (crc & 0x8000) != 0 ? ((crc << 1) ^ 0x1021) : (crc << 1);
            crc &= 0xffff;
        }
    }
    return crc;
}

bool equal_ignoring_case(std::string_view a, std::string_view b) noexcept {
    if (a.size() != b.size()) return false;
    for (std::size_t i = 0; i < a.size(); ++i) {
        char x = a[i], y = b[i];
        if (x >= 'a' && x <= 'z') x = static_cast<char>(x - 'a' + 'A');
        if (y >= 'a' && y <= 'z') y = static_cast<char>(y - 'a' + 'A');
        if (x != y) return false;
    }
    return true;
}

bool parse_number(std::string_view text, unsigned long long &out) noexcept {
    if (text.empty()) return false;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
    return ec == std::errc() && end == text.data() + text.size();
}

bool valid_port(long long port) noexcept { return port >= 1 && port <= 65535; }

bool starts_with_word(std::string_view text, std::string_view word) noexcept {
    return text.substr(0, word.size()) == word &&
           (text.size() == word.size() || text[word.size()] == ' ');
}

bool is_string(const reply_element &e) noexcept {
    return e.kind == reply_kind::string || e.kind == reply_kind::status;
}

}  // namespace

unsigned key_slot(std::string_view key) noexcept {
    std::size_t open = key.find('{');
    if (open != std::string_view::npos) {
        std::size_t close = key.find('}', open + 1);
        if (close != std::string_view::npos && close > open + 1) {
            key = key.substr(open + 1, close - open - 1);
        }
    }
    return crc16(key) & (cluster_slot_count - 1);
}

std::string_view first_key(std::span<const std::string_view> args) noexcept {
    if (args.size() < 2) return {};
    std::string_view name = args[0];
    if (equal_ignoring_case(name, "EVAL") || equal_ignoring_case(name, "EVALSHA") ||
        equal_ignoring_case(name, "EVAL_RO") || equal_ignoring_case(name, "EVALSHA_RO")) {
        unsigned long long keys = 0;
        if (args.size() < 4 || !parse_number(args[2], keys) || keys == 0) return {};
        return args[3];
    }
    return args[1];
}

bool parse_endpoint(std::string_view text, redis_endpoint &out) noexcept {
    std::size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return false;
    unsigned long long port = 0;
    if (!parse_number(text.substr(colon + 1), port) || !valid_port(static_cast<long long>(port))) {
        return false;
    }
    out.host = text.substr(0, colon);
    out.port = static_cast<unsigned>(port);
    return true;
}

redis_redirect parse_redirect(std::string_view error) noexcept {
    redis_redirect none{redis_redirect::kind_t::none, 0, {}};
    redis_redirect out = none;
    if (starts_with_word(error, "MOVED")) {
        out.kind = redis_redirect::kind_t::moved;
    } else if (starts_with_word(error, "ASK")) {
        out.kind = redis_redirect::kind_t::ask;
    } else {
        return none;
    }
    std::size_t word = out.kind == redis_redirect::kind_t::moved ? 5 : 3;
    if (error.size() == word) return none;
    error.remove_prefix(word + 1);
    std::size_t space = error.find(' ');
    unsigned long long slot = 0;
    if (space == std::string_view::npos || !parse_number(error.substr(0, space), slot) ||
        slot >= cluster_slot_count || !parse_endpoint(error.substr(space + 1), out.to)) {
        return none;
    }
    out.slot = static_cast<unsigned>(slot);
    return out;
}

bool is_not_master(std::string_view error) noexcept {
    return starts_with_word(error, "READONLY") || starts_with_word(error, "MASTERDOWN");
}

bool parse_cluster_slots(std::span<const reply_element> reply, std::span<slot_range> out,
                         std::size_t &count) noexcept {
    count = 0;
    if (reply.empty() || reply[0].kind != reply_kind::array) return false;
    std::size_t i = 1;
    for (std::size_t n = 0; n < reply[0].count; ++n) {
        // [first, last, [host, port, id, ...], replicas...]
        if (i >= reply.size() || reply[i].kind != reply_kind::array || reply[i].count < 3) return false;
        std::size_t end = reply_skip(reply, i);
        if (i + 5 >= end) return false;
        const reply_element &first = reply[i + 1], &last = reply[i + 2], &node = reply[i + 3];
        const reply_element &host = reply[i + 4], &port = reply[i + 5];
        if (first.kind != reply_kind::integer || last.kind != reply_kind::integer ||
            first.integer < 0 || last.integer < first.integer ||
            last.integer >= static_cast<long long>(cluster_slot_count) ||
            node.kind != reply_kind::array || node.count < 2 || !is_string(host) ||
            port.kind != reply_kind::integer || !valid_port(port.integer)) {
            return false;
        }
        if (count == out.size()) return false;
        // "?" or empty: an endpoint the node does not know; the host we asked.
        std::string_view at = host.text == "?" ? std::string_view() : host.text;
        out[count++] = {static_cast<unsigned>(first.integer), static_cast<unsigned>(last.integer),
                        {at, static_cast<unsigned>(port.integer)}, reply[i].count - 3};
        i = end;
    }
    return true;
}

bool parse_master_address(std::span<const reply_element> reply, redis_endpoint &out) noexcept {
    if (reply.size() != 3 || reply[0].kind != reply_kind::array || reply[0].count != 2 ||
        !is_string(reply[1]) || !is_string(reply[2]) || reply[1].text.empty()) {
        return false;
    }
    unsigned long long port = 0;
    if (!parse_number(reply[2].text, port) || !valid_port(static_cast<long long>(port))) return false;
    out = {reply[1].text, static_cast<unsigned>(port)};
    return true;
}

bool parse_role(std::span<const reply_element> reply, redis_role &out) noexcept {
    if (reply.size() < 2 || reply[0].kind != reply_kind::array || reply[0].count < 1 ||
        !is_string(reply[1])) {
        return false;
    }
    out.role = reply[1].text;
    out.replicas = 0;
    if (out.role == "master") {
        // ["master", offset, [[host, port, offset], ...]]
        if (reply[0].count < 3 || reply.size() < 4 || reply[3].kind != reply_kind::array) return false;
        out.replicas = reply[3].count;
    }
    return true;
}

namespace {

// The n-th space-separated word of `text` (empty past the last).
std::string_view word(std::string_view text, std::size_t n) noexcept {
    for (;;) {
        std::size_t space = text.find(' ');
        if (n == 0) return text.substr(0, space);
        if (space == std::string_view::npos) return {};
        text.remove_prefix(space + 1);
        --n;
    }
}

}  // namespace

sentinel_event parse_sentinel_event(std::span<const reply_element> reply) noexcept {
    sentinel_event event{sentinel_event::kind_t::none, {}, {}};
    if (reply.size() != 5 || reply[0].kind != reply_kind::array || reply[0].count != 4 || !is_string(reply[1]) ||
        reply[1].text != "pmessage" || !is_string(reply[3]) || !is_string(reply[4])) {
        return event;
    }
    std::string_view channel = reply[3].text, payload = reply[4].text;
    if (channel == "+switch-master") {
        // "<master> <old ip> <old port> <new ip> <new port>"
        unsigned long long port = 0;
        if (!parse_number(word(payload, 4), port) || !valid_port(static_cast<long long>(port)) ||
            word(payload, 3).empty()) {
            return event;
        }
        event = {sentinel_event::kind_t::switched, word(payload, 0), {word(payload, 3), static_cast<unsigned>(port)}};
        return event;
    }
    // "master <master> <ip> <port>": the master's own events.
    if (word(payload, 0) != "master") return event;
    if (channel == "+try-failover") {
        event.kind = sentinel_event::kind_t::started;
    } else if (channel == "+failover-end" || channel.starts_with("-failover-abort")) {
        event.kind = sentinel_event::kind_t::ended;
    } else {
        return event;
    }
    event.master = word(payload, 1);
    return event;
}

}  // namespace resend
