-- ack: complete tasks whose lease the caller still holds.
-- KEYS[1] Q:active  KEYS[2] Q:msg  KEYS[3] Q:lost  KEYS[4] Q:completed  KEYS[5] Q:stats  KEYS[6] Q:done
-- KEYS[7] Q:leased  KEYS[8] Q:waiters  KEYS[9] Q:cancelreq  KEYS[10] Q:minutes:<hour of now> (per-minute
-- counters), then the unique locks the items name by index
-- ARGV[1] now (ms)  ARGV[2] tombstone window (ms)  ARGV[3] tombstone cap
-- then quadruples: "<id>:<token>", retain-until (ms, 0 = delete now), envelope with result ('' if none), index
-- of the task's unique lock in KEYS (0: none), released if the task still holds it (an "until finished" lock).
-- Returns the members whose lease was no longer held (stale: another worker owns the task, or it was requeued).
-- A task not retained leaves a tombstone in Q:done (so a late repeat of its enqueue is refused), kept for the
-- window and at most the cap. Expired retained results are trimmed, at most 100 per call. A task someone waits
-- for (Q:waiters) has its end published, its id on the channel named like the Q:waiters key.
local now = tonumber(ARGV[1])
local stale = {}
local done = 0
local tombstones = {}
local requests = redis.call('EXISTS', KEYS[9]) == 1  -- a cancellation asked for a task that then completed
for i = 4, #ARGV, 4 do
  local member = ARGV[i]
  if redis.call('ZREM', KEYS[1], member) == 1 then
    local id = string.match(member, '^(.*):%d+$')
    redis.call('HDEL', KEYS[3], id)
    redis.call('HDEL', KEYS[7], id)
    if requests then redis.call('HDEL', KEYS[9], id) end
    local keep = tonumber(ARGV[i + 1])
    if keep > now then
      redis.call('HSET', KEYS[2], id, ARGV[i + 2])
      redis.call('ZADD', KEYS[4], keep, id)
    else
      redis.call('HDEL', KEYS[2], id)
      tombstones[#tombstones + 1] = now
      tombstones[#tombstones + 1] = id
    end
    local lock = tonumber(ARGV[i + 3])
    if lock > 0 and redis.call('GET', KEYS[lock]) == id then redis.call('DEL', KEYS[lock]) end
    if redis.call('HDEL', KEYS[8], id) == 1 then redis.call('PUBLISH', KEYS[8], id) end
    done = done + 1
  else
    stale[#stale + 1] = member
  end
end
if #tombstones > 0 then
  for j = 1, #tombstones, 1000 do  -- unpack in chunks: Lua's C stack takes a few thousand values at most
    redis.call('ZADD', KEYS[6], unpack(tombstones, j, math.min(j + 999, #tombstones)))
  end
  redis.call('ZREMRANGEBYSCORE', KEYS[6], '-inf', now - tonumber(ARGV[2]))
  redis.call('ZREMRANGEBYRANK', KEYS[6], 0, -tonumber(ARGV[3]) - 1)
end
if done > 0 then
  redis.call('HINCRBY', KEYS[5], 'processed', done)
  -- Per-minute history: one HINCRBY per call; the hash's expiry is set once per new minute.
  if redis.call('HINCRBY', KEYS[10], 'p:' .. math.floor(now / 60000), done) == done then
    redis.call('EXPIRE', KEYS[10], 90000)
  end
end
if #stale > 0 then redis.call('HINCRBY', KEYS[5], 'stale', #stale) end
local expired = redis.call('ZRANGEBYSCORE', KEYS[4], '-inf', now, 'LIMIT', 0, 100)
for _, id in ipairs(expired) do
  redis.call('ZREM', KEYS[4], id)
  redis.call('HDEL', KEYS[2], id)
end
return stale
