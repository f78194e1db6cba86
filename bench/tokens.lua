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
--       tokens= reused= socket_errors=
-- and up to 3 "SAMPLE status=... body=..." lines per thread for non-2xx answers and bad bodies.
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
  local dur = summary.duration / 1e6
  io.write(string.format(
    "WRK requests=%d duration_s=%.2f rps=%.0f p50_ms=%.2f p99_ms=%.2f non2xx=%d s2xx=%d s401=%d s429=%d sother=%d bad_body=%d tokens=%d reused=%s socket_errors=%s\n",
    summary.requests, dur, summary.requests / dur, latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    t.s401 + t.s429 + t.sother, t.s2xx, t.s401, t.s429, t.sother, t.bad_body, t.pool,
    t.sent > t.pool and "yes" or "no", socket_errors(summary.errors)))
  io.write(out)
end
