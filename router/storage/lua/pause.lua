-- pause: stop workers from leasing this queue's tasks (dequeue.lua returns nothing while Q:paused exists).
-- Tasks already running finish; producers still enqueue.
-- KEYS[1] Q:paused
-- ARGV[1] now (ms): stored as the time the queue was paused
-- Returns 1 when the queue is paused now, 0 when it already was (the first pause time is kept).
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then return 1 end
return 0
