-- lookup: one task's state and message, by id, in one queue; optionally enter or leave the task's waiters.
-- KEYS[1] Q:msg  KEYS[2] Q:leased  KEYS[3] Q:scheduled  KEYS[4] Q:retry  KEYS[5] Q:archived  KEYS[6] Q:completed
-- KEYS[7] Q:cancelled  KEYS[8] Q:done  KEYS[9] Q:waiters
-- ARGV[1] task id  ARGV[2] '' (just look), 'enter' (count one more waiter unless the task has ended, in the same
-- step as the look, so its end cannot slip between them) or 'leave' (count one waiter less)
-- Returns {state, detail, envelope or false}: state is one of cancelled, archived, completed (detail: when its
-- result expires), scheduled or retry (detail: when it is due), active (detail: its delivery token), pending
-- (the caller tells an aggregating member by its envelope), done (completed, result not kept; detail: when), unknown.
local id = ARGV[1]
local state, detail = nil, ''
for _, pair in ipairs({{KEYS[7], 'cancelled'}, {KEYS[5], 'archived'}, {KEYS[6], 'completed'},
                       {KEYS[3], 'scheduled'}, {KEYS[4], 'retry'}}) do
  local score = redis.call('ZSCORE', pair[1], id)
  if score then state, detail = pair[2], score break end
end
local env = redis.call('HGET', KEYS[1], id)
if not state then
  local token = redis.call('HGET', KEYS[2], id)
  if token then
    state, detail = 'active', token
  elseif env then
    state = 'pending'
  else
    local at = redis.call('ZSCORE', KEYS[8], id)
    if at then state, detail = 'done', at else state = 'unknown' end
  end
end
local ended = state == 'cancelled' or state == 'archived' or state == 'completed' or state == 'done'
if ARGV[2] == 'enter' and not ended and state ~= 'unknown' then
  redis.call('HINCRBY', KEYS[9], id, 1)
elseif ARGV[2] == 'leave' then
  if redis.call('HINCRBY', KEYS[9], id, -1) <= 0 then redis.call('HDEL', KEYS[9], id) end
end
return {state, detail, env}
