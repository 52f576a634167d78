-- Shared by every script (prepended by the host). All keys start with the
-- namespace ARGV[1], which carries a hash tag ({ns}), so a script's keys
-- share one slot and the layout runs on Redis Cluster too.
local ns = ARGV[1]
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function counters(cref, dq, df, dd)
  local cc = ns .. ':cc:' .. cref
  if dq ~= 0 then redis.call('HINCRBY', cc, 'q', dq); redis.call('HINCRBY', ns .. ':counts', 'q', dq) end
  if df ~= 0 then redis.call('HINCRBY', cc, 'f', df); redis.call('HINCRBY', ns .. ':counts', 'f', df) end
  if dd ~= 0 then redis.call('HINCRBY', cc, 'd', dd) end
end
-- Queue a job: payload under the crawl, a short member in the shared queue.
local function enqueue(cref, qk, priority, payload, now)
  local id = redis.call('INCR', ns .. ':seq')
  redis.call('HSET', ns .. ':cj:' .. cref, id, payload)
  -- Higher priority first, then first come first served.
  redis.call('ZADD', ns .. ':q:' .. qk, -priority * 8589934592 + id, cref .. ':' .. id)
  redis.call('ZADD', ns .. ':ready', 'NX', now, qk)
  redis.call('SADD', ns .. ':cq:' .. cref, qk)
end
