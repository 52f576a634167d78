-- Finish a lease and count it in its crawl. ARGV: ns, lease, status ('' =
-- no result was delivered), then for the adaptive throttle (or '') the
-- fetch's latency_ms, failed ('1'/'0') and the longest spacing, then the
-- learned rate's numbers. Returns {0, ''} if the lease had already
-- expired and been reclaimed (another worker may crawl it again), else
-- {1, spider}: the worker adds the status to its stats tally, which
-- count.lua writes once a second for all its pages.
local status = ARGV[3]
local qk, _, _, cref, id, flags = release(ARGV[2])
if not qk then return {0, ''} end
local now = now_ms()
redis.call('HDEL', ns .. ':cj:' .. cref, id)
counters(cref, 0, -1, status ~= '' and 1 or 0)
redis.call('ZADD', ns .. ':crawls', now, cref)
-- An answer that is not a slow-down raises the learned rate and ends the
-- site's run of slow-downs (if the fetch started since the last cut: an
-- older one says nothing about the site since).
if status ~= '' and status ~= '429' and status ~= '503' then
  site_ok(origin_of(qk), lease_epoch(flags), ARGV[7])
end
if ARGV[4] ~= '' then site_adapt(domain_of(qk), origin_of(qk), tonumber(ARGV[4]), ARGV[5] == '1', tonumber(ARGV[6])) end
return {1, (qk_parts(qk))}
