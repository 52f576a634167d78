-- Stop every crawl whose `expires` has passed, each exactly once (the
-- ZREM decides which caller reports it). ARGV: ns, here ('1': the
-- `expired` reply goes on this slot's control stream in the same step, so
-- it is sent once even if this caller dies; '0', a sharded frontier: the
-- crawl waits in `expiring` until the host has stopped it on the other
-- shards and sent the reply, then calls expired.lua).
-- Returns {cref, purged, owner, ...}: the crawls due now and, when not
-- `here`, those a caller left in `expiring` over 30 s ago (it died; they
-- are this caller's now, purged 0).
local here = ARGV[2] == '1'
local now = now_ms()
local now_s = math.floor(now / 1000)
local out = {}
if not here then
  local left = redis.call('ZRANGEBYSCORE', ns .. ':expiring', '-inf', now - 30000, 'LIMIT', 0, 50)
  for _, cref in ipairs(left) do
    redis.call('ZADD', ns .. ':expiring', now, cref)
    out[#out + 1] = cref
    out[#out + 1] = 0
    out[#out + 1] = redis.call('HGET', ns .. ':cc:' .. cref, 'k') or ''
  end
end
local due = redis.call('ZRANGEBYSCORE', ns .. ':expires', '-inf', now_s, 'LIMIT', 0, 50)
for _, cref in ipairs(due) do
  redis.call('ZREM', ns .. ':expires', cref)
  redis.call('SADD', ns .. ':stopped', cref)
  local n = purge(cref)
  out[#out + 1] = cref
  out[#out + 1] = n
  out[#out + 1] = redis.call('HGET', ns .. ':cc:' .. cref, 'k') or ''
  if here then
    redis.call('XADD', ns .. ':control', '*', 'm',
      cjson.encode({Expired = {cref = cref, purged = n}}))
  else
    redis.call('ZADD', ns .. ':expiring', now, cref)
  end
end
return out
