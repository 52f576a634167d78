-- Crawls whose `expires` has passed. ARGV: ns, here.
-- here = '1' (one shard): each is stopped and reported exactly once (the
-- ZREM decides which caller does it); the `expired` reply goes on the
-- control stream in the same step, so it is sent even if this caller dies.
-- here = '0' (a sharded frontier, where each seed's shard keeps the
-- crawl's expiry): due crawls move to `expiring` and are returned for the
-- host to stop on every shard and report (see MonitorStore::expire_due),
-- with those a caller left there over 30 s ago (it died).
-- Returns {cref, purged, owner, ...}.
local here = ARGV[2] == '1'
local now = now_ms()
local out = {}
local function add(cref, n)
  out[#out + 1] = cref
  out[#out + 1] = n
  out[#out + 1] = redis.call('HGET', ns .. ':cc:' .. cref, 'k') or ''
end
if not here then
  for _, cref in ipairs(redis.call('ZRANGEBYSCORE', ns .. ':expiring', '-inf', now - 30000, 'LIMIT', 0, 50)) do
    redis.call('ZADD', ns .. ':expiring', now, cref)
    add(cref, 0)
  end
end
local due = redis.call('ZRANGEBYSCORE', ns .. ':expires', '-inf', math.floor(now / 1000), 'LIMIT', 0, 50)
for _, cref in ipairs(due) do
  redis.call('ZREM', ns .. ':expires', cref)
  if here then
    redis.call('SADD', ns .. ':stopped', cref)
    local n = purge(cref)
    add(cref, n)
    redis.call('XADD', ns .. ':control', '*', 'm',
      cjson.encode({Expired = {cref = cref, purged = n}}))
  else
    redis.call('ZADD', ns .. ':expiring', now, cref)
    add(cref, 0)
  end
end
return out
