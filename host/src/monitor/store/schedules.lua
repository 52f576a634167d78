-- The schedule book's compare-and-set: write a schedule's fields only if
-- its version is still the one the caller read. ARGV: ns, cref, the
-- version read ('' for a schedule just accepted: written if none is kept,
-- or the one kept has ended and no run of it goes on, so a crawl
-- unscheduled or stopped can be scheduled again), then field, value
-- pairs. Returns 1 if written.
local key = ns .. ':sched:' .. ARGV[2]
local v = redis.call('HGET', key, 'v')
if ARGV[3] == '' then
  if v then
    local over = redis.call('HMGET', key, 'e', 'run')
    if over[1] ~= '1' or over[2] == '1' then return 0 end
  end
elseif v ~= ARGV[3] then
  return 0
end
for i = 4, #ARGV, 2 do redis.call('HSET', key, ARGV[i], ARGV[i + 1]) end
-- A schedule kept again goes on from the old one's version, so a writer
-- holding the old row cannot mistake the new one for it.
if ARGV[3] == '' and v then redis.call('HSET', key, 'v', tonumber(v) + 1) end
redis.call('SADD', ns .. ':sched', ARGV[2])
return 1
