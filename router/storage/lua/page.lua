-- page: one page of the tasks in a state, with their stored envelopes (read-only). Bounded work per page,
-- whatever the length of the state: no call walks the whole structure.
-- KEYS[1] the state's key (a LIST for pending, a ZSET otherwise)  KEYS[2] Q:msg  KEYS[3] Q:seq
-- ARGV[1] 'l' (LIST), 'z' (ZSET of ids) or 'a' (Q:active: members are "<id>:<token>")  ARGV[2] limit
-- ARGV[3] position: for a LIST the offset from its oldest end (the end workers pop), for a ZSET the rank
-- ARGV[4] anchor: the last id (member) of the previous page, '' for the first page
-- ARGV[5] (LIST) the token counter Q:seq when the previous page was read ('' if unknown)
-- ARGV[6] (ZSET) the anchor's score, ARGV[7] (LIST) how far around the expected place the anchor is searched
-- The page starts right after the anchor wherever it moved meanwhile:
--   LIST: workers pop the oldest end, so each task dequeued since (the token counter moved by as many, duplicates
--   aside) brings the anchor that much closer; it is looked for there, then in a bounded window around it. A
--   task popped since is gone (the page starts at the oldest end), one not found in the window is passed by.
--   ZSET: the anchor's rank (ZRANK, logarithmic); if it left the set, the first member at or after its score.
-- Returns {start position, total, token counter, then triples: id, envelope (or false), score (or false)}.
local kind, limit, pos, anchor = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local total, start
local seq = redis.call('GET', KEYS[3]) or '0'
local out
if kind == 'l' then
  total = redis.call('LLEN', KEYS[1])
  start = pos
  if anchor ~= '' and pos > 0 then
    local popped = (tonumber(seq) or 0) - (tonumber(ARGV[5]) or 0)
    if popped < 0 then popped = 0 end
    local expected = pos - popped  -- where the element after the anchor now is, from the oldest end
    if expected <= 0 then
      start = 0
    elseif redis.call('LINDEX', KEYS[1], -expected) == anchor then
      start = expected
    else
      local window = tonumber(ARGV[7])
      local low = math.max(0, expected - window)
      local high = expected + window
      -- Elements at offsets low .. high from the oldest end, returned newest first.
      local near = redis.call('LRANGE', KEYS[1], -high - 1, -low - 1)
      start = expected
      for i = #near, 1, -1 do
        if near[i] == anchor then
          start = low + (#near - i) + 1
          break
        end
      end
    end
  end
  out = {start, total, seq}
  if start < total then
    local ids = redis.call('LRANGE', KEYS[1], -(start + limit), -(start + 1))
    for i = #ids, 1, -1 do
      out[#out + 1] = ids[i]
      out[#out + 1] = redis.call('HGET', KEYS[2], ids[i])
      out[#out + 1] = false
    end
  end
else
  total = redis.call('ZCARD', KEYS[1])
  start = pos
  if anchor ~= '' then
    local rank = redis.call('ZRANK', KEYS[1], anchor)
    if rank then
      start = rank + 1
    else
      start = redis.call('ZCOUNT', KEYS[1], '-inf', '(' .. ARGV[6])
    end
  end
  out = {start, total, seq}
  local members = redis.call('ZRANGE', KEYS[1], start, start + limit - 1, 'WITHSCORES')
  for i = 1, #members, 2 do
    local id = members[i]
    if kind == 'a' then id = string.match(id, '^(.*):%d+$') or id end
    out[#out + 1] = members[i]
    out[#out + 1] = redis.call('HGET', KEYS[2], id)
    out[#out + 1] = members[i + 1]
  end
end
return out
