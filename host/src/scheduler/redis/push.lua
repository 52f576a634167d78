-- ARGV: ns, cref, crawl spec JSON ('' = already stored), appid, expires
-- (Unix seconds, 0 = never), then (qk, priority, payload) triples.
local cref = ARGV[2]
if ARGV[3] ~= '' then
  redis.call('SET', ns .. ':spec:' .. cref, ARGV[3])
  redis.call('SADD', ns .. ':app:' .. ARGV[4], cref)
  redis.call('HSET', ns .. ':crawlapp', cref, ARGV[4])
  if tonumber(ARGV[5]) > 0 then redis.call('ZADD', ns .. ':expires', ARGV[5], cref) end
end
local now = now_ms()
local n = 0
for i = 6, #ARGV, 3 do
  enqueue(cref, ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], now)
  n = n + 1
end
counters(cref, n, 0, 0)
redis.call('ZADD', ns .. ':crawls', now, cref)
return n
