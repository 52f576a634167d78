-- Finish a lease. ARGV: ns, lease, done ('1' = counts as crawled).
-- Returns 0 if the lease had already expired and been reclaimed.
local lease = ARGV[2]
local data = redis.call('HGET', ns .. ':leased', lease)
if not data then return 0 end
local member = string.match(data, '\n[^\n]*\n(.*)$')
local colon = string.find(member, ':', 1, true)
local cref, id = string.sub(member, 1, colon - 1), string.sub(member, colon + 1)
redis.call('HDEL', ns .. ':leased', lease)
redis.call('ZREM', ns .. ':leases', lease)
redis.call('HDEL', ns .. ':cj:' .. cref, id)
counters(cref, 0, -1, ARGV[3] == '1' and 1 or 0)
redis.call('ZADD', ns .. ':crawls', now_ms(), cref)
return 1
