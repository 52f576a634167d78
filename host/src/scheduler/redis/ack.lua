-- Finish a lease and count it in its crawl. ARGV: ns, lease, status ('' =
-- no result was delivered), then for the adaptive throttle (or '') the
-- fetch's latency_ms, failed ('1'/'0') and the longest spacing, then the
-- learned rate's numbers, then for the crawl's figures the bytes fetched,
-- the error's kind and the page's change ('' = none), and a revisited
-- page's key and state to keep ('' = none). Returns {0, ''} if the lease
-- had already expired and been reclaimed (another worker may crawl it
-- again), else
-- {1, spider}: the worker adds the status to its stats tally, which
-- count.lua writes once a second for all its pages.
local status = ARGV[3]
local qk, _, _, cref, id, flags = release(ARGV[2])
if not qk then return {0, ''} end
local now = now_ms()
redis.call('HDEL', ns .. ':cj:' .. cref, id)
counters(cref, 0, -1, status ~= '' and 1 or 0)
redis.call('ZADD', ns .. ':crawls', now, cref)
-- The crawl's figures on this shard (a new run starts them again).
local rf = ns .. ':rf:' .. cref
if status ~= '' then
  redis.call('HINCRBY', rf, 's:' .. string.sub(status, 1, 1) .. 'xx', 1)
  -- Pages per minute for the status page's chart: the last ten are kept.
  local minute = math.floor(now / 60000)
  if redis.call('HINCRBY', rf, 'm:' .. minute, 1) == 1 then redis.call('HDEL', rf, 'm:' .. (minute - 10)) end
end
if ARGV[8] ~= '0' then redis.call('HINCRBY', rf, 'b', ARGV[8]) end
if ARGV[9] ~= '' then redis.call('HINCRBY', rf, 'e:' .. ARGV[9], 1) end
if ARGV[10] ~= '' then redis.call('HINCRBY', rf, 'c:' .. ARGV[10], 1) end
redis.call('HSETNX', rf, 'd:' .. domain_of(qk), 1)
if ARGV[12] ~= '' then redis.call('HSET', ns .. ':pg:' .. cref, ARGV[11], ARGV[12]) end
-- An answer that is not a slow-down raises the learned rate and ends the
-- site's run of slow-downs (if the fetch started since the last cut: an
-- older one says nothing about the site since).
if status ~= '' and status ~= '429' and status ~= '503' then
  site_ok(origin_of(qk), lease_epoch(flags), ARGV[7])
end
if ARGV[4] ~= '' then site_adapt(domain_of(qk), origin_of(qk), tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])) end
return {1, (qk_parts(qk))}
