-- Stop a crawl: purge what it has queued, refuse its future children.
-- ARGV: ns, cref, owner, horizon ('' = purge everything; else only job ids
-- up to it, queued before the stop). Returns the number purged (0 when
-- another crawl owns cref: it is not this one to stop).
local cref = ARGV[2]
if not owned(cref, ARGV[3]) then return 0 end
redis.call('SADD', ns .. ':stopped', cref)
redis.call('ZREM', ns .. ':expires', cref)
return purge(cref, tonumber(ARGV[4]))
