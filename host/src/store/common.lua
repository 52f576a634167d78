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
local function domain_of(qk)
  local _, domain = qk_parts(qk)
  return domain
end
-- A queue key's origin (`<spider>|<domain>|<origin>[|r]`); a key queued
-- before queues were per origin (`<spider>|<domain>[|r]`) paces as its
-- domain.
local function origin_of(qk)
  local o = string.match(qk, '^[^|]*|[^|]*|([^|]+)')
  if not o or o == 'r' then return domain_of(qk) end
  return o
end
