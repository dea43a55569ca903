-- flush: replace the oldest members of an aggregation group by the one task that gets their payloads.
-- KEYS[1] Q:group:<g>  KEYS[2] Q:msg  KEYS[3] Q:pending  KEYS[4] Q:wake  KEYS[5] Q:stats  KEYS[6] Q:groups
-- KEYS[7] Q:groupstart  KEYS[8] Q:archived  KEYS[9] Q:done  KEYS[10] Q:waiters
-- ARGV[1] group name  ARGV[2] n (members consumed)  ARGV[3] aggregate task id ('' when every member was archived)
-- ARGV[4] aggregate envelope  ARGV[5] now (ms)  ARGV[6] ms until the rest of the group is due (if members remain)
-- ARGV[7] max size  then the n member ids (as read, oldest first), then (id, envelope) pairs of members archived
-- instead (their messages were unreadable or gone, or their type no longer aggregates; counted as archived)
-- The step is atomic and checks that the group still starts with exactly those n members (another worker may have
-- flushed it meanwhile: then nothing changes and 0 is returned), so a worker dying around a flush loses no member
-- and duplicates none. An aggregated member ends as done (its tombstone in Q:done; its work is the aggregate's);
-- clients waiting for a member are told. Returns 1 when flushed.
local n = tonumber(ARGV[2])
local head = redis.call('LRANGE', KEYS[1], 0, n - 1)
if #head ~= n then return 0 end
for i = 1, n do
  if head[i] ~= ARGV[7 + i] then return 0 end
end
redis.call('LTRIM', KEYS[1], n, -1)
local archived, dead = {}, 0
for i = 8 + n, #ARGV, 2 do
  archived[ARGV[i]] = true
  redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1])
  redis.call('ZADD', KEYS[8], ARGV[5], ARGV[i])
  dead = dead + 1
end
if dead > 0 then redis.call('HINCRBY', KEYS[5], 'archived', dead) end
for i = 1, n do
  local id = head[i]
  if not archived[id] then
    redis.call('HDEL', KEYS[2], id)
    redis.call('ZADD', KEYS[9], ARGV[5], id)
  end
  if redis.call('HDEL', KEYS[10], id) == 1 then redis.call('PUBLISH', KEYS[10], id) end
end
if n > 0 then redis.call('HINCRBY', KEYS[5], 'aggregating', -n) end  -- '-0' is not an integer to Redis
if ARGV[3] ~= '' and redis.call('HSETNX', KEYS[2], ARGV[3], ARGV[4]) == 1 then
  redis.call('LPUSH', KEYS[3], ARGV[3])
  if redis.call('LLEN', KEYS[4]) == 0 then redis.call('LPUSH', KEYS[4], '1') end
  redis.call('HINCRBY', KEYS[5], 'enqueued', 1)
end
local left = redis.call('LLEN', KEYS[1])
if left == 0 then
  redis.call('ZREM', KEYS[6], ARGV[1])
  redis.call('HDEL', KEYS[7], ARGV[1])
else
  local t = redis.call('TIME')
  local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  redis.call('HSET', KEYS[7], ARGV[1], now)  -- the remaining members' wait counts from now
  local at = now + tonumber(ARGV[6])
  if left >= tonumber(ARGV[7]) then at = 0 end
  redis.call('ZADD', KEYS[6], at, ARGV[1])
end
return 1
