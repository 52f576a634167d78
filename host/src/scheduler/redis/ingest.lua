-- One batch of one incoming partition, handled atomically: crawl seeds are
-- queued, control requests go on the control stream, rejects are counted.
-- The partition's watermark makes a redelivered message a no-op, so the
-- ingest monitor may commit offsets lazily. It is the highest offset and
-- the highest message timestamp handled: a message at or below both was
-- handled before. A topic that starts over (recreated, or a broker that
-- lost it) reuses offsets, but its messages are newer, so they still count.
-- ARGV: ns, watermark name, stats kind, then groups of 14: offset, ts, kind
-- (seed|ctl|fail), stat name, cref, spec, appid, expires, fingerprint, hex,
-- domain, qk, priority, payload (the control JSON for ctl).
-- Returns how many messages were new.
local wmkey = ns .. ':wm:' .. ARGV[2]
local stkind = ARGV[3]
local mark = redis.call('HMGET', wmkey, 'o', 't')
local wm, wmts = tonumber(mark[1] or '-1'), tonumber(mark[2] or '-1')
local now = now_ms()
local new, top, topts = 0, wm, wmts
local by_name = {}
for i = 4, #ARGV, 14 do
  local offset, ts = tonumber(ARGV[i]), tonumber(ARGV[i + 1])
  if offset > wm or ts > wmts then
    new = new + 1
    if offset > top then top = offset end
    if ts > topts then topts = ts end
    local g = i + 1 -- the group past its timestamp
    local kind, name = ARGV[g + 1], ARGV[g + 2]
    if kind == 'seed' then
      local cref = ARGV[g + 3]
      register_crawl(cref, ARGV[g + 4], ARGV[g + 5], ARGV[g + 6])
      admit_one(cref, ARGV[g + 7], ARGV[g + 8], ARGV[g + 9], true, nil, nil, false)
      enqueue(cref, ARGV[g + 10], tonumber(ARGV[g + 11]), ARGV[g + 12], now)
      counters(cref, 1, 0, 0)
      redis.call('ZADD', ns .. ':crawls', now, cref)
    elseif kind == 'ctl' then
      redis.call('XADD', ns .. ':control', 'MAXLEN', '~', 100000, '*', 'm', ARGV[g + 12])
    end
    by_name[name] = (by_name[name] or 0) + 1
  end
end
if new > 0 then
  by_name['total'] = new
  for name, n in pairs(by_name) do
    count_status(ns .. ':st:' .. stkind .. ':' .. name .. ':n', now, n)
  end
  redis.call('HSET', wmkey, 'o', top, 't', topts)
end
return new
