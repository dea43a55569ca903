-- cron_fire: claim fires of one cron entry and enqueue the task of each fire claimed, in one atomic step.
-- KEYS[1] Q:cron:<entry>  KEYS[2] Q:msg  KEYS[3] Q:pending  KEYS[4] Q:wake  KEYS[5] Q:stats  KEYS[6] Q:done
-- ARGV[1] how long the claim is kept (ms), then triples: fire time (ms), task id, envelope; ascending fire times.
-- The claim is the entry's high-water mark: the latest fire time any scheduler replica claimed. A fire at or before
-- it was enqueued already, by this replica or another, or dropped on purpose by a catch-up policy: it is refused,
-- however long ago it happened (a task id alone would not do: completed-task tombstones expire after minutes).
-- Returns one integer per triple: 1 claimed and enqueued, 0 already claimed (nothing written), 2 claimed but the
-- task id is taken by a stored task or a recent tombstone (nothing enqueued; the claim stands so no replica
-- retries it).
local mark = tonumber(redis.call('GET', KEYS[1])) or -1  -- absent (false) or not a number: no claim yet
local mark_text = nil
local out = {}
local enqueued = 0
for i = 2, #ARGV, 3 do
  local fire, id, env = tonumber(ARGV[i]), ARGV[i + 1], ARGV[i + 2]
  if fire <= mark then
    out[#out + 1] = 0
  else
    mark, mark_text = fire, ARGV[i]
    if redis.call('ZSCORE', KEYS[6], id) or redis.call('HSETNX', KEYS[2], id, env) == 0 then
      out[#out + 1] = 2
    else
      redis.call('LPUSH', KEYS[3], id)
      enqueued = enqueued + 1
      out[#out + 1] = 1
    end
  end
end
if mark_text then redis.call('SET', KEYS[1], mark_text, 'PX', ARGV[1]) end
if enqueued > 0 then
  if redis.call('LLEN', KEYS[4]) == 0 then redis.call('LPUSH', KEYS[4], '1') end
  redis.call('HINCRBY', KEYS[5], 'enqueued', enqueued)
end
return out
