-- wrk script: GET /opd/patient/view/{id} of registered patients, spread over the ids listed
-- one per line in the file named by BENCH_IDS.

function init(args)
  ids = {}
  for line in io.lines(os.getenv("BENCH_IDS")) do
    table.insert(ids, line)
  end
  n = 0
end

function request()
  n = n + 1
  return wrk.format("GET", "/opd/patient/view/" .. ids[(n % #ids) + 1])
end

function done(summary, latency, requests)
  local errors = summary.errors
  io.write(string.format(
    'BENCH {"requests":%d,"duration_us":%d,"non_2xx":%d,"socket_errors":%d,' ..
    '"p50_us":%d,"p99_us":%d,"p999_us":%d}\n',
    summary.requests, summary.duration, errors.status,
    errors.connect + errors.read + errors.write + errors.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9)))
end
