-- run: an operator makes archived, retry or scheduled tasks pending now.
-- KEYS[1] Q:archived  KEYS[2] Q:retry  KEYS[3] Q:scheduled  KEYS[4] Q:pending  KEYS[5] Q:msg  KEYS[6] Q:wake
-- KEYS[7] Q:stats  KEYS[8] Q:lost
-- ARGV[1] the state to take tasks from ('archived', 'retry' or 'scheduled'), or '*' for any of the three
-- then pairs: task id, envelope to store if the task comes from the archive ('' keeps the stored one; the
-- caller rewrites an archived envelope so the task gets a fresh set of retries and loses its archive reason)
-- A task moves only from a state it is in (checked here, atomically): an id that is pending, running, finished
-- or unknown is left alone. Moved tasks join the back of pending, as due retries do, and wake an idle worker.
-- Work per call is bounded by the caller's batch. Returns, per id, the state it was taken from, or '' if none.
local sources = {archived = KEYS[1], retry = KEYS[2], scheduled = KEYS[3]}
local order = {'archived', 'retry', 'scheduled'}
if ARGV[1] ~= '*' then order = {ARGV[1]} end
local out = {}
local moved = 0
for i = 2, #ARGV, 2 do
  local id, env = ARGV[i], ARGV[i + 1]
  local from = ''
  for _, state in ipairs(order) do
    if sources[state] and redis.call('ZREM', sources[state], id) == 1 then
      from = state
      break
    end
  end
  if from ~= '' then
    if from == 'archived' then
      redis.call('HDEL', KEYS[8], id)
      if env ~= '' and redis.call('HEXISTS', KEYS[5], id) == 1 then redis.call('HSET', KEYS[5], id, env) end
    end
    redis.call('LPUSH', KEYS[4], id)
    moved = moved + 1
  end
  out[#out + 1] = from
end
if moved > 0 then
  if redis.call('LLEN', KEYS[6]) == 0 then redis.call('LPUSH', KEYS[6], '1') end
  redis.call('HINCRBY', KEYS[7], 'run', moved)
end
return out
