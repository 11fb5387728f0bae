-- wrk script: counts answers other than 200 (a redirect to /login would otherwise pass for success)
-- and prints one JSON line with the percentiles wrk's own report leaves out (p95).
--
-- With WRK_COOKIES naming a file of Cookie header values, one a line, thread N sends the N-th: run
-- with as many threads as connections (-tN -cN) and each connection is a client of its own.
-- Like a browser, a thread sends the cookie an answer set (the gateway renews a session's credential
-- once a minute) instead of the one it started with. wrk keeps one value of a repeated header (the
-- last), so a cookie set beside another is taken from the next answer that sets it alone.
local threads = {}
local count = 0

function setup(thread)
  count = count + 1
  thread:set("thread_number", count)
  table.insert(threads, thread)
end

function init(args)
  non200 = 0
  local path = os.getenv("WRK_COOKIES")
  if path ~= nil and path ~= "" then
    local n = 0
    for line in io.lines(path) do
      n = n + 1
      if n == thread_number then
        wrk.headers["Cookie"] = line
      end
    end
    if wrk.headers["Cookie"] == nil then
      error("WRK_COOKIES has no line " .. thread_number)
    end
  end
  prepared = wrk.format()
end

function request()
  return prepared
end

-- The Cookie header with `name` set to `value` (added, or replacing its old value).
local function with_cookie(header, name, value)
  local pairs_kept = {}
  for pair in string.gmatch(header or "", "[^;]+") do
    local key = string.match(pair, "^%s*([^=]+)=")
    if key ~= nil and key ~= name then
      table.insert(pairs_kept, (string.gsub(pair, "^%s+", "")))
    end
  end
  table.insert(pairs_kept, name .. "=" .. value)
  return table.concat(pairs_kept, "; ")
end

function response(status, headers, body)
  if status ~= 200 then
    non200 = non200 + 1
  end
  local set = nil
  for key, value in pairs(headers) do
    if string.lower(key) == "set-cookie" then  -- header names arrive as sent: lower case from gunicorn
      set = value
    end
  end
  if set ~= nil and wrk.headers["Cookie"] ~= nil then
    local name, value = string.match(set, "^%s*([^=;]+)=([^;]*)")
    if name ~= nil and value ~= "" then
      wrk.headers["Cookie"] = with_cookie(wrk.headers["Cookie"], name, value)
      prepared = wrk.format()
    end
  end
end

function done(summary, latency, requests)
  local others = 0
  for _, thread in ipairs(threads) do
    others = others + thread:get("non200")
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"requests": %d, "duration_us": %d, "connect": %d, "read": %d, "write": %d, "status": %d, ' ..
    '"timeout": %d, "non200": %d, "p50_us": %d, "p90_us": %d, "p95_us": %d, "p99_us": %d, "mean_us": %.1f, "max_us": %d}\n',
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout, others,
    latency:percentile(50), latency:percentile(90), latency:percentile(95), latency:percentile(99),
    latency.mean, latency.max))
end
