-- Put expired leases back in their queues, and drop the state of crawls
-- idle for the dedup TTL. ARGV: ns, idle_ttl_ms. Returns leases reclaimed
-- and the milliseconds until the next lease deadline, idle crawl or crawl
-- expiry (-1 if none), so an idle worker sleeps until then.
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', ns .. ':leases', '-inf', now, 'LIMIT', 0, 500)
for _, lease in ipairs(expired) do requeue(lease, now) end
local idle = redis.call('ZRANGEBYSCORE', ns .. ':crawls', '-inf', now - tonumber(ARGV[2]), 'LIMIT', 0, 20)
for _, cref in ipairs(idle) do
  local cc = redis.call('HMGET', ns .. ':cc:' .. cref, 'q', 'f')
  if (tonumber(cc[1]) or 0) <= 0 and (tonumber(cc[2]) or 0) <= 0 then
    for _, f in ipairs(redis.call('HKEYS', ns .. ':cc:' .. cref)) do
      if string.sub(f, 1, 2) == 'b:' then redis.call('DEL', ns .. ':s:' .. cref .. ':' .. string.sub(f, 3)) end
    end
    -- The spec names the crawl's app (read here, on a rare path, rather
    -- than indexed on the hot one).
    local spec = redis.call('GET', ns .. ':spec:' .. cref)
    if spec then
      local ok, s = pcall(cjson.decode, spec)
      if ok and s.appid then redis.call('SREM', ns .. ':app:' .. s.appid, cref) end
    end
    redis.call('DEL', ns .. ':cj:' .. cref, ns .. ':cf:' .. cref, ns .. ':cc:' .. cref, ns .. ':spec:' .. cref, ns .. ':rf:' .. cref)
    redis.call('ZREM', ns .. ':expires', cref)
    redis.call('ZREM', ns .. ':crawls', cref)
  else
    redis.call('ZADD', ns .. ':crawls', now, cref)
  end
end
local next_due = -1
local function sooner(at)
  if at and (next_due < 0 or at - now < next_due) then next_due = math.max(0, at - now) end
end
local l = redis.call('ZRANGE', ns .. ':leases', 0, 0, 'WITHSCORES')
if l[2] then sooner(tonumber(l[2])) end
local c = redis.call('ZRANGE', ns .. ':crawls', 0, 0, 'WITHSCORES')
if c[2] then sooner(tonumber(c[2]) + tonumber(ARGV[2])) end
local e = redis.call('ZRANGE', ns .. ':expires', 0, 0, 'WITHSCORES')
if e[2] then sooner(tonumber(e[2]) * 1000) end
return {#expired, next_due}
