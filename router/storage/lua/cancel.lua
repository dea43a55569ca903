-- cancel: end a task that has not started (pending, scheduled, retrying, aggregating) or ask its worker to stop it.
-- KEYS[1] Q:msg  KEYS[2] Q:pending  KEYS[3] Q:scheduled  KEYS[4] Q:retry  KEYS[5] Q:leased  KEYS[6] Q:cancelled
-- KEYS[7] Q:cancelreq  KEYS[8] Q:stats  KEYS[9] Q:archived  KEYS[10] Q:completed  KEYS[11] Q:done
-- KEYS[12] Q:waiters  KEYS[13] Q:groups  KEYS[14] Q:groupstart, then optionally the task's group list and its
-- unique lock (ARGV says which)
-- ARGV[1] task id  ARGV[2] now (ms)  ARGV[3] index of the group list in KEYS (0: none)  ARGV[4] group name
-- ARGV[5] index of the unique lock in KEYS (0: none)  ARGV[6] most cancelled tasks kept
-- ARGV[7] drop cancelled tasks older than this (ms)
-- A task that has not started moves to Q:cancelled (terminal; its message is kept, bounded like the archive); a
-- running one gets a request in Q:cancelreq that its worker acts on; a task a crash returned to pending is
-- cancelled at its next dequeue. Returns {outcome, state before}: outcome 'cancelled', 'requested',
-- 'already_cancelled', 'finished' (completed, archived or recently done) or 'unknown'.
local id, now = ARGV[1], ARGV[2]
if redis.call('ZSCORE', KEYS[6], id) then return {'already_cancelled', 'cancelled'} end
if redis.call('ZSCORE', KEYS[9], id) then return {'finished', 'archived'} end
if redis.call('ZSCORE', KEYS[10], id) then return {'finished', 'completed'} end
if redis.call('HEXISTS', KEYS[5], id) == 1 then
  redis.call('HSET', KEYS[7], id, now)
  return {'requested', 'active'}
end
local before = nil
if redis.call('ZREM', KEYS[3], id) == 1 then before = 'scheduled'
elseif redis.call('ZREM', KEYS[4], id) == 1 then before = 'retry'
else
  local group_ki = tonumber(ARGV[3])
  if group_ki > 0 and redis.call('LREM', KEYS[group_ki], 1, id) == 1 then
    before = 'aggregating'
    redis.call('HINCRBY', KEYS[8], 'aggregating', -1)
    if redis.call('LLEN', KEYS[group_ki]) == 0 then
      redis.call('ZREM', KEYS[13], ARGV[4])
      redis.call('HDEL', KEYS[14], ARGV[4])
    end
  elseif redis.call('HEXISTS', KEYS[1], id) == 1 and redis.call('LREM', KEYS[2], 1, id) == 1 then
    before = 'pending'
  end
end
if not before then
  if redis.call('ZSCORE', KEYS[11], id) then return {'finished', 'done'} end
  return {'unknown', 'unknown'}
end
redis.call('ZADD', KEYS[6], now, id)
redis.call('HDEL', KEYS[7], id)  -- a request left by a run that failed and was retried meanwhile
redis.call('HINCRBY', KEYS[8], 'cancelled', 1)
local lock_ki = tonumber(ARGV[5])
if lock_ki > 0 and redis.call('GET', KEYS[lock_ki]) == id then redis.call('DEL', KEYS[lock_ki]) end
if redis.call('HDEL', KEYS[12], id) == 1 then redis.call('PUBLISH', KEYS[12], id) end
local old = redis.call('ZRANGEBYSCORE', KEYS[6], '-inf', '(' .. ARGV[7], 'LIMIT', 0, 100)
local excess = redis.call('ZCARD', KEYS[6]) - #old - tonumber(ARGV[6])
if excess > 0 then
  local extra = redis.call('ZRANGE', KEYS[6], #old, #old + math.min(excess, 100) - 1)
  for _, x in ipairs(extra) do old[#old + 1] = x end
end
for _, x in ipairs(old) do
  redis.call('ZREM', KEYS[6], x)
  redis.call('HDEL', KEYS[1], x)
end
return {'cancelled', before}
