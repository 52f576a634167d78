-- Stop a crawl: purge what it has queued, refuse its future children.
-- ARGV: ns, cref, horizon ('' = purge everything; else only job ids up to
-- it, queued before the stop). Returns the number purged.
local cref = ARGV[2]
redis.call('SADD', ns .. ':stopped', cref)
redis.call('ZREM', ns .. ':expires', cref)
return purge(cref, tonumber(ARGV[3]))
