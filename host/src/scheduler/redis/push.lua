-- ARGV: ns, cref, owner, crawl spec JSON ('' = already stored), appid,
-- expires (Unix seconds, 0 = never), lazy ('1': see register_crawl),
-- then (qk, priority, payload) triples.
-- Returns how many were queued, or -1 if another crawl owns cref.
local cref = ARGV[2]
if not owned(cref, ARGV[3]) then return -1 end
register_crawl(cref, ARGV[3], ARGV[4], ARGV[5], ARGV[6], ARGV[7] == '1')
local now = now_ms()
local n = 0
for i = 8, #ARGV, 3 do
  enqueue(cref, ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], now)
  n = n + 1
end
counters(cref, n, 0, 0)
redis.call('ZADD', ns .. ':crawls', now, cref)
return n
