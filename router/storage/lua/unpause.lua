-- unpause: let workers lease this queue's tasks again, and wake an idle one at once.
-- KEYS[1] Q:paused  KEYS[2] Q:pending  KEYS[3] Q:wake
-- Idle workers block on Q:wake (see worker/waker.py); the token pushed here, as enqueue.lua pushes one, makes one
-- of them fetch immediately (dequeue.lua refills the token while work is left, so the others follow).
-- Returns 1 when the queue was paused, 0 when it was not (nothing changed).
if redis.call('DEL', KEYS[1]) == 0 then return 0 end
if redis.call('LLEN', KEYS[2]) > 0 and redis.call('LLEN', KEYS[3]) == 0 then
  redis.call('LPUSH', KEYS[3], '1')
end
return 1
