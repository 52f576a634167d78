-- Finish a lease and count its outcome. ARGV: ns, lease, status ('' =
-- no result was delivered), machine. Returns 0 if the lease had already
-- expired and been reclaimed (another worker may crawl it again).
local status, machine = ARGV[3], ARGV[4]
local qk, _, _, cref, id = release(ARGV[2])
if not qk then return 0 end
local now = now_ms()
redis.call('HDEL', ns .. ':cj:' .. cref, id)
counters(cref, 0, -1, status ~= '' and 1 or 0)
redis.call('ZADD', ns .. ':crawls', now, cref)
if status ~= '' then
  local spider = string.sub(qk, 1, string.find(qk, '|', 1, true) - 1)
  count_status(ns .. ':st:s:' .. spider .. ':' .. status, now)
  count_status(ns .. ':st:m:' .. machine .. ':' .. status, now)
end
return 1
