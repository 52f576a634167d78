-- ARGV: ns, cref, crawl spec JSON ('' = already stored), then
-- (qk, priority, payload) triples.
local cref = ARGV[2]
if ARGV[3] ~= '' then redis.call('SET', ns .. ':spec:' .. cref, ARGV[3]) end
local now = now_ms()
local n = 0
for i = 4, #ARGV, 3 do
  enqueue(cref, ARGV[i], tonumber(ARGV[i + 1]), ARGV[i + 2], now)
  n = n + 1
end
counters(cref, n, 0, 0)
redis.call('ZADD', ns .. ':crawls', now, cref)
return n
