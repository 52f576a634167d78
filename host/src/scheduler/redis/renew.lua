-- Extend leases whose worker is alive and still busy with them.
-- ARGV: ns, lease_ms, lease... Leases already reclaimed stay gone (XX).
local deadline = now_ms() + tonumber(ARGV[2])
local n = 0
for i = 3, #ARGV do
  n = n + redis.call('ZADD', ns .. ':leases', 'XX', 'CH', deadline, ARGV[i])
end
return n
