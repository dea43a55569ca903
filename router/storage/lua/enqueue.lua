-- enqueue: store a new task's message and make it pending (or scheduled), unless its id exists.
-- KEYS[1] Q:msg  KEYS[2] Q:pending  KEYS[3] Q:wake  KEYS[4] Q:stats  KEYS[5] Q:done  KEYS[6] Q:scheduled
-- ARGV    repeated triples: task id, envelope, run-at (ms since the epoch; 0 = now)
-- Returns one integer per triple: 1 created, 2 the identical message was already stored (a repeated request:
-- success), 0 the id is taken, by a stored task or by one completed recently (conflict; nothing written).
local out = {}
local created, pending = 0, 0
for i = 1, #ARGV, 3 do
  local id, env, run_at = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2])
  if redis.call('ZSCORE', KEYS[5], id) then
    out[#out + 1] = 0
  elseif redis.call('HSETNX', KEYS[1], id, env) == 1 then
    if run_at > 0 then
      redis.call('ZADD', KEYS[6], run_at, id)
    else
      redis.call('LPUSH', KEYS[2], id)
      pending = pending + 1
    end
    created = created + 1
    out[#out + 1] = 1
  elseif redis.call('HGET', KEYS[1], id) == env then
    out[#out + 1] = 2
  else
    out[#out + 1] = 0
  end
end
if pending > 0 and redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], '1') end
if created > 0 then redis.call('HINCRBY', KEYS[4], 'enqueued', created) end
return out
