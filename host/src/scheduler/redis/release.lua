-- Give one lease back: its request goes back to its queue, ready now.
-- ARGV: ns, lease. Returns 0 if the lease was already gone.
return requeue(ARGV[2], now_ms()) and 1 or 0
