-- A new run of the crawl fires: its seen buckets, page counts per domain
-- and seed are forgotten on this shard, so the run reads every page again,
-- and its figures start from nothing. (Queued and in-flight counts, the
-- spec, its owner and the pages a revisited crawl keeps stay.)
-- ARGV: ns, cref, owner. Returns fields dropped; -1 if another crawl owns
-- the key.
local cref, owner = ARGV[2], ARGV[3]
if not owned(cref, owner) then return -1 end
local cc = ns .. ':cc:' .. cref
redis.call('DEL', ns .. ':rf:' .. cref)
local dropped = 0
for _, f in ipairs(redis.call('HKEYS', cc)) do
  local kind = string.sub(f, 1, 2)
  if kind == 'b:' then redis.call('DEL', ns .. ':s:' .. cref .. ':' .. string.sub(f, 3)) end
  if kind == 'b:' or kind == 'c:' or f == 'seed' then
    redis.call('HDEL', cc, f)
    dropped = dropped + 1
  end
end
return dropped
