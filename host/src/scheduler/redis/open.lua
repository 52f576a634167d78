-- A crawl's requests queued (waiting retries too) and in flight on this
-- shard. ARGV: ns, cref.
local cc = ns .. ':cc:' .. ARGV[2]
local q = tonumber(redis.call('HGET', cc, 'q')) or 0
local f = tonumber(redis.call('HGET', cc, 'f')) or 0
return q + f
