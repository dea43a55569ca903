-- requeue: give leased tasks back to the front of pending at once (graceful shutdown), without counting a failure.
-- KEYS[1] Q:active  KEYS[2] Q:pending  KEYS[3] Q:wake  KEYS[4] Q:stats  KEYS[5] Q:leased
-- ARGV    "<id>:<token>" members
-- Returns how many were requeued; members whose lease was no longer held are skipped.
local n = 0
for i = 1, #ARGV do
  if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
    local id = string.match(ARGV[i], '^(.*):%d+$')
    redis.call('HDEL', KEYS[5], id)
    redis.call('RPUSH', KEYS[2], id)
    n = n + 1
  end
end
if n > 0 then
  if redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], '1') end
  redis.call('HINCRBY', KEYS[4], 'requeued', n)
end
return n
