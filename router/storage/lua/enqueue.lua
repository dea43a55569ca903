-- enqueue: store a new task's message and make it pending (or scheduled, or a member of its group), unless its id
-- exists or, for a unique task, another task holds its lock.
-- KEYS[1] Q:msg  KEYS[2] Q:pending  KEYS[3] Q:wake  KEYS[4] Q:stats  KEYS[5] Q:done  KEYS[6] Q:scheduled
-- KEYS[7] Q:groups  KEYS[8] Q:groupstart, then the unique-lock and group keys the items name by index
-- ARGV    repeated quadruples: task id, envelope, run-at (ms since the epoch; 0 = now), options ('' for none):
--           'u <lock key index> <lock ms> <1 if until finished, else 0>'           a unique task's lock
--           'g <group key index> <grace ms> <max delay ms> <max size> <name>'        join a group
--         both kinds may be given, separated by '|'.
-- Returns a (code, detail) pair per item: 1 created; 2 the identical message was already stored, or this id holds
-- the lock (a repeated request: success); 0 the id is taken, by a stored task or by one completed recently
-- (conflict); 3 a unique task's lock is held by another task (detail: that task's id). Nothing is written for
-- codes 0, 2 and 3.
-- An "until finished" lock whose holder has no message any more is stale (an operator deleted the task, or its
-- message was lost: every end that keeps or drops the message releases the lock first), so it is taken over; a
-- "ttl" lock is kept whatever became of its holder: it means "at most one per window".
-- A group's flush time (Q:groups, Redis's clock) is the earliest of: its first member's arrival + max delay, the
-- last arrival + grace, or now once it holds max size members.
local out = {}
local created, pending, grouped = 0, 0, 0
local clock = nil
local function now_ms()
  if not clock then
    local t = redis.call('TIME')
    clock = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
  end
  return clock
end
for i = 1, #ARGV, 4 do
  local id, env, run_at, opts = ARGV[i], ARGV[i + 1], tonumber(ARGV[i + 2]), ARGV[i + 3]
  local lock_ki, lock_ms, until_finished = string.match(opts, 'u (%d+) (%d+) (%d)')
  local group_ki, grace, delay, size, name = string.match(opts, 'g (%d+) (%d+) (%d+) (%d+) ([^|]+)')
  local code, detail = nil, ''
  if redis.call('ZSCORE', KEYS[5], id) then
    code = 0
  elseif lock_ki and redis.call('HEXISTS', KEYS[1], id) == 0 then
    -- The lock first: a unique task is written only once it holds it.
    local lock = KEYS[tonumber(lock_ki)]
    if not redis.call('SET', lock, id, 'NX', 'PX', lock_ms) then
      local holder = redis.call('GET', lock)
      if holder == id then
        code = 2
      elseif until_finished == '1' and holder and redis.call('HEXISTS', KEYS[1], holder) == 0 then
        redis.call('SET', lock, id, 'PX', lock_ms)
      else
        code, detail = 3, holder or ''
      end
    end
  end
  if not code and redis.call('HSETNX', KEYS[1], id, env) == 0 then
    code = (redis.call('HGET', KEYS[1], id) == env) and 2 or 0
  end
  if not code then
    if group_ki then
      local n = redis.call('RPUSH', KEYS[tonumber(group_ki)], id)
      local now = now_ms()
      local first = tonumber(redis.call('HGET', KEYS[8], name))
      if n == 1 or not first then
        first = now
        redis.call('HSET', KEYS[8], name, now)
      end
      local at = math.min(first + tonumber(delay), now + tonumber(grace))
      if n >= tonumber(size) then at = 0 end
      redis.call('ZADD', KEYS[7], at, name)
      grouped = grouped + 1
    elseif run_at > 0 then
      redis.call('ZADD', KEYS[6], run_at, id)
    else
      redis.call('LPUSH', KEYS[2], id)
      pending = pending + 1
    end
    created = created + 1
    code = 1
  end
  out[#out + 1] = code
  out[#out + 1] = detail
end
if pending > 0 and redis.call('LLEN', KEYS[3]) == 0 then redis.call('LPUSH', KEYS[3], '1') end
if created > 0 then redis.call('HINCRBY', KEYS[4], 'enqueued', created) end
if grouped > 0 then redis.call('HINCRBY', KEYS[4], 'aggregating', grouped) end
return out
