-- wrk script of scripts/bench.sh: every request carries the next of a file of distinct
-- tokens (`Authorization: Bearer …`), each thread starting at its own offset; every
-- response is tallied (2xx vs other) and each thread stops after its share of the
-- request budget, so a run is bounded in count as well as by wrk's -d.
--   wrk -t1 -c32 -d20s -s wrk-tokens.lua URL -- TOKENS_FILE MAX_REQUESTS_PER_THREAD
local threads = {}
local counter = 0

function setup(thread)
   thread:set("id", counter)
   counter = counter + 1
   table.insert(threads, thread)
end

function init(args)
   local path = args[1]
   local budget = tonumber(args[2] or "0")
   local host = wrk.host .. ":" .. wrk.port
   reqs = {}
   for line in io.lines(path) do
      if #line > 0 then
         reqs[#reqs + 1] = wrk.format("GET", "/api/items",
            { ["Host"] = host, ["Authorization"] = "Bearer " .. line })
      end
   end
   idx = (id * 7919) % #reqs
   limit = budget
   ok = 0
   bad = 0
   first_bad = 0
end

function request()
   idx = idx + 1
   if idx > #reqs then idx = 1 end
   return reqs[idx]
end

function response(status, headers, body)
   if status >= 200 and status < 300 then
      ok = ok + 1
   else
      bad = bad + 1
      if first_bad == 0 then first_bad = status end
   end
   if limit > 0 and ok + bad >= limit then
      wrk.thread:stop()
   end
end

function done(summary, latency, requests)
   local tok, tbad, fb = 0, 0, 0
   for _, t in ipairs(threads) do
      tok = tok + t:get("ok")
      tbad = tbad + t:get("bad")
      local f = t:get("first_bad")
      if f ~= 0 then fb = f end
   end
   io.write(string.format(
      "TALLY ok=%d bad=%d first_bad_status=%d p50_us=%d p99_us=%d\n",
      tok, tbad, fb, latency:percentile(50), latency:percentile(99)))
end
