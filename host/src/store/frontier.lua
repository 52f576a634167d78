-- The frontier's shared Lua: leases, queues, crawls and the seen set.
-- Prepended to every script after common.lua and politeness/site.lua.
-- A lease record (hash `leased`): its queue key, score and member, then
-- flags: '@<e>' = its site's epoch when it was leased (site.lua), then
-- 'f' once its fetch is over (told with a pop), then 'a<len>:<appid>' if
-- its fetch counts against its app's cap (`lease_app`). Flags ride in the
-- record so that none costs a command of its own per page.
local function lease_record(data)
  return string.match(data, '^([^\n]*)\n([^\n]*)\n([^\n]*)\n?(.*)$')
end
-- Was the lease's fetch over told already ('f' after the epoch; an app's
-- name later in the flags may hold an 'f' of its own)?
local function fetch_told(flags)
  return string.find(flags, '^[@%dk]*f') ~= nil
end
-- The site's epoch when a lease's fetch started, from its flags ('@<e>').
local function lease_epoch(flags)
  return tonumber(string.match(flags, '@(%d+)')) or 0
end
-- A queue (`<spider>|<domain>|<origin>[|r]`) holds each crawl's requests
-- apart, in `q:<qk>#<cref>` (highest priority first, then first come),
-- and in `qc:<qk>` the crawls with requests there, scored by the fetches
-- each has been served. A pop serves the least served crawl, so crawls
-- sharing a site share its budget fairly whatever their sizes or
-- priorities (start-time fair queuing: a crawl that joins starts beside
-- the least served one, not at zero). `scheduler/queue.rs` is the same
-- for the embedded frontier.
local function crawl_queue(qk, cref) return ns .. ':q:' .. qk .. '#' .. cref end
local function queue_push(qk, cref, score, member)
  redis.call('ZADD', crawl_queue(qk, cref), score, member)
  local qc = ns .. ':qc:' .. qk
  if not redis.call('ZSCORE', qc, cref) then
    -- Half a fetch behind the least served: it goes after it, then they alternate.
    local least = redis.call('ZRANGE', qc, 0, 0, 'WITHSCORES')
    redis.call('ZADD', qc, least[2] and tonumber(least[2]) + 0.5 or 0, cref)
  end
end
-- The app of crawl `cref`, from the owner its counters keep
-- ('<len>:<appid><crawlid>'); nil if it has none.
local function crawl_app(cref)
  local owner = redis.call('HGET', ns .. ':cc:' .. cref, 'k')
  local len, rest = string.match(owner or '', '^(%d+):(.*)$')
  if not len then return nil end
  return string.sub(rest, 1, tonumber(len))
end
-- Which crawl of queue `qk` (of `domain`) to serve: the least served
-- whose app is under `app_cap` fetches open on the domain (0 = no cap).
-- Returns its cref, fetches served and app (app nil without a cap; cref
-- '' for a queue written before crawls were kept apart), or nil when
-- every crawl with work there is of an app at its cap.
local function queue_pick(qk, domain, app_cap)
  local crawls = redis.call('ZRANGE', ns .. ':qc:' .. qk, 0, app_cap > 0 and 31 or 0, 'WITHSCORES')
  if #crawls == 0 then return '', 0, nil end
  if app_cap == 0 then return crawls[1], tonumber(crawls[2]), nil end
  for i = 1, #crawls, 2 do
    local app = crawl_app(crawls[i]) or ''
    if (tonumber(redis.call('HGET', site_key(domain), 'fa:' .. app)) or 0) < app_cap then
      return crawls[i], tonumber(crawls[i + 1]), app
    end
  end
  return nil
end
-- Take the next request of crawl `cref` (queue_pick's) from queue `qk`:
-- member and score, or nil if it had none after all. Serving a crawl
-- counts 1/weight against it (`weights`: `throttle.weights` decoded, or
-- nil: every app weighs 1).
local function queue_take(qk, cref, served, weights)
  if cref == '' then
    local item = redis.call('ZPOPMIN', ns .. ':q:' .. qk)
    return item[1], item[2]
  end
  local qc, cq = ns .. ':qc:' .. qk, crawl_queue(qk, cref)
  local item = redis.call('ZPOPMIN', cq)
  if redis.call('EXISTS', cq) == 0 then
    redis.call('ZREM', qc, cref)
  else
    local weight = 1
    if weights then weight = tonumber(weights[crawl_app(cref) or '']) or 1 end
    redis.call('ZADD', qc, served + 1 / weight, cref)
  end
  return item[1], item[2]
end
-- Crawls with requests in queue `qk` (0: it is empty).
local function queue_crawls(qk)
  local n = redis.call('ZCARD', ns .. ':qc:' .. qk)
  if n == 0 then n = redis.call('ZCARD', ns .. ':q:' .. qk) end
  return n
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
  if not fetch_told(flags) then fetch_over(qk, flags) end
  return qk, score, member, cref, id, flags
end
-- The fetch of leased `lease` is over (reported with a pop): counted once.
local function fetched(lease)
  local data = redis.call('HGET', ns .. ':leased', lease)
  if not data then return end
  local qk, score, member, flags = lease_record(data)
  if fetch_told(flags) then return end
  fetch_over(qk, flags)
  local told = string.gsub(flags, '^([@%dk]*)', '%1f', 1)
  redis.call('HSET', ns .. ':leased', lease, qk .. '\n' .. score .. '\n' .. member .. '\n' .. told)
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
    queue_push(qk, string.match(member, '^([^:]*)'), score, member)
    make_ready(qk, now)
    redis.call('ZREM', ns .. ':later', e)
  end
end
-- Put lease `lease` back in its queue, ready at `now`; false if it is gone.
local function requeue(lease, now)
  local qk, score, member, cref = release(lease)
  if not qk then return false end
  queue_push(qk, cref, score, member)
  make_ready(qk, now)
  counters(cref, 1, -1, 0)
  return true
end
-- The origin of a URL as the host writes it (`links::domain::origin_of`:
-- the URL is already normalised, so only a userinfo is left to drop).
local function url_origin(u)
  local scheme, authority = string.match(u, '^([%a][%w+.-]*)://([^/?#]*)')
  if not scheme then return '' end
  return scheme .. '://' .. string.gsub(authority, '^.*@', '')
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
      -- Its queue: `<spider>|<domain>|<origin>`, or `...|r` if rendered.
      local qk = job.s .. '|' .. job.dm .. '|' .. url_origin(job.u)
      for _, q in ipairs({qk, qk .. '|r'}) do
        local cq = crawl_queue(q, cref)
        if redis.call('ZREM', cq, cref .. ':' .. id) == 1 and redis.call('EXISTS', cq) == 0 then
          redis.call('ZREM', ns .. ':qc:' .. q, cref)
        end
      end
      redis.call('HDEL', ns .. ':cj:' .. cref, id)
      n = n + 1
    end
  end
  counters(cref, -n, 0, 0)
  return n
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
  queue_push(qk, cref, -priority * 8589934592 + id, cref .. ':' .. id)
  make_ready(qk, now)
end
