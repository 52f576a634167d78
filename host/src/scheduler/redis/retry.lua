-- Replace a lease by a re-queued job. ARGV: ns, lease, qk, priority, payload.
local lease = ARGV[2]
local data = redis.call('HGET', ns .. ':leased', lease)
if not data then return 0 end
local member = string.match(data, '\n[^\n]*\n(.*)$')
local colon = string.find(member, ':', 1, true)
local cref, id = string.sub(member, 1, colon - 1), string.sub(member, colon + 1)
redis.call('HDEL', ns .. ':leased', lease)
redis.call('ZREM', ns .. ':leases', lease)
redis.call('HDEL', ns .. ':cj:' .. cref, id)
enqueue(cref, ARGV[3], tonumber(ARGV[4]), ARGV[5], now_ms())
counters(cref, 1, -1, 0)
return 1
