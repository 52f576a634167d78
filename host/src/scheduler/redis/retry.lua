-- Replace a lease by a re-queued job. ARGV: ns, lease, qk, priority,
-- payload, after_ms (its backoff: it waits in `later`), pause ('' = none;
-- the site asked to slow down: pause its domain this many ms, or -1 for
-- its growing pause), the pause schedule, then for the adaptive throttle
-- (or '') the failed fetch's latency_ms and the longest spacing, then the
-- learned rate's numbers.
local qk, _, _, cref, id, flags = release(ARGV[2])
if not qk then return 0 end
local now = now_ms()
redis.call('HDEL', ns .. ':cj:' .. cref, id)
local after = tonumber(ARGV[6])
-- The pace is the leased request's origin's (a redirect hop may be
-- another's).
if ARGV[9] ~= '' then site_adapt(domain_of(qk), origin_of(qk), tonumber(ARGV[9]), true, tonumber(ARGV[10])) end
if ARGV[7] ~= '' then
  local untl = site_pause(domain_of(qk), origin_of(qk), now, tonumber(ARGV[7]), ARGV[8], lease_epoch(flags), ARGV[11])
  after = math.max(after, untl - now)
end
if after > 0 then
  enqueue_later(cref, ARGV[3], tonumber(ARGV[4]), ARGV[5], now + after)
else
  enqueue(cref, ARGV[3], tonumber(ARGV[4]), ARGV[5], now)
end
counters(cref, 1, -1, 0)
return 1
