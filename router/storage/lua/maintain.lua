-- maintain: recover expired leases and promote due retry and scheduled tasks; safe to run from many workers.
-- KEYS[1] Q:active  KEYS[2] Q:pending  KEYS[3] Q:retry  KEYS[4] Q:scheduled  KEYS[5] Q:lost  KEYS[6] Q:wake
-- KEYS[7] Q:stats
-- ARGV[1] now (ms)  ARGV[2] lease cutoff (ms; leases with a deadline before it are expired)  ARGV[3] batch limit
-- Expired leases go to the front of pending (they were next once already) with their lost-lease count raised;
-- due tasks go to the back. Returns {recovered, promoted, next due time in ms or -1, pending count} (the count
-- lets idle workers notice work that no wake token announced, e.g. after a queue is unpaused).
-- An idle queue costs three ZRANGE calls: the range scans run only when the earliest entry is due.
local now, cutoff, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])

local function earliest(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return nil
end

local recovered = 0
local t = earliest(KEYS[1])
if t and t < cutoff then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[2], 'LIMIT', 0, limit)
  for _, member in ipairs(expired) do
    local id = string.match(member, '^(.*):%d+$')
    redis.call('ZREM', KEYS[1], member)
    redis.call('HINCRBY', KEYS[5], id, 1)
    redis.call('RPUSH', KEYS[2], id)
  end
  recovered = #expired
  t = earliest(KEYS[1])
end
local next_due = t or -1

local promoted = 0
for _, key in ipairs({KEYS[3], KEYS[4]}) do
  local d = earliest(key)
  if d and d <= now then
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[1], 'LIMIT', 0, limit)
    for _, id in ipairs(due) do
      redis.call('ZREM', key, id)
      redis.call('LPUSH', KEYS[2], id)
    end
    promoted = promoted + #due
    d = earliest(key)
  end
  if d and (next_due < 0 or d < next_due) then next_due = d end
end

if recovered + promoted > 0 then
  if redis.call('LLEN', KEYS[6]) == 0 then redis.call('LPUSH', KEYS[6], '1') end
  if recovered > 0 then redis.call('HINCRBY', KEYS[7], 'recovered', recovered) end
end
return {recovered, promoted, tostring(next_due), redis.call('LLEN', KEYS[2])}
