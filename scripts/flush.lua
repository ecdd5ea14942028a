-- flush.lua: remove old messages from every channel matching a pattern.
--
--   EVAL <flush.lua> 0 <pattern> <before-id>
--   EVAL <flush.lua> 1 <base> <pattern> <before-id>
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  pattern: a Redis glob over channel names (the same syntax as PSUBSCRIBE)
-- ARGV[2]  before-id: messages with an id strictly below this are removed
-- Reply    the number of messages removed (integer)
-- Errors   "ERR remq: invalid before-id ..." / "ERR remq: invalid pattern ..."
--
-- Each matching stream is trimmed with XTRIM MINID (exact); channels stay
-- registered, so their id history and subscribers are unaffected.
local base = KEYS[1] or 'remq'
local pattern, before = ARGV[1], ARGV[2]
if pattern == nil or pattern == '' then
  return redis.error_reply('ERR remq: invalid pattern: a pattern must not be empty')
end
if before == nil or not string.find(before, '^%d+$') then
  return redis.error_reply('ERR remq: invalid before-id: it must be a message id, a non-negative integer')
end
local registry = base .. ':channels'
local removed = 0
local function trim(name)
  removed = removed + redis.call('XTRIM', base .. ':channel:' .. name, 'MINID', before .. '-0')
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
return removed
