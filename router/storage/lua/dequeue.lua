-- dequeue: lease up to N pending tasks to a worker.
-- KEYS[1] Q:pending  KEYS[2] Q:active  KEYS[3] Q:msg  KEYS[4] Q:paused  KEYS[5] Q:seq  KEYS[6] Q:wake
-- KEYS[7] Q:lost  KEYS[8] Q:leased  KEYS[9] Q:stats  KEYS[10] Q:done  KEYS[11] Q:retry  KEYS[12] Q:scheduled
-- KEYS[13] Q:archived  KEYS[14] Q:completed  KEYS[15] Q:cancelreq  KEYS[16] Q:cancelled  KEYS[17] Q:waiters
-- ARGV[1] lease (ms)  ARGV[2] max tasks  ARGV[3] lost leases from which a task is leased alone (0: never)
-- Returns {notes, then per task: id, delivery token, envelope or nil, lost-lease count or nil}; notes is a flat
-- list of (what, detail) pairs the worker logs: ('duplicate', id) for a pending id that was already leased, or is
-- in another state (a second reference, dropped: the task runs once), ('seq_reset', new value) when the token
-- counter was not a non-negative number, ('cancelled', id) for a task cancelled while it ran whose lease a crash
-- returned to pending: it is leased like the others, but the worker must end it as cancelled (lua/cancelled.lua,
-- which also releases its unique lock and tells its waiters) instead of running it. Ending it here would leave
-- its "until finished" lock held, since this script cannot name that key; and a worker dying before it settles
-- leaves the request in Q:cancelreq, so the next dequeue asks again. KEYS[16] and KEYS[17] are not written.
-- Each task moves from pending to active as "<id>:<token>", scored by its lease deadline taken from Redis's own
-- clock (so hosts' clock skew cannot expire leases early), and Q:leased records its current token. When work is
-- left after this batch, the wake list is refilled so another idle worker wakes up too.
-- A task whose lease was lost ARGV[3] times or more may be killing its workers: it is leased alone (the batch ends
-- before it, or with it when it comes first; what was popped after goes back to the front of pending, in order).
if redis.call('EXISTS', KEYS[4]) == 1 then return {{}} end
local ids = redis.call('RPOP', KEYS[1], tonumber(ARGV[2]))
if not ids then return {{}} end
local now = redis.call('TIME')
local deadline = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) + tonumber(ARGV[1])
local notes = {}
local n = #ids
local last = redis.pcall('INCRBY', KEYS[5], n)
if type(last) == 'table' or last - n < 0 then
  -- The counter is corrupt (not a number, or negative). Restart it above every token issued so far: the current
  -- time in ms outgrows any counter of deliveries, so no "<id>:<token>" member can repeat.
  local base = now[1] .. string.format('%03d', math.floor(tonumber(now[2]) / 1000))
  redis.call('SET', KEYS[5], base)
  last = redis.call('INCRBY', KEYS[5], n)
  notes[#notes + 1] = 'seq_reset'
  notes[#notes + 1] = base
  redis.call('HINCRBY', KEYS[9], 'corrupt', 1)
end
local first = last - n
local out = {notes}
local duplicates = 0
local requests = redis.call('EXISTS', KEYS[15]) == 1
local solo_from = tonumber(ARGV[3]) or 0
local taken = 0
local rest = n + 1  -- the first popped id that goes back to pending
for i = 1, n do
  local id = ids[i]
  local lost = redis.call('HGET', KEYS[7], id)
  local alone = solo_from > 0 and tonumber(lost) and tonumber(lost) >= solo_from
  if alone and taken > 0 then
    rest = i
    break
  end
  local held = redis.call('HGET', KEYS[8], id)
  local dup = held and redis.call('ZSCORE', KEYS[2], id .. ':' .. held)
  local env = (not dup) and redis.call('HGET', KEYS[3], id)
  if not dup then
    -- A task in another state, or completed recently, is not pending: this reference is a stray copy.
    for _, key in ipairs({KEYS[11], KEYS[12], KEYS[13], KEYS[14]}) do
      if redis.call('ZSCORE', key, id) then dup = true break end
    end
    if not dup and not env and redis.call('ZSCORE', KEYS[10], id) then dup = true end
  end
  if dup then
    duplicates = duplicates + 1
    notes[#notes + 1] = 'duplicate'
    notes[#notes + 1] = id
  else
    if requests and env and redis.call('HEXISTS', KEYS[15], id) == 1 then
      notes[#notes + 1] = 'cancelled'
      notes[#notes + 1] = id
    end
    local token = string.format('%.0f', first + i)
    redis.call('ZADD', KEYS[2], deadline, id .. ':' .. token)
    redis.call('HSET', KEYS[8], id, token)
    out[#out + 1] = id
    out[#out + 1] = token
    out[#out + 1] = env
    out[#out + 1] = lost
    taken = taken + 1
    if alone then
      rest = i + 1
      break
    end
  end
end
for i = n, rest, -1 do redis.call('RPUSH', KEYS[1], ids[i]) end
if duplicates > 0 then redis.call('HINCRBY', KEYS[9], 'duplicate', duplicates) end
if redis.call('LLEN', KEYS[1]) > 0 and redis.call('LLEN', KEYS[6]) == 0 then
  redis.call('LPUSH', KEYS[6], '1')
end
return out
