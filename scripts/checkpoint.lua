-- checkpoint.lua: move a consumer's cursor forward, fenced by its lease token.
--
--   EVAL <checkpoint.lua> 0 <consumer> <token> <id> [rewind]
--   (or numkeys 1 with KEYS[1] = the namespace base)
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  the consumer's durable name
-- ARGV[2]  the owner's token, as passed to lease.lua acquire
-- ARGV[3]  the id up to which every message is done
-- ARGV[4]  (optional) the word "rewind": store the id even if it is lower (after
--          the id counter went backwards, to replay what may be new)
-- Reply    the stored cursor afterwards (integer); without "rewind" it never moves
--          backwards, and the first checkpoint of a consumer is stored even when it is 0
-- Errors   "FENCED ..." when the token does not hold the lease: the caller lost
--          ownership and must stop consuming; "BEHIND ... <head>" when the id is
--          above the last id issued (<base>:id, the head ends the message) while a
--          cursor is stored: the counter went backwards (Redis lost writes), and
--          the caller must rewind (with "rewind") instead of storing it
--
-- The cursor is the key <base>:consumer:<name>:cursor.
local base = KEYS[1] or 'remq'
local name, token, id = ARGV[1], ARGV[2], ARGV[3]
if id == nil or not string.find(id, '^%d+$') then
  return redis.error_reply('ERR remq: invalid checkpoint: the id must be a non-negative integer')
end
local prefix = base .. ':consumer:' .. name
if redis.call('GET', prefix .. ':lease') ~= token then
  return redis.error_reply('FENCED remq: the lease of consumer ' .. name .. ' is not held by this token')
end
local stored = redis.call('GET', prefix .. ':cursor')
local head = redis.call('GET', base .. ':id') or '0'
if stored and ARGV[4] ~= 'rewind' and tonumber(id) > tonumber(stored) and tonumber(id) > tonumber(head) then
  return redis.error_reply('BEHIND remq: checkpoint ' .. id .. ' of consumer ' .. name
    .. ' is above the last id issued: the id counter went backwards to ' .. head)
end
if not stored or tonumber(id) > tonumber(stored) or ARGV[4] == 'rewind' then
  redis.call('SET', prefix .. ':cursor', id)
  return tonumber(id)
end
return tonumber(stored)
