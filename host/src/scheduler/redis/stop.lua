-- Stop a crawl: purge what it has queued, refuse its future children.
-- ARGV: ns, cref. Returns the number purged.
local cref = ARGV[2]
redis.call('SADD', ns .. ':stopped', cref)
redis.call('ZREM', ns .. ':expires', cref)
return purge(cref)
