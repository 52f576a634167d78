-- Dedup and caps for all the links of one page, in one round trip.
-- ARGV: ns, cref, owner, domain_cap ('' = none), global_cap ('' = none),
-- then (fingerprint, hex, domain, force) quads. Returns one 0/1 per
-- candidate (all 0 if another crawl owns cref).
local cref = ARGV[2]
local dcap, gcap = tonumber(ARGV[4]), tonumber(ARGV[5])
-- Another crawl's state: admit nothing, as for a stopped crawl.
local stopped = not owned(cref, ARGV[3]) or redis.call('SISMEMBER', ns .. ':stopped', cref) == 1
local out = {}
for i = 6, #ARGV, 4 do
  local ok = admit_one(cref, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] == '1', dcap, gcap, stopped)
  out[#out + 1] = ok and 1 or 0
end
redis.call('ZADD', ns .. ':crawls', now_ms(), cref)
return out
