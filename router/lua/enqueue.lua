-- enqueue: store a new task's message and make it pending, unless its id exists.
-- KEYS[1] Q:msg  KEYS[2] Q:pending  KEYS[3] Q:wake  KEYS[4] Q:stats  KEYS[5] Q:done
-- ARGV    repeated pairs: task id, envelope
-- Returns one integer per pair: 1 created, 2 the identical message was already stored (a repeated request:
-- success), 0 the id is taken, by a stored task or by one completed recently (conflict; nothing written).
local out = {}
local created = 0
for i = 1, #ARGV, 2 do
  local id, env = ARGV[i], ARGV[i + 1]
  if redis.call('ZSCORE', KEYS[5], id) then
    out[#out + 1] = 0
  elseif redis.call('HSETNX', KEYS[1], id, env) == 1 then
    redis.call('LPUSH', KEYS[2], id)
    created = created + 1
    out[#out + 1] = 1
  elseif redis.call('HGET', KEYS[1], id) == env then
    out[#out + 1] = 2
  else
    out[#out + 1] = 0
  end
end
if created > 0 then
  if redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], '1') end
  redis.call('HINCRBY', KEYS[4], 'enqueued', created)
end
return out
