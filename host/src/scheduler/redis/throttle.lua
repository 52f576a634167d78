-- Take a throttle slot outside a pop (redirect hops, robots.txt).
-- ARGV: ns, hits, window_ms, moderated, throttle prefix, split_by_spider,
-- spider, domain. Returns 0 (go, recorded) or milliseconds to wait.
return throttle(ARGV[7], ARGV[8], now_ms(), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4] == '1', ARGV[5], ARGV[6] == '1')
