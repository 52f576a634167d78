-- One batch of one incoming partition, handled atomically: crawl seeds are
-- queued, control requests go on the control stream, rejects are counted.
-- The partition's watermark (last offset handled) makes a redelivered
-- message a no-op, so the ingest monitor may commit offsets lazily.
-- ARGV: ns, watermark name, stats kind, then groups of 13: offset, kind
-- (seed|ctl|fail), stat name, cref, spec, appid, expires, fingerprint, hex,
-- domain, qk, priority, payload (the control JSON for ctl).
-- Returns how many messages were new.
local wmkey = ns .. ':wm:' .. ARGV[2]
local stkind = ARGV[3]
local wm = tonumber(redis.call('GET', wmkey) or '-1')
local now = now_ms()
local new, top = 0, wm
local by_name = {}
for i = 4, #ARGV, 13 do
  local offset = tonumber(ARGV[i])
  if offset > wm then
    new = new + 1
    if offset > top then top = offset end
    local kind, name = ARGV[i + 1], ARGV[i + 2]
    if kind == 'seed' then
      local cref = ARGV[i + 3]
      register_crawl(cref, ARGV[i + 4], ARGV[i + 5], ARGV[i + 6])
      admit_one(cref, ARGV[i + 7], ARGV[i + 8], ARGV[i + 9], true, nil, nil, false)
      enqueue(cref, ARGV[i + 10], tonumber(ARGV[i + 11]), ARGV[i + 12], now)
      counters(cref, 1, 0, 0)
      redis.call('ZADD', ns .. ':crawls', now, cref)
    elseif kind == 'ctl' then
      redis.call('XADD', ns .. ':control', 'MAXLEN', '~', 100000, '*', 'm', ARGV[i + 12])
    end
    by_name[name] = (by_name[name] or 0) + 1
  end
end
if new > 0 then
  by_name['total'] = new
  for name, n in pairs(by_name) do
    count_status(ns .. ':st:' .. stkind .. ':' .. name .. ':n', now, n)
  end
  redis.call('SET', wmkey, top)
end
return new
