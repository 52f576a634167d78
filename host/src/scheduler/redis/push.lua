-- ARGV: ns, cref, crawl spec JSON ('' = already stored), appid, expires
-- (Unix seconds, 0 = never), then (qk, priority, payload) triples.
local cref = ARGV[2]
register_crawl(cref, ARGV[3], ARGV[4], ARGV[5])
local now = now_ms()
local n = 0
for i = 6, #ARGV, 3 do
  enqueue(cref, ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], now)
  n = n + 1
end
counters(cref, n, 0, 0)
redis.call('ZADD', ns .. ':crawls', now, cref)
return n
