-- An origin's robots.txt Crawl-delay. ARGV: ns, domain, origin, delay_ms
-- (0 = none). Kept a day past its last write (a worker's robots.txt cache
-- writes it again when it reads the file again).
local ok = site_key(ARGV[3])
local cd = tonumber(ARGV[4])
if cd > 0 then
  redis.call('HSET', ok, 'cd', cd)
  redis.call('PEXPIRE', ok, SITE_TTL)
  site_known(ARGV[2], ARGV[3])
else
  redis.call('HDEL', ok, 'cd', 'last')
end
return 1
