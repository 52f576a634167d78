-- The schedule book's compare-and-set: write a schedule's fields only if
-- its version is still the one the caller read. ARGV: ns, cref, the
-- version read ('' for a schedule not kept yet: then only if absent),
-- then field, value pairs. Returns 1 if written.
local key = ns .. ':sched:' .. ARGV[2]
local v = redis.call('HGET', key, 'v')
if ARGV[3] == '' then
  if v then return 0 end
elseif v ~= ARGV[3] then
  return 0
end
for i = 4, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
redis.call('SADD', ns .. ':sched', ARGV[2])
return 1
