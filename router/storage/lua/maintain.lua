-- maintain: recover expired leases and promote due retry and scheduled tasks; safe to run from many workers.
-- KEYS[1] Q:active  KEYS[2] Q:pending  KEYS[3] Q:retry  KEYS[4] Q:scheduled  KEYS[5] Q:lost  KEYS[6] Q:wake
-- KEYS[7] Q:stats  KEYS[8] Q:leased  KEYS[9] Q:quarantine  KEYS[10] Q:groups
-- ARGV[1] now (ms, the caller's clock: retry and scheduled times are the producers' and workers' times)
-- ARGV[2] recovery grace (ms)  ARGV[3] batch limit
-- Leases are judged by Redis's own clock (dequeue.lua sets them so): a lease whose deadline passed more than the
-- grace ago is expired. Its task goes to the front of pending (it was next once already) with its lost-lease count
-- raised. An active member that is not "<id>:<token>" is corrupt: it moves to Q:quarantine, where a worker archives
-- it with reason 'corrupt'. Due tasks go to the back of pending.
-- Returns {recovered, promoted, ms until the next lease expiry, due task or group flush (-1: none), pending count,
-- quarantined entries waiting, names of aggregation groups due to be flushed (at most 10; when more are due, the
-- ms until the next sweep is 0)}. The pending count lets idle workers notice work that no wake token announced (an
-- unpaused queue). An idle queue costs three ZRANGE calls: the range scans run only when the earliest entry is due.
local now, grace, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local t = redis.call('TIME')
local redis_now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local cutoff = redis_now - grace

local function earliest(key)
  local first = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
  if first[2] then return tonumber(first[2]) end
  return nil
end

local recovered, corrupt = 0, 0
local lease = earliest(KEYS[1])
if lease and lease < cutoff then
  local expired = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', '(' .. cutoff, 'LIMIT', 0, limit)
  for _, member in ipairs(expired) do
    redis.call('ZREM', KEYS[1], member)
    local id = string.match(member, '^(.*):%d+$')
    if id then
      redis.call('HDEL', KEYS[8], id)
      -- HINCRBY would fail on a corrupt (non-numeric) counter; the worker archives that task as 'corrupt'.
      local lost = redis.call('HGET', KEYS[5], id)
      if not lost or tonumber(lost) then redis.call('HSET', KEYS[5], id, (tonumber(lost) or 0) + 1) end
      redis.call('RPUSH', KEYS[2], id)
      recovered = recovered + 1
    else
      redis.call('RPUSH', KEYS[9], 'member\0' .. member)
      corrupt = corrupt + 1
    end
  end
  lease = earliest(KEYS[1])
end
local next_in = -1
if lease then next_in = math.max(0, lease + grace - redis_now) end

local promoted = 0
for _, key in ipairs({KEYS[3], KEYS[4]}) do
  local d = earliest(key)
  if d and d <= now then
    local due = redis.call('ZRANGEBYSCORE', key, '-inf', ARGV[1], 'LIMIT', 0, limit)
    for _, id in ipairs(due) do
      redis.call('ZREM', key, id)
      redis.call('LPUSH', KEYS[2], id)
    end
    promoted = promoted + #due
    d = earliest(key)
  end
  if d then
    local due_in = math.max(0, d - now)
    if next_in < 0 or due_in < next_in then next_in = due_in end
  end
end

-- A group id is "<member type>:<name>" (router.storage.keys.group_id_of); anything else cannot name a group list,
-- so no worker could ever flush it: it is dropped here (counted as stale bookkeeping) instead of being reported due
-- at every sweep.
local function group_id(g)
  local member_type, name = string.match(g, '^([%w][%w_.:%-]*):([%w][%w_.%-]*)$')
  return member_type and #member_type <= 128 and #name <= 64
end
local groups, stale_groups = {}, 0
local first_group = redis.call('ZRANGE', KEYS[10], 0, 0, 'WITHSCORES')
local later = first_group  -- the earliest group not yet due (flushing the due ones does not make it due sooner)
if first_group[2] and tonumber(first_group[2]) <= redis_now then
  for _, g in ipairs(redis.call('ZRANGEBYSCORE', KEYS[10], '-inf', redis_now, 'LIMIT', 0, 11)) do
    if not group_id(g) then
      redis.call('ZREM', KEYS[10], g)
      stale_groups = stale_groups + 1
    elseif #groups < 10 then
      groups[#groups + 1] = g
    else
      next_in = 0  -- more are due than one sweep reports: sweep again at once, not after maintenance_s
    end
  end
  later = redis.call('ZRANGEBYSCORE', KEYS[10], '(' .. redis_now, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
end
if later[2] then
  local due_in = tonumber(later[2]) - redis_now
  if next_in < 0 or due_in < next_in then next_in = due_in end
end
if stale_groups > 0 then redis.call('HINCRBY', KEYS[7], 'stale_bookkeeping', stale_groups) end

if recovered + promoted > 0 then
  if redis.call('LLEN', KEYS[6]) == 0 then redis.call('LPUSH', KEYS[6], '1') end
  if recovered > 0 then redis.call('HINCRBY', KEYS[7], 'recovered', recovered) end
end
if corrupt > 0 then redis.call('HINCRBY', KEYS[7], 'corrupt', corrupt) end
return {recovered, promoted, next_in, redis.call('LLEN', KEYS[2]), redis.call('LLEN', KEYS[9]), groups}
