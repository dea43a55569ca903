-- extend: push the lease deadline of running tasks forward, only for leases the caller still holds.
-- KEYS[1] Q:active
-- ARGV[1] lease (ms), then "<id>:<token>" members
-- The new deadline is Redis's own time plus the lease (see dequeue.lua).
-- Returns the members that were no longer held (their lease was lost: the task is someone else's now).
local now = redis.call('TIME')
local deadline = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local lost = {}
for i = 2, #ARGV do
  if redis.call('ZSCORE', KEYS[1], ARGV[i]) then
    redis.call('ZADD', KEYS[1], 'XX', deadline, ARGV[i])
  else
    lost[#lost + 1] = ARGV[i]
  end
end
return lost
