-- wrk script of the benchmark (bench/run): POSTs a JSON body with
-- Content-Type application/json to the URL's path, one request at a time
-- per connection, and prints a machine-readable summary line at the end.
--
-- BENCH_BODY (environment) chooses the body:
--   distinct  {"email":"<prefix>-<thread>-<n>@example.com"}, a new valid
--             address for every request (the accepted path)
--   invalid   {"email":"<prefix>-<thread>-<n>"}, no '@': 400 invalid_email
--   same      {"email":"same-<prefix>@example.com"} every time (the silent
--             email limit: every request after the first is silenced)
-- BENCH_PREFIX makes addresses distinct across runs (default "w").
-- Every kind builds its request in request(), so that the client does the
-- same work for every location, the static ceiling included.

local threads = {}
local next_id = 0

function setup(thread)
    next_id = next_id + 1
    thread:set("id", next_id)
    table.insert(threads, thread)
end

function init(args)
    prefix = os.getenv("BENCH_PREFIX") or "w"
    kind = os.getenv("BENCH_BODY") or "distinct"
    -- What wrk.format("POST", nil, headers, body) would build, but cheaper
    -- per request: wrk runs on the same machine, and its time per request
    -- bounds what it can measure.
    head = "POST " .. wrk.path .. " HTTP/1.1\r\nHost: " .. wrk.host .. ":" .. wrk.port ..
           "\r\nContent-Type: application/json\r\nContent-Length: "
    local_prefix = prefix .. "-" .. id .. "-"
    same = '{"email":"same-' .. prefix .. '@example.com"}'
    n = 0
end

function request()
    n = n + 1
    local body
    if kind == "distinct" then
        body = '{"email":"' .. local_prefix .. n .. '@example.com"}'
    elseif kind == "invalid" then
        body = '{"email":"' .. local_prefix .. n .. '"}'
    else
        body = same
    end
    return head .. #body .. "\r\n\r\n" .. body
end

function done(summary, latency, requests)
    local e = summary.errors
    io.write(string.format(
        "BENCH requests=%d duration_us=%d non2xx=%d connect_errors=%d read_errors=%d " ..
        "write_errors=%d timeouts=%d p50_us=%d p90_us=%d p99_us=%d max_us=%d mean_us=%.1f\n",
        summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
        latency:percentile(50), latency:percentile(90), latency:percentile(99),
        latency.max, latency.mean))
end
