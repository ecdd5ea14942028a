-- flush.lua: remove old messages from every channel matching a pattern.
--
--   EVAL <flush.lua> 0 <pattern> <before-id> [<max>]
--   EVAL <flush.lua> 1 <base> <pattern> <before-id> [<max>]
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  pattern: a Redis glob over channel names (the same syntax as PSUBSCRIBE)
-- ARGV[2]  before-id: messages with an id strictly below this are removed
-- ARGV[3]  (optional) max: remove at most this many messages, so one call stays
--          short however much there is to remove; call again until the reply is 0
-- Reply    the number of messages removed (integer)
-- Errors   "ERR remq: invalid before-id ..." / "ERR remq: invalid pattern ..." /
--          "ERR remq: invalid max ..."
--
-- Each matching stream is trimmed with XTRIM MINID (exact); channels stay
-- registered, so their id history and subscribers are unaffected. The highest id
-- removed from each channel is kept in the hash <base>:removed (channel -> id),
-- which consume.lua reports, so a consumer whose cursor is below it knows that
-- messages it had not read are gone. With a max, a channel is cut at most max
-- ids past its first message (a span of max ids holds at most max of its
-- messages); XTRIM drops whole stream nodes without reading them, so a call
-- stays short however large max is.
-- The order index <base>:order (see publish.lua) is trimmed from its front past
-- entries whose messages are all gone, looking at most INDEX_LOOK entries (and
-- the oldest message of each of their channels) a call, and only a few where
-- the front cannot move. A call with before-id 0
-- and a literal name that is no channel ("\n": names have no newline) removes
-- no message and only trims the index: the Rust retention job calls it so
-- until the front stops moving.
local INDEX_LOOK = 1000
local base = KEYS[1] or 'remq'
local pattern, before = ARGV[1], ARGV[2]
if pattern == nil or pattern == '' then
  return redis.error_reply('ERR remq: invalid pattern: a pattern must not be empty')
end
if before == nil or not string.find(before, '^%d+$') then
  return redis.error_reply('ERR remq: invalid before-id: it must be a message id, a non-negative integer')
end
local max
if ARGV[3] ~= nil then
  max = tonumber(ARGV[3])
  if not string.find(ARGV[3], '^%d+$') or max < 1 then
    return redis.error_reply('ERR remq: invalid max: it must be a positive integer')
  end
end
local registry, ledger = base .. ':channels', base .. ':removed'
local removed = 0
local function id_of(entry) return tonumber(string.match(entry[1], '^(%d+)')) end
local function trim(name)
  local key, cut = base .. ':channel:' .. name, tonumber(before)
  if max and removed >= max then return end
  -- Nothing below the cut: XREVRANGE from below a stream's first entry would
  -- walk the whole stream.
  local first = redis.call('XRANGE', key, '-', '+', 'COUNT', 1)
  if #first == 0 or id_of(first[1]) >= cut then return end
  if max then
    -- A span of n ids holds at most n messages of a channel: cut at most
    -- max - removed ids past its first message.
    cut = math.min(cut, id_of(first[1]) + max - removed)
  end
  local below = redis.call('XREVRANGE', key, string.format('(%d-0', cut), '-', 'COUNT', 1)
  if #below == 0 then return end
  local highest = id_of(below[1])
  removed = removed + redis.call('XTRIM', key, 'MINID', string.format('%d-0', cut))
  if highest > tonumber(redis.call('HGET', ledger, name) or '0') then
    redis.call('HSET', ledger, name, string.format('%d', highest))
  end
end
if string.find(pattern, '[%*%?%[\\]') then
  local scan = '0'
  repeat
    local reply = redis.call('SSCAN', registry, scan, 'MATCH', pattern, 'COUNT', 1000)
    scan = reply[1]
    for _, name in ipairs(reply[2]) do trim(name) end
  until scan == '0'
elseif redis.call('SISMEMBER', registry, pattern) == 1 then
  trim(pattern)
end
-- The index front: an entry may go when its channel's oldest message kept is
-- past the entry's last id (looked up once per channel a call). The entries
-- are read a few at first, then four times as many each round while all of
-- them may go, so a front that cannot move costs a short read, not INDEX_LOOK
-- entries on every call.
local order, cut = base .. ':order', nil
local oldest = {}
local from, look, seen, blocked = '-', 16, 0, false
repeat
  local entries = redis.call('XRANGE', order, from, '+', 'COUNT', look)
  for _, e in ipairs(entries) do
    local number = e[2][2]
    local last = id_of(e) -- a batch's entry is keyed by its last id
    if oldest[number] == nil then
      local name = redis.call('HGET', base .. ':channel-names', number)
      local first = name and redis.call('XRANGE', base .. ':channel:' .. name, '-', '+', 'COUNT', 1)[1]
      oldest[number] = first and id_of(first) or math.huge
    end
    if oldest[number] <= last then
      blocked = true
      break
    end
    cut = last
  end
  seen = seen + #entries
  if #entries < look then break end
  from = string.format('(%d-0', cut or 0)
  look = math.min(look * 4, INDEX_LOOK - seen)
until blocked or look <= 0
if cut then redis.call('XTRIM', order, 'MINID', string.format('%d-0', cut + 1)) end
return removed
