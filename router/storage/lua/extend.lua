-- extend: push the lease deadline of running tasks forward, only for leases the caller still holds.
-- KEYS[1] Q:active
-- ARGV[1] new deadline (ms), then "<id>:<token>" members
-- Returns the members that were no longer held (their lease was lost: the task is someone else's now).
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', ARGV[1], ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
