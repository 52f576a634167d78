-- A domain's settings change (contract §4.3): domain-update and
-- domain-remove set or clear its throttle override ("hits,window,scale"),
-- blacklist and unblacklist its ban. Its queues are then looked at again
-- at once, and idle or waiting workers told, so a lifted limit takes
-- effect now rather than when the old window, pause or ban would have
-- ended. ARGV: ns, action ('update', 'remove', 'blacklist',
-- 'unblacklist'), domain, the override (for 'update').
local action, domain = ARGV[2], ARGV[3]
if action == 'update' then
  redis.call('HSET', ns .. ':domcfg', domain, ARGV[4])
elseif action == 'remove' then
  redis.call('HDEL', ns .. ':domcfg', domain)
elseif action == 'blacklist' then
  redis.call('SADD', ns .. ':blacklist', domain)
  return 0
else
  redis.call('SREM', ns .. ':blacklist', domain)
end
-- Queue keys are `<spider>|<domain>[|r]` (an IPv6 domain has brackets).
local glob = string.gsub(domain, '([%[%]%*%?\\])', '\\%1')
local now, readied = now_ms(), 0
for _, index in ipairs({ns .. ':ready', ns .. ':rready'}) do
  local found, cursor = {}, '0'
  repeat
    local page = redis.call('ZSCAN', index, cursor, 'MATCH', '*|' .. glob .. '*', 'COUNT', 1000)
    cursor = page[1]
    for i = 1, #page[2], 2 do
      local _, d = qk_parts(page[2][i])
      if d == domain then found[#found + 1] = page[2][i] end
    end
  until cursor == '0'
  for _, qk in ipairs(found) do
    readied = readied + redis.call('ZADD', index, 'XX', 'CH', now, qk)
  end
end
-- '2': waiting workers look again too, not only idle ones.
if readied > 0 then redis.call('PUBLISH', ns .. ':wake', '2') end
return readied
