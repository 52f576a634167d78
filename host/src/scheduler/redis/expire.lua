-- Stop every crawl whose `expires` has passed, each exactly once (the
-- ZREM decides which caller reports it). ARGV: ns.
-- Returns {cref, purged, cref, purged, ...}.
local now_s = math.floor(now_ms() / 1000)
local due = redis.call('ZRANGEBYSCORE', ns .. ':expires', '-inf', now_s, 'LIMIT', 0, 50)
local out = {}
for _, cref in ipairs(due) do
  redis.call('ZREM', ns .. ':expires', cref)
  redis.call('SADD', ns .. ':stopped', cref)
  out[#out + 1] = cref
  out[#out + 1] = purge(cref)
end
return out
