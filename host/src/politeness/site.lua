-- Politeness in Redis: a site's pace and the throttle, the state
-- `politeness/` keeps its rules for. Every number (pauses, caps, spacings)
-- comes from the host as an argument. Prepended to every frontier script,
-- after scheduler/redis/common.lua.
-- One fetch of the site of queue `qk` fewer open (the field goes at 0, and
-- with the last field the key). If a pop found the site full (`w`), the
-- queue is ready now rather than at the fallback recheck.
local function fetch_over(qk)
  local _, domain = qk_parts(qk)
  local ds = ns .. ':ds:' .. domain
  if redis.call('HINCRBY', ds, 'fl', -1) <= 0 then redis.call('HDEL', ds, 'fl') end
  if redis.call('HDEL', ds, 'w') == 1 then redis.call('ZADD', ready_of(qk), 'XX', now_ms(), qk) end
end
-- A site's pace beyond the throttle, shared by every worker, in hash
-- ds:<domain> on its queues' shard: p = paused until (ms), k = slow-downs
-- in a row, cd = robots.txt Crawl-delay (ms), ad = the adaptive
-- throttle's spacing (ms), fl = fetches open, w = a pop found it full,
-- last = the last fetch's start (ms; kept while cd or ad is set). Returns
-- the ms to wait (0 = go), the spacing (the larger of cd and ad; nil if
-- neither) and whether the site is in a run of slow-downs.
local SITE_TTL = 86400000
-- A full site's queue is looked at again when one of its fetches ends,
-- or after `recheck` ms (politeness::FULL_RECHECK).
local function site_wait(ds, now, max_fl, recheck)
  local st = redis.call('HMGET', ds, 'p', 'cd', 'fl', 'last', 'ad', 'k')
  local p = tonumber(st[1])
  if p and p > now then return p - now, nil end
  if max_fl > 0 and (tonumber(st[3]) or 0) >= max_fl then
    redis.call('HSET', ds, 'w', 1)
    return recheck, nil
  end
  local cd, ad = tonumber(st[2]), tonumber(st[5])
  local gap = (cd or ad) and math.max(cd or 0, ad or 0) or nil
  if gap then
    local at = (tonumber(st[4]) or 0) + gap
    if at > now then return at - now, gap end
  end
  return 0, gap, st[6] ~= false
end
-- A fetch of the site starts.
local function site_start(ds, now, gap)
  redis.call('HINCRBY', ds, 'fl', 1)
  if gap then redis.call('HSET', ds, 'last', now) end
end
-- The adaptive throttle: the site's spacing `ad` after a fetch that took
-- `latency` ms: halfway to it on a success, doubled (at least it) on a
-- failure, at most `max`. The `adaptive` index (domain -> spacing) is what
-- /metrics shows.
local function site_adapt(domain, latency, failed, max)
  local ds = ns .. ':ds:' .. domain
  local last = tonumber(redis.call('HGET', ds, 'ad'))
  local nxt = latency
  if last and failed then nxt = math.max(last * 2, latency)
  elseif last then nxt = (last + latency) / 2 end
  nxt = math.floor(math.min(nxt, max))
  redis.call('HSET', ds, 'ad', nxt)
  redis.call('PEXPIRE', ds, SITE_TTL)
  local index = ns .. ':adaptive'
  redis.call('ZADD', index, nxt, domain)
  if redis.call('ZCARD', index) > 1000 then redis.call('ZPOPMIN', index) end
end
-- The site asked to slow down: paused for `ms` (capped by the host), or
-- (ms < 0) for the k-th entry of `schedule` (the host's pause schedule,
-- "ms,ms,...": its last entry holds after), k being the slow-downs in a
-- row.
local function site_pause(ds, now, ms, schedule)
  local k = redis.call('HINCRBY', ds, 'k', 1)
  if ms < 0 then
    local pauses = {}
    for p in string.gmatch(schedule, '%d+') do pauses[#pauses + 1] = tonumber(p) end
    ms = pauses[math.min(k, #pauses)]
  end
  local untl = now + ms
  if untl > (tonumber(redis.call('HGET', ds, 'p')) or 0) then
    redis.call('HSET', ds, 'p', untl)
    -- Paused domains by end (for /metrics).
    redis.call('ZREMRANGEBYSCORE', ns .. ':paused', '-inf', now)
    redis.call('ZADD', ns .. ':paused', untl, string.sub(ds, #ns + 5))
  end
  redis.call('PEXPIRE', ds, math.max(SITE_TTL, untl - now))
  return untl
end
-- The throttle: may `spider` fetch from `domain` now? Returns 0 and
-- records the fetch if so, else the milliseconds to wait. Domain config
-- (`domcfg`: "hits,window,scale") overrides the defaults live. `token`
-- (a lease id) makes the recorded fetch's member unique; without one a
-- counter does.
local function throttle(spider, domain, now, hits, window, moderated, tprefix, split, token)
  local cfg = redis.call('HGET', ns .. ':domcfg', domain)
  if cfg then
    local h, w, s = string.match(cfg, '^(%d+),([%d%.]+),([%d%.]+)$')
    if h then
      window = tonumber(w) * 1000
      hits = math.max(1, math.floor(tonumber(h) * tonumber(s)))
    end
  end
  local tkey = ns .. ':t:' .. tprefix .. (split and (spider .. '|') or '') .. domain
  redis.call('ZREMRANGEBYSCORE', tkey, '-inf', now - window)
  local n = redis.call('ZCARD', tkey)
  local wait = 0
  if n >= hits then
    local oldest = redis.call('ZRANGE', tkey, 0, 0, 'WITHSCORES')
    wait = tonumber(oldest[2]) + window - now
  elseif moderated and n > 0 then
    local last = redis.call('ZRANGE', tkey, -1, -1, 'WITHSCORES')
    wait = tonumber(last[2]) + window / hits - now
  end
  if wait > 0 then return math.ceil(wait) end
  redis.call('ZADD', tkey, now, now .. ':' .. (token or redis.call('INCR', ns .. ':seq')))
  redis.call('PEXPIRE', tkey, math.ceil(window) + 1000)
  return 0
end
