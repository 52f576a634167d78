-- Webhook deliveries no notifier holds (their hold time passed), at most
-- ARGV[4], each held by the caller until ARGV[3] from now on. ARGV: ns,
-- now (unix ms), hold (ms), n. Returns the deliveries' JSON.
local due = ns .. ':whdue'
local now, hold = tonumber(ARGV[2]), tonumber(ARGV[3])
local out = {}
for _, key in ipairs(redis.call('ZRANGEBYSCORE', due, '-inf', now, 'LIMIT', 0, tonumber(ARGV[4]))) do
  local kept = redis.call('HGET', ns .. ':wh', key)
  if kept then
    redis.call('ZADD', due, now + hold, key)
    out[#out + 1] = kept
  else
    redis.call('ZREM', due, key)
  end
end
return out
