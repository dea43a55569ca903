-- sweep: check a bounded slice of a queue's structures for corruption; a queue heals itself instead of stopping.
-- KEYS[1] Q:msg  KEYS[2] Q:pending  KEYS[3] Q:active  KEYS[4] Q:scheduled  KEYS[5] Q:retry  KEYS[6] Q:archived
-- KEYS[7] Q:completed  KEYS[8] Q:leased  KEYS[9] Q:lost  KEYS[10] Q:quarantine  KEYS[11] Q:sweep  KEYS[12] Q:stats
-- KEYS[13] Q:cancelled
-- ARGV[1] entries per structure (a SCAN COUNT hint)  ARGV[2] search pending for references only up to this length
-- ARGV[3] '1' to start a new pass (cursors back to 0)
-- Each call advances a cursor (kept in Q:sweep) through active, scheduled, retry, Q:leased, and, while pending is
-- short enough to search, Q:msg and Q:lost. What it finds goes to Q:quarantine, where a worker archives it with
-- reason 'corrupt' or 'orphan' (nothing is dropped silently):
--   'member\0<member>'          an active member that is not "<id>:<token>" with the token Q:leased records
--   'missing\0<zset>\0<id>'     a scheduled or retry id whose message is gone
--   'orphan\0<id>'              a message that no structure references (a message naming a group ("g") belongs to
--                               an aggregating member, whose group list is not scanned: it counts as referenced)
-- Stale bookkeeping (a Q:leased entry without its active member, a lost-lease counter of an unreferenced id) is
-- deleted and counted (stats 'stale_bookkeeping').
-- Returns {names of the structures whose cursor completed a pass in this call, names of the structures scanned,
-- quarantine length}.
local count, pending_max = tonumber(ARGV[1]), tonumber(ARGV[2])
if ARGV[3] == '1' then redis.call('DEL', KEYS[11]) end
local found, stale, wrapped, scanned = 0, 0, {}, {}

local function quarantine(entry)
  if not redis.call('LPOS', KEYS[10], entry) then
    redis.call('RPUSH', KEYS[10], entry)
    found = found + 1
  end
end

local function scan(field, cmd, key)
  local cursor = redis.call('HGET', KEYS[11], field) or '0'
  local reply = redis.call(cmd, key, cursor, 'COUNT', count)
  redis.call('HSET', KEYS[11], field, reply[1])
  scanned[#scanned + 1] = field
  if reply[1] == '0' then wrapped[#wrapped + 1] = field end
  return reply[2]
end

local function aggregating(id)
  local ok, doc = pcall(cjson.decode, redis.call('HGET', KEYS[1], id) or '')
  return ok and type(doc) == 'table' and type(doc.g) == 'string'
end

local function referenced(id)
  if redis.call('HEXISTS', KEYS[8], id) == 1 then return true end
  for _, key in ipairs({KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[13]}) do
    if redis.call('ZSCORE', key, id) then return true end
  end
  return redis.call('LPOS', KEYS[2], id) ~= false
end

local members = scan('active', 'ZSCAN', KEYS[3])
for i = 1, #members, 2 do
  local member = members[i]
  local id, token = string.match(member, '^(.*):(%d+)$')
  if not id or redis.call('HGET', KEYS[8], id) ~= token then
    redis.call('ZREM', KEYS[3], member)
    quarantine('member\0' .. member)
  end
end

for _, pair in ipairs({{'scheduled', KEYS[4]}, {'retry', KEYS[5]}}) do
  local ids = scan(pair[1], 'ZSCAN', pair[2])
  for i = 1, #ids, 2 do
    if redis.call('HEXISTS', KEYS[1], ids[i]) == 0 then
      redis.call('ZREM', pair[2], ids[i])
      quarantine('missing\0' .. pair[1] .. '\0' .. ids[i])
    end
  end
end

local leases = scan('leased', 'HSCAN', KEYS[8])
for i = 1, #leases, 2 do
  if not redis.call('ZSCORE', KEYS[3], leases[i] .. ':' .. leases[i + 1]) then
    redis.call('HDEL', KEYS[8], leases[i])
    stale = stale + 1
  end
end

if redis.call('LLEN', KEYS[2]) <= pending_max then
  local fields = scan('msg', 'HSCAN', KEYS[1])
  for i = 1, #fields, 2 do
    if not referenced(fields[i]) and not aggregating(fields[i]) then quarantine('orphan\0' .. fields[i]) end
  end
  local counters = scan('lost', 'HSCAN', KEYS[9])
  for i = 1, #counters, 2 do
    if not referenced(counters[i]) then
      redis.call('HDEL', KEYS[9], counters[i])
      stale = stale + 1
    end
  end
end

if found > 0 then redis.call('HINCRBY', KEYS[12], 'corrupt', found) end
if stale > 0 then redis.call('HINCRBY', KEYS[12], 'stale_bookkeeping', stale) end
return {wrapped, scanned, redis.call('LLEN', KEYS[10])}
