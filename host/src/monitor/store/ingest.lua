-- One batch of one incoming partition, handled atomically: crawl seeds are
-- queued, control requests go on the control stream, rejects are counted.
-- The partition's watermark makes a redelivered message a no-op, so the
-- ingest monitor may commit offsets lazily. It is the highest offset and
-- the highest message timestamp handled: a message at or below both was
-- handled before. A topic that starts over (recreated, or a broker that
-- lost it) reuses offsets, but its messages are newer, so they still count.
-- Writes shared by the batch (ids, ready domains, crawl and app indexes,
-- totals) are made once per batch, not once per seed.
-- ARGV: ns, watermark name, stats kind, global per-domain cap (0 = off;
-- seeds count toward it and are refused past it), then groups of 15:
-- offset, ts, kind (seed|ctl|stop|fail|note), stat name, cref, owner, spec,
-- appid, expires, fingerprint, hex, domain, qk, priority, payload (the
-- control JSON for ctl and stop).
-- A stop's spec field carries the other shards' horizons on a sharded
-- frontier. An empty stats kind counts nothing (a shard other than the
-- first: the first one's call counts the batch).
-- Returns how many messages were new, how many seeds were refused because
-- another crawl owns their cref, their (0-based) indexes in the batch, and
-- the indexes of seeds refused by the global cap.
local wmkey = ns .. ':wm:' .. ARGV[2]
local stkind, gcap = ARGV[3], tonumber(ARGV[4])
local mark = redis.call('HMGET', wmkey, 'o', 't')
local wm, wmts = tonumber(mark[1] or '-1'), tonumber(mark[2] or '-1')
local now = now_ms()
local new, top, topts = 0, wm, wmts
local by_name, seeds, collided, capped = {}, {}, {}, {}
-- Seeds get job ids seq0 + 1, seq0 + 2, ... in batch order (below), so a
-- stop knows which of them came before it.
local seq0 = tonumber(redis.call('GET', ns .. ':seq')) or 0
for i = 5, #ARGV, 15 do
  local offset, ts = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  local kind, name = ARGV[i + 2], ARGV[i + 3]
  if (offset > wm or ts > wmts) and kind == 'note' then
    -- Not a message: a count another shard's call decided (why a seed
    -- there was refused).
    by_name[name] = (by_name[name] or 0) + 1
  elseif offset > wm or ts > wmts then
    new = new + 1
    if offset > top then top = offset end
    if ts > topts then topts = ts end
    if kind == 'seed' then
      seeds[#seeds + 1] = i + 4
    elseif kind == 'ctl' then
      redis.call('XADD', ns .. ':control', '*', 'm', ARGV[i + 14])
    elseif kind == 'stop' then
      -- Children are refused from now on; the control plane purges what
      -- was queued up to here (never a seed sent after the stop) and
      -- replies.
      if owned(ARGV[i + 4], ARGV[i + 5]) then redis.call('SADD', ns .. ':stopped', ARGV[i + 4]) end
      local req = cjson.decode(ARGV[i + 14])
      local stop = {request = req.Action, horizon = seq0 + #seeds}
      -- A sharded frontier: the host read the other shards' horizons
      -- (their seeds before this stop are queued); this shard's goes first.
      if ARGV[i + 6] ~= '' then
        stop.horizons = cjson.decode(ARGV[i + 6])
        stop.horizons[1] = stop.horizon
      end
      redis.call('XADD', ns .. ':control', '*', 'm', cjson.encode({StopQueued = stop}))
    end
    by_name[name] = (by_name[name] or 0) + 1
  end
end

-- Variadic writes in chunks (Lua's unpack has a stack limit).
local function variadic(cmd, key, prefix, items)
  for c = 1, #items, 2000 do
    local args = {cmd, key}
    for _, p in ipairs(prefix) do args[#args + 1] = p end
    for j = c, math.min(c + 1999, #items) do args[#args + 1] = items[j] end
    redis.call(unpack(args))
  end
end

-- One seed: queued (with job id `id`) unless its domain has reached the
-- global cap or another crawl owns its cref. Returns whether it was
-- queued, and if not, why ('capped' or 'collision').
local crawls, ready, apps = {}, {}, {}
local function queue_seed(g, id)
  -- g: cref, owner, spec, appid, expires, fingerprint, hex, domain, qk,
  -- priority, payload
  local cref, owner, appid, domain, qk = ARGV[g], ARGV[g + 1], ARGV[g + 3], ARGV[g + 7], ARGV[g + 8]
  if gcap > 0 and (tonumber(redis.call('HGET', ns .. ':gcap', domain)) or 0) >= gcap then
    return false, 'capped'
  end
  -- A new crawl (no spec stored) has no state and no owner yet; one seen
  -- before must be this pair's, and takes the request's spec too, as a
  -- push would.
  local speckey = ns .. ':spec:' .. cref
  local fresh = redis.call('SET', speckey, ARGV[g + 2], 'NX')
  if not fresh then
    if not owned(cref, owner) then return false, 'collision' end
    redis.call('SET', speckey, ARGV[g + 2])
  end
  if gcap > 0 then redis.call('HINCRBY', ns .. ':gcap', domain, 1) end
  -- A new spec version: workers that cached the old one read it again.
  redis.call('HINCRBY', ns .. ':cc:' .. cref, 'v', 1)
  if fresh then
    apps[appid] = apps[appid] or {}
    table.insert(apps[appid], cref)
    if tonumber(ARGV[g + 4]) > 0 then redis.call('ZADD', ns .. ':expires', ARGV[g + 4], cref) end
    -- A new crawl's state is empty: its counters start here, and its
    -- seed counts as seen through the `seed` field (see is_seed).
    redis.call('HSET', ns .. ':cc:' .. cref, 'q', 1, 'c:' .. domain, 1, 'seed', ARGV[g + 5], 'k', owner)
  else
    admit_one(cref, ARGV[g + 5], ARGV[g + 6], domain, true, nil, nil, false)
    redis.call('HSET', ns .. ':cc:' .. cref, 'k', owner)
    redis.call('HINCRBY', ns .. ':cc:' .. cref, 'q', 1)
  end
  redis.call('HSET', ns .. ':cj:' .. cref, id, ARGV[g + 10])
  queue_push(qk, cref, -tonumber(ARGV[g + 9]) * 8589934592 + id, cref .. ':' .. id)
  ready[qk] = true
  crawls[#crawls + 1] = now
  crawls[#crawls + 1] = cref
  return true
end

if #seeds > 0 then
  -- Ids seq0 + 1 .. seq0 + #seeds, one per seed (a capped one leaves a gap).
  redis.call('INCRBY', ns .. ':seq', #seeds)
  local queued = 0
  for k, g in ipairs(seeds) do
    local ok, why = queue_seed(g, seq0 + k)
    if ok then
      queued = queued + 1
    else
      by_name[why] = (by_name[why] or 0) + 1
      if why == 'collision' then collided[#collided + 1] = (g - 9) / 15 end
      if why == 'capped' then capped[#capped + 1] = (g - 9) / 15 end
    end
  end
  redis.call('HINCRBY', ns .. ':counts', 'q', queued)
  local by_index = {}
  for qk in pairs(ready) do
    local index = ready_of(qk)
    by_index[index] = by_index[index] or {}
    local qks = by_index[index]
    qks[#qks + 1] = now; qks[#qks + 1] = qk
  end
  for index, qks in pairs(by_index) do
    local was_empty = redis.call('ZCARD', index) == 0
    variadic('ZADD', index, {'NX'}, qks)
    -- Idle workers wait for this (see make_ready).
    if was_empty then redis.call('PUBLISH', ns .. ':wake', '1') end
  end
  variadic('ZADD', ns .. ':crawls', {}, crawls)
  for appid, crefs in pairs(apps) do variadic('SADD', ns .. ':app:' .. appid, {}, crefs) end
end

if new > 0 then
  if stkind ~= '' then
    by_name['total'] = new
    for name, n in pairs(by_name) do
      count_status(ns .. ':st:' .. stkind .. ':' .. name .. ':n', now, n)
    end
  end
  redis.call('HSET', wmkey, 'o', top, 't', topts)
end
local out = {new, #collided}
for _, i in ipairs(collided) do out[#out + 1] = i end
for _, i in ipairs(capped) do out[#out + 1] = i end
return out
