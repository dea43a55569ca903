-- delete: an operator removes tasks that are not running: pending, scheduled, retry, archived, completed or
-- cancelled.
-- KEYS[1] Q:pending  KEYS[2] Q:scheduled  KEYS[3] Q:retry  KEYS[4] Q:archived  KEYS[5] Q:completed
-- KEYS[6] Q:msg  KEYS[7] Q:lost  KEYS[8] Q:leased  KEYS[9] Q:stats  KEYS[10] Q:cancelled  KEYS[11] Q:waiters
-- ARGV[1] 'ids' or 'batch'  ARGV[2] the state ('*' with 'ids': whichever holds the id)
-- 'ids': ARGV[3..] task ids. Each is removed from the state that holds it; a running task (leased) is refused:
--   cancel it instead. Deleting one pending id searches the list (LREM, linear in its length).
-- 'batch': ARGV[3] n. Removes up to n tasks of the state (the oldest pending ones, the lowest-scored of a set),
--   so "delete all" proceeds in bounded calls.
-- A task's message goes with it, unless the id is still referenced elsewhere (a stray second pending reference
-- to a task that is running or in another state only loses that reference). Clients waiting for a deleted task are
-- told (they then find it gone). Its "until finished" unique lock, if any, is left to the next enqueue of the same
-- key, which takes over a lock whose holder has no message (enqueue.lua): this script cannot name the lock key.
-- Returns {deleted count, then per id (mode 'ids') the state it was deleted from, 'active', or ''}.
local zsets = {scheduled = KEYS[2], retry = KEYS[3], archived = KEYS[4], completed = KEYS[5], cancelled = KEYS[10]}
local mode, state = ARGV[1], ARGV[2]
local deleted = 0
local out = {0}

local function elsewhere(id)
  if redis.call('HEXISTS', KEYS[8], id) == 1 then return true end
  for _, key in pairs(zsets) do
    if redis.call('ZSCORE', key, id) then return true end
  end
  return false
end

local function forget(id)
  redis.call('HDEL', KEYS[6], id)
  redis.call('HDEL', KEYS[7], id)
  if redis.call('HDEL', KEYS[11], id) == 1 then redis.call('PUBLISH', KEYS[11], id) end
end

if mode == 'batch' then
  local n = tonumber(ARGV[3])
  if state == 'pending' then
    local ids = redis.call('RPOP', KEYS[1], n) or {}
    for _, id in ipairs(ids) do
      if not elsewhere(id) then forget(id) end
      deleted = deleted + 1
    end
  elseif zsets[state] then
    local ids = redis.call('ZRANGE', zsets[state], 0, n - 1)
    for _, id in ipairs(ids) do
      redis.call('ZREM', zsets[state], id)
      forget(id)
      deleted = deleted + 1
    end
  else
    return redis.error_reply('delete: no such state ' .. state)
  end
else
  local order = {'scheduled', 'retry', 'archived', 'completed', 'cancelled', 'pending'}
  if state ~= '*' then order = {state} end
  for i = 3, #ARGV do
    local id = ARGV[i]
    local from = ''
    if redis.call('HEXISTS', KEYS[8], id) == 1 then
      from = 'active'
    else
      for _, s in ipairs(order) do
        if s == 'pending' then
          if redis.call('LREM', KEYS[1], 0, id) > 0 then from = s break end
        elseif zsets[s] and redis.call('ZREM', zsets[s], id) == 1 then
          from = s
          break
        end
      end
      if from ~= '' then
        if not elsewhere(id) then forget(id) end
        deleted = deleted + 1
      end
    end
    out[#out + 1] = from
  end
end
if deleted > 0 then redis.call('HINCRBY', KEYS[9], 'deleted', deleted) end
out[1] = deleted
return out
