-- A site's robots.txt Crawl-delay. ARGV: ns, domain, delay_ms (0 =
-- none). Kept a day past its last write (a worker's robots.txt cache
-- writes it again when it reads the file again).
local ds = ns .. ':ds:' .. ARGV[2]
local cd = tonumber(ARGV[3])
if cd > 0 then
  redis.call('HSET', ds, 'cd', cd)
  redis.call('PEXPIRE', ds, SITE_TTL)
else
  redis.call('HDEL', ds, 'cd', 'last')
end
return 1
