-- Politeness in Redis: a site's pace and the throttle, the state
-- `politeness/` keeps its rules for. Every number (pauses, caps, spacings)
-- comes from the host as an argument. Prepended to every frontier script,
-- after store/common.lua.
--
-- Per registered domain, in hash ds:<domain> on its queues' shard: fl =
-- fetches open (`crawl.max_in_flight`); set dw:<domain> holds the queues
-- a pop found it full for. Per origin (`scheme://host[:port]`), in hash
-- ds:<origin> on the same shard: p = paused until (ms), k = slow-downs in
-- a row, cd = its robots.txt Crawl-delay (ms), ad = the adaptive
-- throttle's spacing (ms), last = the last fetch's start (ms; kept while a
-- spacing is set), the learned rate (politeness/rate.rs: rt = fetches/s,
-- ss = in slow start, st = its additive step) and e = its cuts so far
-- (the epoch a lease's fetch starts in). Set do:<domain> names the
-- domain's origins with a pace, for `info`.
local SITE_TTL = 86400000
local function site_key(name) return ns .. ':ds:' .. name end
-- `origin` of `domain` has a pace to show.
local function site_known(domain, origin)
  local key = ns .. ':do:' .. domain
  redis.call('SADD', key, origin)
  redis.call('PEXPIRE', key, SITE_TTL)
end
-- The app a lease's fetch counts for under `crawl.max_in_flight_per_app`,
-- from its flags ('a<len>:<appid>'; nil when the cap was off).
local function lease_app(flags)
  local len, at = string.match(flags, 'a(%d+):()')
  if not len then return nil end
  return string.sub(flags, at, at + tonumber(len) - 1)
end
-- One fetch of the domain of queue `qk` fewer open (the field goes at 0,
-- and with the last field the key), and of its app if counted (`flags`).
-- Queues a pop found the domain full for are ready now rather than at the
-- fallback recheck.
local function fetch_over(qk, flags)
  local _, domain = qk_parts(qk)
  local dk = site_key(domain)
  if redis.call('HINCRBY', dk, 'fl', -1) <= 0 then redis.call('HDEL', dk, 'fl') end
  local app = lease_app(flags)
  if app and redis.call('HINCRBY', dk, 'fa:' .. app, -1) <= 0 then redis.call('HDEL', dk, 'fa:' .. app) end
  local parked = ns .. ':dw:' .. domain
  local waiting = redis.call('SMEMBERS', parked)
  if #waiting > 0 then
    redis.call('DEL', parked)
    for _, q in ipairs(waiting) do redis.call('ZADD', ready_of(q), 'XX', now_ms(), q) end
  end
end
-- May queue `qk` (of `domain`, origin key `ok`) be popped now? Returns
-- the ms to wait (0 = go), the origin's spacing (the largest of cd, ad
-- and 1000/rt; nil if none) and its epoch. A full domain's queue is
-- looked at again when one of its fetches ends, or after `recheck` ms
-- (politeness::FULL_RECHECK).
local function site_wait(qk, domain, ok, now, max_fl, recheck)
  local st = redis.call('HMGET', ok, 'p', 'cd', 'last', 'ad', 'rt', 'e')
  local p = tonumber(st[1])
  if p and p > now then return p - now, nil end
  if max_fl > 0 and (tonumber(redis.call('HGET', site_key(domain), 'fl')) or 0) >= max_fl then
    redis.call('SADD', ns .. ':dw:' .. domain, qk)
    return recheck, nil
  end
  local cd, ad, rt = tonumber(st[2]), tonumber(st[4]), tonumber(st[5])
  local gap = nil
  if cd or ad or rt then gap = math.max(cd or 0, ad or 0, rt and 1000 / rt or 0) end
  if gap then
    local at = (tonumber(st[3]) or 0) + gap
    if at > now then return math.ceil(at - now), gap end
  end
  return 0, gap, tonumber(st[6]) or 0
end
-- A fetch of origin key `ok` of `domain` starts (for `app`, when apps'
-- fetches are capped).
local function site_start(domain, ok, now, gap, app)
  redis.call('HINCRBY', site_key(domain), 'fl', 1)
  if app then redis.call('HINCRBY', site_key(domain), 'fa:' .. app, 1) end
  if gap then redis.call('HSET', ok, 'last', now) end
end
-- The learned rate's numbers from the host (Learning::args):
-- "decrease,start,ramp_ms,floor,ceiling".
local function learning(args)
  local d, s, r, f, c = string.match(args, '^([^,]+),([^,]+),([^,]+),([^,]+),([^,]+)$')
  return tonumber(d), tonumber(s), tonumber(r), tonumber(f), tonumber(c)
end
-- Learning::cut: the origin asked to slow down.
local function rate_cut(domain, origin, args)
  local ok = site_key(origin)
  local d, start, ramp, floor, ceiling = learning(args)
  local r = tonumber(redis.call('HGET', ok, 'rt'))
  local n
  if not r then
    n = math.max(math.min(start, ceiling * d), floor)
    redis.call('HSET', ok, 'rt', n, 'ss', 1, 'st', 0)
  else
    n = math.max(r * d, floor)
    redis.call('HSET', ok, 'rt', n, 'st', (r - n) / (ramp / 1000))
    redis.call('HDEL', ok, 'ss')
  end
  redis.call('PEXPIRE', ok, SITE_TTL)
  site_known(domain, origin)
  -- Origins by rate after their last cut, slowest first (for /metrics).
  local index = ns .. ':learned'
  redis.call('ZADD', index, n, origin)
  if redis.call('ZCARD', index) > 1000 then redis.call('ZPOPMAX', index) end
end
-- A delivered answer that was not a slow-down, to a fetch of `origin`
-- started in `epoch`: Learning::grow, and the end of a run of slow-downs
-- if the fetch started since the last cut.
local function site_ok(origin, epoch, args)
  local ok = site_key(origin)
  local st = redis.call('HMGET', ok, 'e', 'k', 'rt', 'ss', 'st')
  if st[2] and (tonumber(st[1]) or 0) == epoch then redis.call('HDEL', ok, 'k') end
  local r = tonumber(st[3])
  if not r then return end
  if st[4] then r = r + 1 else r = r + tonumber(st[5]) / r end
  local _, _, _, _, ceiling = learning(args)
  if r < ceiling then
    redis.call('HSET', ok, 'rt', r)
  else
    redis.call('HDEL', ok, 'rt', 'ss', 'st')
    redis.call('ZREM', ns .. ':learned', origin)
  end
end
-- The adaptive throttle: the origin's spacing `ad` after a fetch that
-- took `latency` ms: halfway to it on a success, doubled (at least it) on
-- a failure, at most `max`. The `adaptive` index (origin -> spacing) is
-- what /metrics shows.
local function site_adapt(domain, origin, latency, failed, max)
  local ok = site_key(origin)
  local last = tonumber(redis.call('HGET', ok, 'ad'))
  local nxt = latency
  if last and failed then nxt = math.max(last * 2, latency)
  elseif last then nxt = (last + latency) / 2 end
  nxt = math.floor(math.min(nxt, max))
  redis.call('HSET', ok, 'ad', nxt)
  redis.call('PEXPIRE', ok, SITE_TTL)
  site_known(domain, origin)
  local index = ns .. ':adaptive'
  redis.call('ZADD', index, nxt, origin)
  if redis.call('ZCARD', index) > 1000 then redis.call('ZPOPMIN', index) end
end
-- The origin asked a fetch started in `epoch` to slow down. If that is
-- the current epoch, the rate is cut and the origin paused for `ms` (its
-- Retry-After, capped by the host), or (ms < 0) for the k-th entry of
-- `schedule` (the host's pause schedule, "ms,ms,...": its last entry
-- holds after), k being the slow-downs in a row. An older fetch's
-- slow-down only honours its Retry-After. Returns when the pause ends.
local function site_pause(domain, origin, now, ms, schedule, epoch, args)
  local ok = site_key(origin)
  if (tonumber(redis.call('HGET', ok, 'e')) or 0) == epoch then
    local k = redis.call('HINCRBY', ok, 'k', 1)
    redis.call('HINCRBY', ok, 'e', 1)
    rate_cut(domain, origin, args)
    -- The next fetch waits a spacing at the new rate from now.
    redis.call('HSET', ok, 'last', now)
    if ms < 0 then
      local pauses = {}
      for p in string.gmatch(schedule, '%d+') do pauses[#pauses + 1] = tonumber(p) end
      ms = pauses[math.min(k, #pauses)]
    end
  elseif ms < 0 then
    ms = 0
  end
  local untl = now + ms
  if ms > 0 and untl > (tonumber(redis.call('HGET', ok, 'p')) or 0) then
    redis.call('HSET', ok, 'p', untl)
    site_known(domain, origin)
    -- Paused origins by end (for /metrics).
    redis.call('ZREMRANGEBYSCORE', ns .. ':paused', '-inf', now)
    redis.call('ZADD', ns .. ':paused', untl, origin)
  end
  redis.call('PEXPIRE', ok, math.max(SITE_TTL, untl - now))
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
