-- A crawl's counts and its queued requests of one spider per domain:
-- O(crawl size). ARGV: ns, cref, owner, spider. Returns {queued (that
-- spider's), in_flight, crawled (the crawl's), then per domain: 'd',
-- domain, total, high, low, fetches open; after it, per origin of it with
-- a pace: 'o', origin, ms paused still, crawl delay ms, adaptive spacing
-- ms, learned rate in thousandths, slow-downs counted (0 = none)}; all
-- zero when another crawl owns cref. A domain record is padded to the
-- origins' seven values.
local cref, spider = ARGV[2], ARGV[4]
if not owned(cref, ARGV[3]) then return {0, 0, 0} end
local cc = redis.call('HMGET', ns .. ':cc:' .. cref, 'f', 'd')
local out = {0, tonumber(cc[1]) or 0, tonumber(cc[2]) or 0}
local by = {}
local jobs = redis.call('HGETALL', ns .. ':cj:' .. cref)
for i = 1, #jobs, 2 do
  if redis.call('SISMEMBER', ns .. ':cf:' .. cref, jobs[i]) == 0 then
    local job = cjson.decode(jobs[i + 1])
    if job.s == spider then
    out[1] = out[1] + 1
    local d = by[job.dm]
    if not d then d = {0, job.p, job.p}; by[job.dm] = d end
    d[1] = d[1] + 1
    if job.p > d[2] then d[2] = job.p end
    if job.p < d[3] then d[3] = job.p end
    end
  end
end
local now = now_ms()
for domain, d in pairs(by) do
  out[#out + 1] = 'd'
  out[#out + 1] = domain
  out[#out + 1] = d[1]
  out[#out + 1] = d[2]
  out[#out + 1] = d[3]
  out[#out + 1] = tonumber(redis.call('HGET', site_key(domain), 'fl')) or 0
  out[#out + 1] = 0
  for _, origin in ipairs(redis.call('SMEMBERS', ns .. ':do:' .. domain)) do
    local st = redis.call('HMGET', site_key(origin), 'p', 'cd', 'ad', 'rt', 'e')
    out[#out + 1] = 'o'
    out[#out + 1] = origin
    out[#out + 1] = math.max(0, (tonumber(st[1]) or 0) - now)
    out[#out + 1] = tonumber(st[2]) or 0
    out[#out + 1] = tonumber(st[3]) or 0
    -- The learned rate in thousandths (a script's numbers reach Redis as integers).
    out[#out + 1] = math.floor((tonumber(st[4]) or 0) * 1000)
    out[#out + 1] = tonumber(st[5]) or 0
  end
end
return out
