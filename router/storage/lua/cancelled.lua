-- cancelled: settle a delivery whose handler was stopped (or ended) after someone cancelled it, if the caller
-- still holds its lease.
-- KEYS[1] Q:active  KEYS[2] Q:cancelled  KEYS[3] Q:msg  KEYS[4] Q:lost  KEYS[5] Q:stats  KEYS[6] Q:leased
-- KEYS[7] Q:cancelreq  KEYS[8] Q:waiters  KEYS[9] the task's unique lock (optional)
-- ARGV[1] "<id>:<token>"  ARGV[2] now (ms)  ARGV[3] envelope (recording the cancellation)
-- Returns 1 when done, 0 when the lease was no longer held.
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  redis.call('HINCRBY', KEYS[5], 'stale', 1)
  return 0
end
local id = string.match(ARGV[1], '^(.*):%d+$')
redis.call('HSET', KEYS[3], id, ARGV[3])
redis.call('HDEL', KEYS[4], id)
redis.call('HDEL', KEYS[6], id)
redis.call('HDEL', KEYS[7], id)
redis.call('ZADD', KEYS[2], ARGV[2], id)
redis.call('HINCRBY', KEYS[5], 'cancelled', 1)
if KEYS[9] and redis.call('GET', KEYS[9]) == id then redis.call('DEL', KEYS[9]) end
if redis.call('HDEL', KEYS[8], id) == 1 then redis.call('PUBLISH', KEYS[8], id) end
return 1
