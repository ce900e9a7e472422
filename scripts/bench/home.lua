-- wrk script: GET /opd/patient/, the service's home page: the HTTP path alone, no database.

package.path = "scripts/bench/?.lua;" .. package.path
require("summary")

function request()
  return wrk.format("GET", "/opd/patient/")
end
