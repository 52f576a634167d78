-- Shared by every script (prepended by the host). All keys start with the
-- namespace ARGV[1], which carries a hash tag ({ns}), so a script's keys
-- share one slot and the layout runs on Redis Cluster too.
local ns = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
-- A queue key is `spider|domain`, plus `|r` for requests that need a
-- browser: those queues are ready in `rready`, which only workers that
-- render pop, so such a request waits (queued, in info) for one.
local function qk_parts(qk)
  local a = string.find(qk, '|', 1, true)
  local b = string.find(qk, '|', a + 1, true)
  return string.sub(qk, 1, a - 1), string.sub(qk, a + 1, (b or 0) - 1)
end
local function ready_of(qk)
  if string.sub(qk, -2) == '|r' then return ns .. ':rready' end
  return ns .. ':ready'
end
local function counters(cref, dq, df, dd)
  local cc = ns .. ':cc:' .. cref
  if dq ~= 0 then redis.call('HINCRBY', cc, 'q', dq); redis.call('HINCRBY', ns .. ':counts', 'q', dq) end
  if df ~= 0 then redis.call('HINCRBY', cc, 'f', df); redis.call('HINCRBY', ns .. ':counts', 'f', df) end
  if dd ~= 0 then redis.call('HINCRBY', cc, 'd', dd) end
end
-- Status counters in time buckets: per minute (kept 12 h), per hour (kept
-- 8 days) and for life, so windows from 15 min to a week sum few fields
-- and memory stays bounded.
local function count_status(key, now, n)
  n = n or 1
  local minute, hour = math.floor(now / 60000), math.floor(now / 3600000)
  redis.call('HINCRBY', key, 'm' .. minute, n)
  redis.call('HINCRBY', key, 'h' .. hour, n)
  redis.call('HINCRBY', key, 'life', n)
  redis.call('SADD', ns .. ':stkeys', key)
end
-- One fetch of the site of queue `qk` fewer open (the field goes at 0, and
-- with the last field the key). If a pop found the site full (`w`), the
-- queue is ready now rather than at the fallback recheck.
local function fetch_over(qk)
  local _, domain = qk_parts(qk)
  local ds = ns .. ':ds:' .. domain
  if redis.call('HINCRBY', ds, 'fl', -1) <= 0 then redis.call('HDEL', ds, 'fl') end
  if redis.call('HDEL', ds, 'w') == 1 then redis.call('ZADD', ready_of(qk), 'XX', now_ms(), qk) end
end
-- A lease record (hash `leased`): its queue key, score and member, then
-- flags: 'f' = its fetch is over (told with a pop), 'k' = its site was in
-- a run of slow-downs when it was leased. Flags ride in the record so
-- that neither costs a command of its own per page.
local function lease_record(data)
  return string.match(data, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n?(.*)$')
end
-- Finish the lease `lease`; returns its queue key, score, member, cref,
-- job id and flags, or nil if it is gone (expired and reclaimed).
local function release(lease)
  local data = redis.call('HGET', ns .. ':leased', lease)
  if not data then return nil end
  local qk, score, member, flags = lease_record(data)
  local colon = string.find(member, ':', 1, true)
  local cref, id = string.sub(member, 1, colon - 1), string.sub(member, colon + 1)
  redis.call('HDEL', ns .. ':leased', lease)
  redis.call('ZREM', ns .. ':leases', lease)
  redis.call('SREM', ns .. ':cf:' .. cref, id)
  -- Unless a pop was told its fetch is over, its site has one fetch
  -- fewer open now.
  if not string.find(flags, 'f', 1, true) then fetch_over(qk) end
  return qk, score, member, cref, id, flags
end
-- The fetch of leased `lease` is over (reported with a pop): counted once.
local function fetched(lease)
  local data = redis.call('HGET', ns .. ':leased', lease)
  if not data then return end
  local qk, score, member, flags = lease_record(data)
  if string.find(flags, 'f', 1, true) then return end
  fetch_over(qk)
  redis.call('HSET', ns .. ':leased', lease, qk .. '\n' .. score .. '\n' .. member .. '\n' .. flags .. 'f')
end
-- A site's pace beyond the throttle, shared by every worker, in hash
-- ds:<domain> on its queues' shard: p = paused until (ms), k = slow-downs
-- in a row, cd = robots.txt Crawl-delay (ms), ad = the adaptive
-- throttle's spacing (ms), fl = fetches open, w = a pop found it full,
-- last = the last fetch's start (ms; kept while cd or ad is set). Returns
-- the ms to wait (0 = go), the spacing (the larger of cd and ad; nil if
-- neither) and whether the site is in a run of slow-downs.
-- A full site's queue is looked at again when one of its fetches ends,
-- or after this (its other spiders' queues).
local FULL_RECHECK = 1000
local SITE_TTL = 86400000
local function site_wait(ds, now, max_fl)
  local st = redis.call('HMGET', ds, 'p', 'cd', 'fl', 'last', 'ad', 'k')
  local p = tonumber(st[1])
  if p and p > now then return p - now, nil end
  if max_fl > 0 and (tonumber(st[3]) or 0) >= max_fl then
    redis.call('HSET', ds, 'w', 1)
    return FULL_RECHECK, nil
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
local function domain_of(qk)
  local _, domain = qk_parts(qk)
  return domain
end
-- The site asked to slow down: paused for `ms`, or (ms < 0) for
-- first * 2^(k-1) up to max, k being the slow-downs in a row.
local function site_pause(ds, now, ms, first, max)
  local k = redis.call('HINCRBY', ds, 'k', 1)
  if ms < 0 then ms = math.min(first * 2 ^ math.min(k - 1, 30), max) end
  local untl = now + math.min(ms, max)
  if untl > (tonumber(redis.call('HGET', ds, 'p')) or 0) then
    redis.call('HSET', ds, 'p', untl)
    -- Paused domains by end (for /metrics).
    redis.call('ZREMRANGEBYSCORE', ns .. ':paused', '-inf', now)
    redis.call('ZADD', ns .. ':paused', untl, string.sub(ds, #ns + 5))
  end
  redis.call('PEXPIRE', ds, math.max(SITE_TTL, untl - now))
  return untl
end
-- Retries wait out their backoff in `later` (due time -> queue key,
-- score and member); due ones join their queues.
local function enqueue_later(cref, qk, priority, payload, due)
  local id = redis.call('INCR', ns .. ':seq')
  redis.call('HSET', ns .. ':cj:' .. cref, id, payload)
  redis.call('ZADD', ns .. ':later', due, qk .. '\n' .. (-priority * 8589934592 + id) .. '\n' .. cref .. ':' .. id)
end
-- Mark a domain's queue ready. The first one of an empty frontier is
-- published on `wake`: idle workers wait on that instead of polling.
local function make_ready(qk, now)
  local ready = ready_of(qk)
  if redis.call('ZADD', ready, 'NX', now, qk) == 1 and redis.call('ZCARD', ready) == 1 then
    redis.call('PUBLISH', ns .. ':wake', '1')
  end
end
local function promote_later(now)
  local due = redis.call('ZRANGEBYSCORE', ns .. ':later', '-inf', now, 'LIMIT', 0, 100)
  for _, e in ipairs(due) do
    local qk, score, member = string.match(e, '^([^\n]*)\n([^\n]*)\n(.*)$')
    redis.call('ZADD', ns .. ':q:' .. qk, score, member)
    make_ready(qk, now)
    redis.call('ZREM', ns .. ':later', e)
  end
end
-- Put lease `lease` back in its queue, ready at `now`; false if it is gone.
local function requeue(lease, now)
  local qk, score, member, cref = release(lease)
  if not qk then return false end
  redis.call('ZADD', ns .. ':q:' .. qk, score, member)
  make_ready(qk, now)
  counters(cref, 1, -1, 0)
  return true
end
-- Remove every queued (not in-flight) request of a crawl, or those with a
-- job id up to `horizon` when given: O(crawl size).
local function purge(cref, horizon)
  local jobs = redis.call('HGETALL', ns .. ':cj:' .. cref)
  local n = 0
  for i = 1, #jobs, 2 do
    local id, payload = jobs[i], jobs[i + 1]
    if (not horizon or tonumber(id) <= horizon)
      and redis.call('SISMEMBER', ns .. ':cf:' .. cref, id) == 0 then
      local job = cjson.decode(payload)
      redis.call('ZREM', ns .. ':q:' .. job.s .. '|' .. job.dm, cref .. ':' .. id)
      redis.call('HDEL', ns .. ':cj:' .. cref, id)
      n = n + 1
    end
  end
  counters(cref, -n, 0, 0)
  return n
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
-- A crawl's state is keyed by cref, a 64-bit hash of (appid, crawlid).
-- The pair itself (`owner`) is kept in the crawl's counters as field `k`
-- and compared, so two pairs that hash alike never share state: the one
-- that comes second is refused. A crawl stored before `k` existed is
-- claimed by the next pair that names it.
local function owned(cref, owner)
  local k = redis.call('HGET', ns .. ':cc:' .. cref, 'k')
  return not k or k == owner
end
-- A crawl's seed: its spec (a new version, so workers that cached the old
-- one read it again), owner, app index and expiry. `lazy` (sharded
-- frontiers): a crawl's children reaching another shard bring its spec,
-- stored there only if that shard has none; the seed's shard alone keeps
-- the expiry (the host stops the crawl on every shard when it is due).
local function register_crawl(cref, owner, spec, appid, expires, lazy)
  if spec == '' then return end
  local speckey = ns .. ':spec:' .. cref
  if lazy then
    if redis.call('SET', speckey, spec, 'NX') then
      redis.call('HSET', ns .. ':cc:' .. cref, 'k', owner)
      redis.call('HINCRBY', ns .. ':cc:' .. cref, 'v', 1)
      redis.call('SADD', ns .. ':app:' .. appid, cref)
    end
    return
  end
  redis.call('SET', speckey, spec)
  redis.call('HSET', ns .. ':cc:' .. cref, 'k', owner)
  redis.call('HINCRBY', ns .. ':cc:' .. cref, 'v', 1)
  redis.call('SADD', ns .. ':app:' .. appid, cref)
  if tonumber(expires) > 0 then redis.call('ZADD', ns .. ':expires', expires, cref) end
end
-- Seen fingerprints (signed 64-bit integers, so Redis stores them as
-- intsets: 8 bytes each) live in a trie of small sets: level L holds 16^L
-- buckets named by the fingerprint's first L hex digits. A bucket takes
-- members until it has SEEN_CAP; then its fingerprints' path goes on one
-- level down. A lookup walks the path until a bucket that is not full.
-- Returns true if seen; otherwise marks it seen (when mark) and returns false.
local SEEN_CAP = 500
local function seen(cref, fp, hex, mark)
  local prefix = ns .. ':s:' .. cref .. ':'
  for level = 1, 16 do
    local key = prefix .. string.sub(hex, 1, level)
    if redis.call('SISMEMBER', key, fp) == 1 then return true end
    local n = redis.call('SCARD', key)
    if n < SEEN_CAP then
      if mark then
        redis.call('SADD', key, fp)
        -- The crawl's counters hash lists its buckets, for the janitor.
        if n == 0 then redis.call('HSET', ns .. ':cc:' .. cref, 'b:' .. string.sub(hex, 1, level), 1) end
      end
      return false
    end
  end
  return false
end
-- A seed queued by the ingest monitor is recorded as its crawl's `seed`
-- field rather than in the trie (one key fewer per new crawl); read once
-- per crawl per script.
local seed_fps = {}
local function is_seed(cref, fp)
  local s = seed_fps[cref]
  if s == nil then
    s = redis.call('HGET', ns .. ':cc:' .. cref, 'seed') or false
    seed_fps[cref] = s
  end
  return s == fp
end
-- Dedup and caps for one link: admitted links are marked seen and counted.
local function admit_one(cref, fp, hex, domain, force, dcap, gcap, stopped)
  if stopped and not force then return false end
  if not force and (is_seed(cref, fp) or seen(cref, fp, hex, false)) then return false end
  if dcap and (tonumber(redis.call('HGET', ns .. ':cc:' .. cref, 'c:' .. domain)) or 0) >= dcap then return false end
  if gcap and (tonumber(redis.call('HGET', ns .. ':gcap', domain)) or 0) >= gcap then return false end
  seen(cref, fp, hex, true)
  redis.call('HINCRBY', ns .. ':cc:' .. cref, 'c:' .. domain, 1)
  if gcap then redis.call('HINCRBY', ns .. ':gcap', domain, 1) end
  return true
end
-- Queue a job: payload under the crawl, a short member in the shared queue.
local function enqueue(cref, qk, priority, payload, now)
  local id = redis.call('INCR', ns .. ':seq')
  redis.call('HSET', ns .. ':cj:' .. cref, id, payload)
  -- Higher priority first, then first come first served.
  redis.call('ZADD', ns .. ':q:' .. qk, -priority * 8589934592 + id, cref .. ':' .. id)
  make_ready(qk, now)
end
