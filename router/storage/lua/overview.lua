-- overview: one queue at a glance, read in one step (read-only).
-- KEYS[1] Q:paused  KEYS[2] Q:msg  KEYS[3] Q:stats  KEYS[4] Q:pending
-- KEYS[5 .. 4+n] the key of each of the n states whose size is counted (ARGV[2 .. 1+n]: 'l' LIST, 'z' ZSET)
-- KEYS[5+n ..] per-minute counter hashes (Q:minutes:<hour>) to return whole
-- ARGV[1] n
-- Returns {paused since (ms) or false, envelope of the oldest pending task or false, stats as a flat list,
-- {size of each state}, {each counter hash as a flat list}}. Constant work per call: a queue of any length costs
-- the same (the history hashes hold at most 120 fields each).
local n = tonumber(ARGV[1])
local oldest = false
local id = redis.call('LINDEX', KEYS[4], -1)
if id then oldest = redis.call('HGET', KEYS[2], id) end
local sizes = {}
for i = 1, n do
  if ARGV[1 + i] == 'l' then
    sizes[i] = redis.call('LLEN', KEYS[4 + i])
  else
    sizes[i] = redis.call('ZCARD', KEYS[4 + i])
  end
end
local history = {}
for i = 5 + n, #KEYS do
  history[#history + 1] = redis.call('HGETALL', KEYS[i])
end
return {redis.call('GET', KEYS[1]), oldest, redis.call('HGETALL', KEYS[3]), sizes, history}
