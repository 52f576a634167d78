-- A crawl submitted again, on a shard other than its seed's (sharded
-- frontiers): where the shard holds the crawl, its spec is replaced and
-- its version bumped, so workers read the new one. ARGV: ns, then (cref,
-- owner, spec) triples. Returns how many shards' copies changed.
local n = 0
for i = 2, #ARGV, 3 do
  local cref = ARGV[i]
  local speckey = ns .. ':spec:' .. cref
  if owned(cref, ARGV[i + 1]) and redis.call('EXISTS', speckey) == 1 then
    redis.call('SET', speckey, ARGV[i + 2])
    redis.call('HINCRBY', ns .. ':cc:' .. cref, 'v', 1)
    n = n + 1
  end
end
return n
