-- wrk script: POST /opd/patient/register with a patient id never used before, or, with
-- BENCH_STAGE, the next step of those patients' visits on the service of that step.
--
-- Environment:
--   BENCH_STAGE     register (the default), inspect (POST /opd/inspection/record), release
--                   (POST /opd/treatment/release) or discharge (POST /opd/release/discharge):
--                   with the same BENCH_ID_BASE and thread count, each stage sends the same
--                   patients in the same order, so a stage started later walks the patients
--                   of the one before through their visit
--   BENCH_ID_BASE   first id of this run (ids are BENCH_ID_BASE + thread * BENCH_ID_SPAN + n)
--   BENCH_ID_SPAN   ids each thread may take (10^8 unless set; the book's sample stores ids in
--                   32 bits, so the bench gives its runs smaller spans)
--   BENCH_RATE      offered rate in requests/s for the whole run; unset means as fast as the
--                   connections go (closed loop). With a rate, each thread sends on a fixed
--                   schedule whatever the answers take, as far as its connections allow.
--   BENCH_LIMIT     stop after this many requests in all (0 or unset: no limit)
--   BENCH_IDEMPOTENCY  1: each request carries an Idempotency-Key of its own

package.path = "scripts/bench/?.lua;" .. package.path
require("summary")

local ffi = require("ffi")
ffi.cdef [[
  typedef struct { long tv_sec; long tv_usec; } bench_timeval;
  int gettimeofday(bench_timeval *tv, void *tz);
]]
local tv = ffi.new("bench_timeval")
local function now_ms()
  ffi.C.gettimeofday(tv, nil)
  return tonumber(tv.tv_sec) * 1000 + tonumber(tv.tv_usec) / 1000
end

local threads = {}
local thread_count = 0

function setup(thread)
  thread_count = thread_count + 1
  thread:set("tid", thread_count)
  table.insert(threads, thread)
end

function init(args)
  base = tonumber(os.getenv("BENCH_ID_BASE") or "1000000000")
  span = tonumber(os.getenv("BENCH_ID_SPAN") or "100000000")
  local rate = tonumber(os.getenv("BENCH_RATE") or "0")
  local limit = tonumber(os.getenv("BENCH_LIMIT") or "0")
  local count = tonumber(os.getenv("BENCH_THREADS") or "1")
  interval = rate > 0 and (1000 * count / rate) or 0
  per_thread_limit = limit > 0 and math.ceil(limit / count) or 0
  keyed = os.getenv("BENCH_IDEMPOTENCY") == "1"
  stage = stages[os.getenv("BENCH_STAGE") or "register"]
  if stage == nil then error("unknown BENCH_STAGE " .. os.getenv("BENCH_STAGE")) end
  sent = 0
  answered = 0
  next_slot = nil
end

function delay()
  if interval == 0 then return 0 end
  local now = now_ms()
  if next_slot == nil then next_slot = now end
  next_slot = next_slot + interval
  local wait = next_slot - now
  if wait < 0 then return 0 end
  return wait
end

-- Each stage's path and body (%d: the patient's id, as often as the body names it).
stages = {
  register = { "/opd/patient/register",
    '{"id":%d,"full_name":"bench patient %d","address":"44, sw19, london","sex":"female","phone":711000000}' },
  inspect = { "/opd/inspection/record",
    '{"id":%d,"time":"2021/07/12 10:21 AM","observations":"bench"}' },
  release = { "/opd/treatment/release",
    '{"id":%d,"time":"2021 07 12 8:35 PM","next_state":"discharge"}' },
  discharge = { "/opd/release/discharge",
    '{"id":%d,"time":"2021 07 12 9:35 PM","state":"discharge"}' },
}

function request()
  sent = sent + 1
  local id = base + tid * span + sent
  local body = string.format(stage[2], id, id)
  -- OPD_TOKEN: a bearer token with the stage's role (scripts/bench.sh sets one with all).
  local headers = { ["Content-Type"] = "application/json",
                    ["Authorization"] = "Bearer " .. (os.getenv("OPD_TOKEN") or "") }
  -- %d: concatenating the number would print it in floating point, and ids 10^15 apart from
  -- each other's digits would share a key.
  if keyed then headers["Idempotency-Key"] = string.format("bench-%d", id) end
  return wrk.format("POST", stage[1], headers, body)
end

function response(status, headers, body)
  answered = answered + 1
  if per_thread_limit > 0 and answered >= per_thread_limit then
    wrk.thread:stop()
  end
end
