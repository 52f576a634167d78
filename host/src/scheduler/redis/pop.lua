-- Lease the best request of a domain the throttle lets through, in one
-- round trip. ARGV: ns, hits, window_ms, moderated, throttle prefix,
-- split_by_spider, lease_ms, lease id (drawn at random by the worker: a
-- counter here would hand out again, after a failover to a replica that
-- lags, ids that workers still hold from the old master), max_in_flight,
-- renders ('1': this worker renders, so it pops `rready` too), the ms
-- after which a full site is looked at again, the apps' weights in fair
-- shares (JSON, '' = all 1), the fetches one app may have open on a
-- domain (0 = no cap), then leases of this worker whose fetch is over
-- (their sites may take another).
-- Returns {lease, cref, payload, spec version, spaced ('1' if the domain's
-- fetches were spaced: a Crawl-delay or adaptive spacing was known)} or
-- {'', wait_ms} ('-1' = nothing queued).
local hits0, window0 = tonumber(ARGV[2]), tonumber(ARGV[3])
local moderated, tprefix, split = ARGV[4] == '1', ARGV[5], ARGV[6] == '1'
local lease_ms, max_fl = tonumber(ARGV[7]), tonumber(ARGV[9])
local lease = ARGV[8]
local recheck = tonumber(ARGV[11])
-- A worker that renders also pops the queues of requests that need it,
-- each index first half the time (the lease id is random).
local indexes = {ns .. ':ready'}
if ARGV[10] == '1' then
  local r = ns .. ':rready'
  if tonumber(string.sub(lease, -1)) % 2 == 0 then table.insert(indexes, 1, r) else indexes[2] = r end
end
local now = now_ms()
promote_later(now)
local weights = ARGV[12] ~= '' and cjson.decode(ARGV[12]) or nil
local app_cap = tonumber(ARGV[13])
for i = 14, #ARGV do fetched(ARGV[i]) end

local function lease_from(ready)
  for _ = 1, 32 do
    local c = redis.call('ZRANGEBYSCORE', ready, '-inf', now, 'LIMIT', 0, 1)
    if #c == 0 then return nil end
    local qk = c[1]
    local spider, domain = qk_parts(qk)
    if queue_crawls(qk) == 0 then
      redis.call('ZREM', ready, qk)
    elseif redis.call('SISMEMBER', ns .. ':blacklist', domain) == 1 then
      -- Blacklisted: not fetched, queue kept; look again in a second.
      redis.call('ZADD', ready, now + 1000, qk)
    else
      -- The origin's pace (pause, Crawl-delay, rates), the domain's
      -- in-flight cap, then the domain's throttle.
      local ok = site_key(origin_of(qk))
      local wait, gap, epoch = site_wait(qk, domain, ok, now, max_fl, recheck)
      -- The crawl to serve (fair shares), unless every app with work
      -- here has its fetches open: then ready again when one ends.
      local pick, served, app
      if wait == 0 then
        pick, served, app = queue_pick(qk, domain, app_cap)
        if not pick then
          redis.call('SADD', ns .. ':dw:' .. domain, qk)
          wait = recheck
        end
      end
      if wait == 0 then wait = throttle(spider, domain, now, hits0, window0, moderated, tprefix, split, lease) end
      if wait > 0 then
        redis.call('ZADD', ready, now + wait, qk)
      else
        local member, score = queue_take(qk, pick, served, weights)
        local cref, id, payload = '', '', nil
        if member then
          local colon = string.find(member, ':', 1, true)
          cref, id = string.sub(member, 1, colon - 1), string.sub(member, colon + 1)
          payload = redis.call('HGET', ns .. ':cj:' .. cref, id)
        end
        if queue_crawls(qk) == 0 then redis.call('ZREM', ready, qk) end
        if payload then
          redis.call('ZADD', ns .. ':leases', now + lease_ms, lease)
          site_start(domain, ok, now, gap, app)
          local flags = '@' .. epoch .. (app and ('a' .. #app .. ':' .. app) or '')
          redis.call('HSET', ns .. ':leased', lease, qk .. '\n' .. score .. '\n' .. member .. '\n' .. flags)
          counters(cref, -1, 1, 0)
          -- When the crawl (or its run) first started here, for its figures.
          redis.call('HSETNX', ns .. ':rf:' .. cref, 't', now)
          redis.call('SADD', ns .. ':cf:' .. cref, id)
          local version = redis.call('HGET', ns .. ':cc:' .. cref, 'v') or '0'
          return {tostring(lease), cref, payload, version, gap and '1' or '0'}
        end
      end
    end
  end
  return nil
end

for _, ready in ipairs(indexes) do
  local got = lease_from(ready)
  if got then return got end
end
-- Nothing to lease now: how long until a queue or a waiting retry is due.
local at = math.huge
for _, key in ipairs(indexes) do
  local nxt = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  at = math.min(at, tonumber(nxt[2]) or math.huge)
end
local lat = redis.call('ZRANGE', ns .. ':later', 0, 0, 'WITHSCORES')
at = math.min(at, tonumber(lat[2]) or math.huge)
if at == math.huge then return {'', '-1'} end
return {'', tostring(math.max(1, at - now))}
