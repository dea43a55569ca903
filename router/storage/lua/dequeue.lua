-- dequeue: lease up to N pending tasks to a worker.
-- KEYS[1] Q:pending  KEYS[2] Q:active  KEYS[3] Q:msg  KEYS[4] Q:paused  KEYS[5] Q:seq  KEYS[6] Q:wake
-- KEYS[7] Q:lost
-- ARGV[1] lease deadline (ms)  ARGV[2] max tasks
-- Returns a flat array of (task id, delivery token, envelope or nil, lost-lease count or nil) per task.
-- Each task moves from pending to active with a fresh token in the member "<id>:<token>". When work is
-- left after this batch, the wake list is refilled so another idle worker wakes up too.
if redis.call('EXISTS', KEYS[4]) == 1 then return {} end
local ids = redis.call('RPOP', KEYS[1], tonumber(ARGV[2]))
if not ids then return {} end
local n = #ids
local first = redis.call('INCRBY', KEYS[5], n) - n
local out = {}
for i = 1, n do
  local id = ids[i]
  local token = first + i
  redis.call('ZADD', KEYS[2], ARGV[1], id .. ':' .. token)
  out[#out + 1] = id
  out[#out + 1] = token
  out[#out + 1] = redis.call('HGET', KEYS[3], id)
  out[#out + 1] = redis.call('HGET', KEYS[7], id)
end
if redis.call('LLEN', KEYS[1]) > 0 and redis.call('LLEN', KEYS[6]) == 0 then
  redis.call('LPUSH', KEYS[6], '1')
end
return out
