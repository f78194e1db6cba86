-- wrk script for bench/load.sh: every request carries a different bearer token.
--
-- Environment:
--   TOKENS_FILE    one JWT per line; wrk thread k owns lines k, k+T, k+2T, ... and cycles through
--                  its share (a token is reused only after the whole file has been sent)
--   BENCH_THREADS  must equal wrk's -t (default 1)
--   BENCH_METHOD   GET or POST (default POST)
--   BENCH_BODY     request body (sent with Content-Type: application/json), optional
--   BENCH_EXPECT   a plain substring every 200 answer must contain (e.g. "qrCode"); a 200 without it
--                  is counted as bad_body (GraphQL answers errors with 200), optional
--
-- Prints one line at the end:
--   WRK requests= duration_s= rps= p50_ms= p99_ms= non2xx= s2xx= s401= s429= sother= bad_body=
--       tokens= reused= socket_errors= [rps_401= rps_429=]
-- (rps_401: 401 answers / first answer -> last 401; rps_429: 429 answers / first 429 -> last answer)
-- and up to 3 "SAMPLE status=... body=..." lines per thread for non-2xx answers and bad bodies.
local ffi = require("ffi")
ffi.cdef[[
typedef struct { long tv_sec; long tv_nsec; } tokens_timespec;
int clock_gettime(int clk_id, tokens_timespec *tp);
]]
local ts = ffi.new("tokens_timespec")
local function now_us()
  ffi.C.clock_gettime(1, ts) -- CLOCK_MONOTONIC: the same clock in every wrk thread
  return tonumber(ts.tv_sec) * 1000000 + tonumber(ts.tv_nsec) / 1000
end

local file = assert(os.getenv("TOKENS_FILE"), "TOKENS_FILE is required")
local nthreads = tonumber(os.getenv("BENCH_THREADS") or "1")
local method = os.getenv("BENCH_METHOD") or "POST"
local body = os.getenv("BENCH_BODY")
if body == "" then body = nil end
local expect = os.getenv("BENCH_EXPECT")
if expect == "" then expect = nil end

-- main state
local threads = {}
local next_id = 0
function setup(thread)
  thread:set("tid", next_id)
  next_id = next_id + 1
  table.insert(threads, thread)
end

-- thread state (globals, so done() can read them with thread:get)
local reqs = {}
local idx = 0
s2xx, s401, s429, sother, bad_body, sent, pool, samples, nsamples = 0, 0, 0, 0, 0, 0, 0, "", 0
-- answer times (µs, CLOCK_MONOTONIC): first and last answer, last 401, first 429
first_us, last_us, last401_us, first429_us = 0, 0, 0, 0

function init(args)
  local f = assert(io.open(file, "r"))
  local n = 0
  for line in f:lines() do
    local tok = line:match("^(%S+)")
    if tok then
      if n % nthreads == tid then
        local headers = { ["Authorization"] = "Bearer " .. tok }
        if body then headers["Content-Type"] = "application/json" end
        reqs[#reqs + 1] = wrk.format(method, wrk.path, headers, body)
      end
      n = n + 1
    end
  end
  f:close()
  pool = #reqs
  assert(pool > 0, "no tokens for thread " .. tid .. " in " .. file)
end

function request()
  idx = idx + 1
  sent = sent + 1
  if idx > pool then idx = 1 end
  return reqs[idx]
end

local function sample(status, b)
  if nsamples < 3 then
    nsamples = nsamples + 1
    b = (b or ""):sub(1, 200):gsub("[\r\n]", " ")
    samples = samples .. "SAMPLE status=" .. status .. " body=" .. b .. "\n"
  end
end

function response(status, headers, b)
  local t = now_us()
  if first_us == 0 then first_us = t end
  last_us = t
  if status == 401 then last401_us = t elseif status == 429 and first429_us == 0 then first429_us = t end
  if status >= 200 and status < 300 then
    s2xx = s2xx + 1
    if expect and not (b and b:find(expect, 1, true)) then
      bad_body = bad_body + 1
      sample(status, b)
    end
  else
    if status == 401 then s401 = s401 + 1
    elseif status == 429 then s429 = s429 + 1
    else sother = sother + 1 end
    -- 401/429 are the expected answers of the wrong-code scenario: sample only the first of each
    if (status ~= 401 or s401 == 1) and (status ~= 429 or s429 == 1) then sample(status, b) end
  end
end

local function socket_errors(e)
  local n = e.connect + e.read + e.write + e.timeout
  if n == 0 then return "0" end
  return string.format("%d(connect=%d,read=%d,write=%d,timeout=%d)", n, e.connect, e.read, e.write, e.timeout)
end

function done(summary, latency, requests)
  local t = { s2xx = 0, s401 = 0, s429 = 0, sother = 0, bad_body = 0, sent = 0, pool = 0 }
  local out = ""
  for _, th in ipairs(threads) do
    for k, _ in pairs(t) do t[k] = t[k] + th:get(k) end
    out = out .. th:get("samples")
  end
  -- phase rates of the wrong-code scenario: 401 answers from the first answer to the last 401,
  -- 429 answers from the first 429 to the last answer (n/a when a phase did not happen)
  local f, l, l401, f429 = math.huge, 0, 0, math.huge
  for _, th in ipairs(threads) do
    local a = th:get("first_us"); if a > 0 and a < f then f = a end
    a = th:get("last_us"); if a > l then l = a end
    a = th:get("last401_us"); if a > l401 then l401 = a end
    a = th:get("first429_us"); if a > 0 and a < f429 then f429 = a end
  end
  local phases = ""
  if t.s401 > 0 and l401 > f then phases = phases .. string.format(" rps_401=%.0f", t.s401 / ((l401 - f) / 1e6)) end
  if t.s429 > 0 and l > f429 then phases = phases .. string.format(" rps_429=%.0f", t.s429 / ((l - f429) / 1e6)) end
  local dur = summary.duration / 1e6
  io.write(string.format(
    "WRK requests=%d duration_s=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d s2xx=%d s401=%d s429=%d sother=%d bad_body=%d tokens=%d reused=%s socket_errors=%s%s\n",
    summary.requests, dur, summary.requests / dur, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    t.s401 + t.s429 + t.sother, t.s2xx, t.s401, t.s429, t.sother, t.bad_body, t.pool,
    t.sent > t.pool and "yes" or "no", socket_errors(summary.errors), phases))
  io.write(out)
end
