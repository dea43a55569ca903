-- archive: move a task to the dead letter with its reason, if the caller still holds its lease.
-- KEYS[1] Q:active  KEYS[2] Q:archived  KEYS[3] Q:msg  KEYS[4] Q:lost  KEYS[5] Q:stats  KEYS[6] Q:leased
-- KEYS[7] Q:waiters  KEYS[8] Q:cancelreq  KEYS[9] Q:minutes:<hour of now> (per-minute counters)
-- KEYS[10] the task's unique lock (optional)
-- ARGV[1] "<id>:<token>"  ARGV[2] now (ms)  ARGV[3] envelope with error and reason
-- ARGV[4] max archived tasks  ARGV[5] drop archived entries older than this (ms)
-- The archive is trimmed by age, then by size (oldest first), at most 100 entries per call, messages included. An
-- "until finished" unique lock the task still holds is released; a task someone waits for has its end published
-- (its id, on the channel named like the Q:waiters key).
-- Returns 1 when done, 0 when the lease was no longer held.
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
redis.call('HINCRBY', KEYS[5], 'archived', 1)
redis.call('HDEL', KEYS[8], id)
if redis.call('HINCRBY', KEYS[9], 'f:' .. math.floor(tonumber(ARGV[2]) / 60000), 1) == 1 then
  redis.call('EXPIRE', KEYS[9], 90000)
end
if KEYS[10] and redis.call('GET', KEYS[10]) == id then redis.call('DEL', KEYS[10]) end
if redis.call('HDEL', KEYS[7], id) == 1 then redis.call('PUBLISH', KEYS[7], id) end
local old = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5], 'LIMIT', 0, 100)
local excess = redis.call('ZCARD', KEYS[2]) - #old - tonumber(ARGV[4])
if excess > 0 then
  local extra = redis.call('ZRANGE', KEYS[2], #old, #old + math.min(excess, 100) - 1)
  for _, x in ipairs(extra) do old[#old + 1] = x end
end
for _, x in ipairs(old) do
  redis.call('ZREM', KEYS[2], x)
  redis.call('HDEL', KEYS[3], x)
end
return 1
