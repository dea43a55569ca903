-- quarantine: archive entries the sweep or the maintenance found corrupt, with the envelopes a worker built.
-- KEYS[1] Q:quarantine  KEYS[2] Q:msg  KEYS[3] Q:archived  KEYS[4] Q:stats  KEYS[5] Q:leased  KEYS[6] Q:pending
-- KEYS[7] Q:scheduled  KEYS[8] Q:retry  KEYS[9] Q:completed  KEYS[10] Q:lost  KEYS[11] Q:cancelled
-- KEYS[12] Q:waiters, then the unique locks the items name by index
-- ARGV[1] now (ms), then quadruples: quarantine entry, id to archive under, envelope (with reason and details),
-- index of the task's "until finished" unique lock in KEYS (0: none)
-- An entry is archived only if it is still waiting in Q:quarantine (another worker may have done it), an orphaned
-- message only if still nothing references it, a missing one only if it is still missing. An archived task ends
-- like any other: the unique lock it holds is released (an orphan would otherwise keep it for all of unique_s) and
-- a client waiting for it is told. Returns how many entries were archived.
local now = ARGV[1]
local archived = 0

local function referenced(id)
  if redis.call('HEXISTS', KEYS[5], id) == 1 then return true end
  for _, key in ipairs({KEYS[7], KEYS[8], KEYS[3], KEYS[9], KEYS[11]}) do
    if redis.call('ZSCORE', key, id) then return true end
  end
  return redis.call('LPOS', KEYS[6], id) ~= false
end

for i = 2, #ARGV, 4 do
  local entry, id, env, lock = ARGV[i], ARGV[i + 1], ARGV[i + 2], tonumber(ARGV[i + 3])
  if redis.call('LREM', KEYS[1], 1, entry) == 1 then
    local orphan = string.sub(entry, 1, 7) == 'orphan\0'
    local missing = string.sub(entry, 1, 8) == 'missing\0'
    if not ((orphan and referenced(id)) or (missing and redis.call('HEXISTS', KEYS[2], id) == 1)) then
      redis.call('HSET', KEYS[2], id, env)
      redis.call('ZADD', KEYS[3], now, id)
      if orphan then redis.call('HDEL', KEYS[10], id) end
      if lock and lock > 0 and redis.call('GET', KEYS[lock]) == id then redis.call('DEL', KEYS[lock]) end
      if redis.call('HDEL', KEYS[12], id) == 1 then redis.call('PUBLISH', KEYS[12], id) end
      archived = archived + 1
    end
  end
end
if archived > 0 then redis.call('HINCRBY', KEYS[4], 'archived', archived) end
return archived
