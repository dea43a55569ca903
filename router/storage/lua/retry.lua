-- retry: a delivery failed; schedule the task to run again, if the caller still holds its lease.
-- KEYS[1] Q:active  KEYS[2] Q:retry  KEYS[3] Q:msg  KEYS[4] Q:lost  KEYS[5] Q:stats  KEYS[6] Q:leased
-- KEYS[7] Q:minutes:<hour of now> (per-minute counters)
-- ARGV[1] "<id>:<token>"  ARGV[2] retry at (ms)  ARGV[3] envelope recording the failure  ARGV[4] now (ms)
-- Returns 1 when done, 0 when the lease was no longer held (nothing changed).
if redis.call('ZREM', KEYS[1], ARGV[1]) == 0 then
  redis.call('HINCRBY', KEYS[5], 'stale', 1)
  return 0
end
local id = string.match(ARGV[1], '^(.*):%d+$')
redis.call('HSET', KEYS[3], id, ARGV[3])
redis.call('HDEL', KEYS[4], id)
redis.call('HDEL', KEYS[6], id)
redis.call('ZADD', KEYS[2], ARGV[2], id)
redis.call('HINCRBY', KEYS[5], 'failed', 1)
redis.call('HINCRBY', KEYS[5], 'retried', 1)
if redis.call('HINCRBY', KEYS[7], 'f:' .. math.floor(tonumber(ARGV[4]) / 60000), 1) == 1 then
  redis.call('EXPIRE', KEYS[7], 90000)
end
return 1
