-- Stop every crawl whose `expires` has passed, each exactly once (the
-- ZREM decides which caller reports it). The `expired` reply goes on the
-- control stream in the same step, so it is sent once even if this caller
-- dies. ARGV: ns.
-- Returns {cref, purged, cref, purged, ...}.
local now_s = math.floor(now_ms() / 1000)
local due = redis.call('ZRANGEBYSCORE', ns .. ':expires', '-inf', now_s, 'LIMIT', 0, 50)
local out = {}
for _, cref in ipairs(due) do
  redis.call('ZREM', ns .. ':expires', cref)
  redis.call('SADD', ns .. ':stopped', cref)
  local n = purge(cref)
  out[#out + 1] = cref
  out[#out + 1] = n
  redis.call('XADD', ns .. ':control', '*', 'm',
    cjson.encode({Expired = {cref = cref, purged = n}}))
end
return out
