-- Add a worker's tally of statuses to the stats windows. ARGV: ns, then
-- pairs of counter key (after `<ns>:st:`) and count.
local now = now_ms()
for i = 2, #ARGV, 2 do
  count_status(ns .. ':st:' .. ARGV[i], now, tonumber(ARGV[i + 1]))
end
return 0
