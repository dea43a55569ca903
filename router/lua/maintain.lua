-- maintain: recover expired leases and promote due retry and scheduled tasks; safe to run from many workers.
-- KEYS[1] Q:active  KEYS[2] Q:pending  KEYS[3] Q:retry  KEYS[4] Q:scheduled  KEYS[5] Q:lost  KEYS[6] Q:wake
-- KEYS[7] Q:stats
-- ARGV[1] now (ms)  ARGV[2] lease cutoff (ms; leases with a deadline before it are expired)  ARGV[3] batch limit
-- Expired leases go to the front of pending (they were next once already) with their lost-lease count raised;
-- due tasks go to the back. Returns {recovered, promoted, next due time in ms or -1}.
local now, cutoff, limit = ARGV[1], ARGV[2], tonumber(ARGV[3])
local recovered = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
for _, member in ipairs(recovered) do
  local id = string.match(member, '^(.*):%d+$')
  redis.call('ZREM', KEYS[1], member)
  redis.call('HINCRBY', KEYS[5], id, 1)
  redis.call('RPUSH', KEYS[2], id)
end
local promoted = 0
for _, key in ipairs({KEYS[3], KEYS[4]}) do
  local due = redis.call('ZRANGEBYSCORE', key, '-inf', now, 'LIMIT', 0, limit)
  for _, id in ipairs(due) do
    redis.call('ZREM', key, id)
    redis.call('LPUSH', KEYS[2], id)
  end
  promoted = promoted + #due
end
if #recovered + promoted > 0 then
  if redis.call('LLEN', KEYS[6]) == 0 then redis.call('LPUSH', KEYS[6], '1') end
  if #recovered > 0 then redis.call('HINCRBY', KEYS[7], 'recovered', #recovered) end
end
local next_due = -1
for _, key in ipairs({KEYS[1], KEYS[3], KEYS[4]}) do
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then
    local t = tonumber(first[2])
    if next_due < 0 or t < next_due then next_due = t end
  end
end
return {#recovered, promoted, tostring(next_due)}
