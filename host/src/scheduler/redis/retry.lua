-- Replace a lease by a re-queued job. ARGV: ns, lease, qk, priority, payload.
local qk, _, _, cref, id = release(ARGV[2])
if not qk then return 0 end
redis.call('HDEL', ns .. ':cj:' .. cref, id)
enqueue(cref, ARGV[3], tonumber(ARGV[4]), ARGV[5], now_ms())
counters(cref, 1, -1, 0)
return 1
