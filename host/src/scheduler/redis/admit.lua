-- Dedup and caps for all the links of one page, in one round trip.
-- ARGV: ns, cref, domain_cap ('' = none), global_cap ('' = none), then
-- (fingerprint, hex, domain, force) quads. Returns one 0/1 per candidate.
local cref = ARGV[2]
local dcap, gcap = tonumber(ARGV[3]), tonumber(ARGV[4])
local stopped = redis.call('SISMEMBER', ns .. ':stopped', cref) == 1
local out = {}
for i = 5, #ARGV, 4 do
  local ok = admit_one(cref, ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] == '1', dcap, gcap, stopped)
  out[#out + 1] = ok and 1 or 0
end
redis.call('ZADD', ns .. ':crawls', now_ms(), cref)
return out
