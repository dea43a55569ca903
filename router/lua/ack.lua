-- ack: complete tasks whose lease the caller still holds.
-- KEYS[1] Q:active  KEYS[2] Q:msg  KEYS[3] Q:lost  KEYS[4] Q:completed  KEYS[5] Q:stats
-- ARGV[1] now (ms), then triples: "<id>:<token>", retain-until (ms, 0 = delete now), envelope with result ('' if none)
-- Returns the members whose lease was no longer held (stale: another worker owns the task, or it was requeued).
-- Expired retained results are trimmed, at most 100 per call.
local now = tonumber(ARGV[1])
local stale = {}
local done = 0
for i = 2, #ARGV, 3 do
  local member = ARGV[i]
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local id = string.match(member, '^(.*):%d+$')
    redis.call('HDEL', KEYS[3], id)
    local keep = tonumber(ARGV[i + 1])
    if keep > now then
      redis.call('HSET', KEYS[2], id, ARGV[i + 2])
      redis.call('ZADD', KEYS[4], keep, id)
    else
      redis.call('HDEL', KEYS[2], id)
    end
    done = done + 1
  else
    stale[#stale + 1] = member
  end
end
if done > 0 then redis.call('HINCRBY', KEYS[5], 'processed', done) end
if #stale > 0 then redis.call('HINCRBY', KEYS[5], 'stale', #stale) end
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[4], id)
  redis.call('HDEL', KEYS[2], id)
end
return stale
