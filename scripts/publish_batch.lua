-- publish_batch.lua: store many messages on one channel in one call.
--
--   EVAL <publish_batch.lua> 0 <channel> <message> [<message> ...]
--   EVAL <publish_batch.lua> 1 <base> <channel> <message> [<message> ...]
--   EVAL <publish_batch.lua> 2 <base> <base>:once:<key> <channel> <message> [<message> ...]
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- KEYS[2]  (optional) an idempotent batch, as in publish.lua: a key that holds
--          "<first>-<last>" makes that the reply, storing and pushing nothing
-- ARGV[1]  channel: non-empty UTF-8, no "\n", none of the glob characters * ? [ ]
-- ARGV[2…] the messages, in order; at least one
-- Reply    {first id, last id}: the messages got the consecutive ids first..last
-- Errors   "ERR remq: invalid channel ..." naming the rule that was broken;
--          "ERR remq: id counter behind ..." when <base>:id went backwards below
--          the channel's last message (Redis lost writes); "ERR remq: message too
--          large ..." above MAX_MESSAGE_SIZE bytes (8 MiB; a deployment-wide
--          setting: change it here and in the other publish script)
--
-- Each message is stored and pushed exactly as publish.lua does it (PUBLISH,
-- or SPUBLISH <base>:pushes when <base>:push-mode is "sharded"), so
-- subscribers and consumers cannot tell a batch from single publishes. The order
-- index (see publish.lua) gets one entry for the batch, keyed by its last id:
-- <last>-0 c <channel number> n <count> (the ids last-count+1 .. last), so a
-- reader that goes on from any id inside the batch finds the entry after it. For the time index (see publish.lua) every batch call
-- counts as a sample: its last id, when the second changed since the newest entry.
-- A channel name must be UTF-8 (so every client can decode it): checked byte by
-- byte only when it has non-ASCII bytes at all.
local function is_utf8(s)
  if not string.find(s, '[\128-\255]') then return true end
  local i, n = 1, #s
  while i <= n do
    local c = string.byte(s, i)
    local len = (c < 0x80 and 1) or (c >= 0xC2 and c <= 0xDF and 2) or (c >= 0xE0 and c <= 0xEF and 3)
      or (c >= 0xF0 and c <= 0xF4 and 4)
    if not len or i + len - 1 > n then return false end
    local b = string.byte(s, i + 1)
    -- no overlong forms, no UTF-16 surrogates, nothing above U+10FFFF
    if (c == 0xE0 and b < 0xA0) or (c == 0xED and b > 0x9F) or (c == 0xF0 and b < 0x90) or (c == 0xF4 and b > 0x8F) then
      return false
    end
    for j = i + 1, i + len - 1 do
      b = string.byte(s, j)
      if b < 0x80 or b > 0xBF then return false end
    end
    i = i + len
  end
  return true
end
local MAX_MESSAGE_SIZE = 8388608
local base = KEYS[1] or 'remq'
local sharded = KEYS[1] ~= nil and redis.call('GET', base .. ':push-mode') == 'sharded'
local channel = ARGV[1]
local count = #ARGV - 1
if count < 1 then
  return redis.error_reply('ERR remq: publish_batch takes a channel and at least one message')
end
local once = KEYS[2]
if once ~= nil and (#once <= #base + 6 or string.sub(once, 1, #base + 6) ~= base .. ':once:') then
  return redis.error_reply('ERR remq: invalid idempotency key: KEYS[2] must be ' .. base .. ':once:<a non-empty key>')
end
if once ~= nil then
  local stored = redis.call('GET', once)
  if stored then
    local a, b = string.match(stored, '^(%d+)%-(%d+)$')
    return {tonumber(a), tonumber(b)}
  end
end
for i = 2, #ARGV do
  if #ARGV[i] > MAX_MESSAGE_SIZE then
    return redis.error_reply('ERR remq: message too large: message ' .. (i - 1) .. ' has ' .. #ARGV[i]
      .. ' bytes, the limit is ' .. MAX_MESSAGE_SIZE .. ' (MAX_MESSAGE_SIZE in publish_batch.lua); store big payloads elsewhere and publish a reference')
  end
end
if channel == '' then
  return redis.error_reply('ERR remq: invalid channel: a channel name must not be empty')
end
if string.find(channel, '[\n%*%?%[%]]') then
  return redis.error_reply('ERR remq: invalid channel: a channel name must not contain "\\n" or the glob characters * ? [ ]')
end
if not is_utf8(channel) then
  return redis.error_reply('ERR remq: invalid channel: a channel name must be valid UTF-8')
end
local key = base .. ':channel:' .. channel
local last = redis.call('INCRBY', base .. ':id', count)
local first = last - count + 1
local header = channel .. '@'
for i = 1, count do
  local id = string.format('%d', first + i - 1)
  local message = ARGV[i + 1]
  local added = redis.pcall('XADD', key, id .. '-0', 'm', message)
  if type(added) == 'table' and added.err then
    if i == 1 and string.find(added.err, 'equal or smaller', 1, true) then
      return redis.error_reply('ERR remq: id counter behind: id ' .. id .. ' is not above the last message of channel '
        .. channel .. '; the counter ' .. base .. ':id went backwards (Redis lost writes): move it past the highest id in use, see "Failover" in docs/operations.md')
    end
    return redis.error_reply(added.err)
  end
  if sharded then
    redis.call('SPUBLISH', base .. ':pushes', header .. id .. '\n' .. message)
  else
    redis.call('PUBLISH', key, header .. id .. '\n' .. message)
  end
end
local number = redis.call('HGET', base .. ':channel-numbers', channel)
if not number then
  number = redis.call('HLEN', base .. ':channel-numbers') + 1
  redis.call('HSET', base .. ':channel-numbers', channel, number)
  redis.call('HSET', base .. ':channel-names', number, channel)
  redis.call('SADD', base .. ':channels', channel)
  redis.call('ZADD', base .. ':channel-index', 0, channel)
  redis.call('SETNX', base .. ':order-from', string.format('%d', first))
end
local order, entry = base .. ':order', string.format('%d-0', last)
local indexed = redis.pcall('XADD', order, entry, 'c', number, 'n', count)
if type(indexed) == 'table' and indexed.err then
  if not string.find(indexed.err, 'equal or smaller', 1, true) then return redis.error_reply(indexed.err) end
  redis.call('UNLINK', order)
  redis.call('SET', base .. ':order-from', string.format('%d', first))
  redis.call('XADD', order, entry, 'c', number, 'n', count)
end
local clock, now = base .. ':time', redis.call('TIME')[1]
local newest = redis.call('ZRANGE', clock, -1, -1, 'WITHSCORES')
if newest[2] ~= now then redis.call('ZADD', clock, now, string.format('%d', last)) end
if once ~= nil then
  local window = tonumber(redis.call('GET', base .. ':once-window') or '120000')
  redis.call('SET', once, string.format('%d-%d', first, last), 'PX', window)
end
return {first, last}
