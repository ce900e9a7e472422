-- wrk script: GET /opd/patient/view/{id} of registered patients, spread over the ids listed
-- one per line in the file named by BENCH_IDS.

package.path = "scripts/bench/?.lua;" .. package.path
require("summary")

function init(args)
  ids = {}
  for line in io.lines(os.getenv("BENCH_IDS")) do
    table.insert(ids, line)
  end
  n = 0
end

function request()
  n = n + 1
  return wrk.format("GET", "/opd/patient/view/" .. ids[(n % #ids) + 1],
                    { ["Authorization"] = "Bearer " .. (os.getenv("OPD_TOKEN") or "") })
end
