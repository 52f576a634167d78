-- Dedup, caps and queueing of a page's links as one atomic step, so a
-- worker dying mid-page never leaves links marked seen but not queued.
-- ARGV: ns, cref, owner, domain_cap, global_cap, spec JSON ('' = stored),
-- appid, expires, lazy ('1': see register_crawl), then (fingerprint, hex,
-- domain, force, qk, priority, payload) groups. Returns how many were
-- queued, or -1 if another crawl owns cref.
local cref = ARGV[2]
if not owned(cref, ARGV[3]) then return -1 end
local dcap, gcap = tonumber(ARGV[4]), tonumber(ARGV[5])
register_crawl(cref, ARGV[3], ARGV[6], ARGV[7], ARGV[8], ARGV[9] == '1')
local stopped = redis.call('SISMEMBER', ns .. ':stopped', cref) == 1
local now = now_ms()
local n = 0
for i = 10, #ARGV, 7 do
  if admit_one(cref, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] == '1', dcap, gcap, stopped) then
    enqueue(cref, ARGV[i + 4], tonumber(ARGV[i + 5]), ARGV[i + 6], now)
    n = n + 1
  end
end
counters(cref, n, 0, 0)
redis.call('ZADD', ns .. ':crawls', now, cref)
return n
