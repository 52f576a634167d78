-- Dedup and caps for all the links of one page, in one round trip.
-- ARGV: ns, cref, domain_cap ('' = none), global_cap ('' = none), then
-- (fingerprint, hex, domain, force) quads. Returns one 0/1 per candidate.
--
-- Seen fingerprints (signed 64-bit integers, so Redis stores them as
-- intsets: 8 bytes each) live in a trie of small sets: level L holds
-- 16^L buckets named by the fingerprint's first L hex digits. A bucket
-- takes members until it has CAP; then its fingerprints' path goes on one
-- level down. A lookup walks the path until a bucket that is not full.
local CAP = 500
local cref = ARGV[2]
local dcap, gcap = tonumber(ARGV[3]), tonumber(ARGV[4])
local prefix = ns .. ':s:' .. cref .. ':'
local stopped = redis.call('SISMEMBER', ns .. ':stopped', cref) == 1

-- Returns true if seen; otherwise marks it seen (when mark) and returns false.
local function seen(fp, hex, mark)
  for level = 1, 16 do
    local key = prefix .. string.sub(hex, 1, level)
    if redis.call('SISMEMBER', key, fp) == 1 then return true end
    local n = redis.call('SCARD', key)
    if n < CAP then
      if mark then
        redis.call('SADD', key, fp)
        if n == 0 then redis.call('SADD', ns .. ':sb:' .. cref, key) end
      end
      return false
    end
  end
  return false
end

local out = {}
for i = 5, #ARGV, 4 do
  local fp, hex, domain, force = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3] == '1'
  local ok = true
  if stopped and not force then ok = false end
  if ok and not force and seen(fp, hex, false) then ok = false end
  if ok and dcap and (tonumber(redis.call('HGET', ns .. ':cap:' .. cref, domain)) or 0) >= dcap then ok = false end
  if ok and gcap and (tonumber(redis.call('HGET', ns .. ':gcap', domain)) or 0) >= gcap then ok = false end
  if ok then
    seen(fp, hex, true)
    redis.call('HINCRBY', ns .. ':cap:' .. cref, domain, 1)
    if gcap then redis.call('HINCRBY', ns .. ':gcap', domain, 1) end
  end
  out[#out + 1] = ok and 1 or 0
end
redis.call('ZADD', ns .. ':crawls', now_ms(), cref)
return out
