-- publish.lua: store one message on a channel and push it to live subscribers.
--
--   EVAL <publish.lua> 0 <channel> <message>
--   EVAL <publish.lua> 1 <base> <channel> <message>
--   EVAL <publish.lua> 2 <base> <base>:once:<idempotency key> <channel> <message>
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- KEYS[2]  (optional) an idempotent publish: <base>:once:<key>, any non-empty key.
--          If it holds an id, that id is the reply and nothing is stored or
--          pushed (a retry of a publish that was stored); else the message is
--          published and the key set to its id, expiring after the namespace's
--          window: <base>:once-window in milliseconds, 120000 (2 minutes) when unset
-- ARGV[1]  channel: non-empty UTF-8, no "\n", none of the glob characters * ? [ ]
-- ARGV[2]  message: any bytes
-- Reply    the new message id (integer), unique and increasing in the namespace
-- Errors   "ERR remq: invalid channel ..." naming the rule that was broken;
--          "ERR remq: id counter behind ..." when <base>:id went backwards below
--          the channel's last message (Redis lost writes); "ERR remq: message too
--          large ..." above MAX_MESSAGE_SIZE bytes (8 MiB; a deployment-wide
--          setting: change it here and in the other publish script)
--
-- Effects: INCR <base>:id; XADD <base>:channel:<channel> <id>-0 m <message>;
-- XADD <base>:order <id>-0 c <channel number>; PUBLISH <base>:channel:<channel>
-- "<channel>@<id>\n<message>". The push happens in the same call that stores the
-- message, so a subscriber never sees a message the log does not hold.
-- Sharded pushes (Redis Cluster): when the string <base>:push-mode is "sharded"
-- (numkeys 1 only; read once a call), the push is SPUBLISH <base>:pushes
-- "<channel>@<id>\n<message>" instead: one shard channel per namespace, in the
-- namespace's slot, so a push reaches only the shard that holds the namespace
-- (classic PUBLISH goes over the cluster bus to every node). Subscribers
-- SSUBSCRIBE <base>:pushes and match the channel against their glob themselves.
-- Remq's worker sets the mode (SET NX) before it subscribes on a cluster.
-- numkeys 0 always pushes with PUBLISH remq:channel:<channel>, as in 2013.
-- Order index: <base>:order names the channel of every id, by a number given to
-- the channel on its first publish (<base>:channel-numbers maps names to
-- numbers, <base>:channel-names back; the channel joins the set <base>:channels
-- and the lexically ordered <base>:channel-index then). consume.lua follows it
-- for broad patterns. <base>:order-from is the first id it holds: earlier ids
-- were written by versions of these scripts without it. When the counter went
-- backwards below the index's last id (Redis lost writes and the index did
-- not), the index starts over at this id (order-from moves to it).
-- Time index: a publish whose id is a multiple of 64 records, when the second
-- (server clock) changed since the newest entry, ZADD <base>:time <unix-seconds>
-- <id>: "this id was published in this second". Age-based retention cuts below
-- the newest entry older than its limit (ZRANGE <base>:time (<t> -inf BYSCORE REV
-- LIMIT 0 1). Sampling keeps the cost to a TIME and a ZRANGE per 64 messages, and
-- the index to at most one entry per second; retention prunes it.
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
local channel, message = ARGV[1], ARGV[2]
if message == nil or ARGV[3] ~= nil then
  return redis.error_reply('ERR remq: publish takes exactly two arguments, <channel> <message>')
end
local once = KEYS[2]
if once ~= nil and (#once <= #base + 6 or string.sub(once, 1, #base + 6) ~= base .. ':once:') then
  return redis.error_reply('ERR remq: invalid idempotency key: KEYS[2] must be ' .. base .. ':once:<a non-empty key>')
end
if once ~= nil then
  local first = redis.call('GET', once)
  if first then return tonumber(first) end
end
if #message > MAX_MESSAGE_SIZE then
  return redis.error_reply('ERR remq: message too large: ' .. #message .. ' bytes, the limit is ' .. MAX_MESSAGE_SIZE
    .. ' (MAX_MESSAGE_SIZE in publish.lua); store big payloads elsewhere and publish a reference')
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
local n = redis.call('INCR', base .. ':id')
local id = string.format('%d', n)
local added = redis.pcall('XADD', key, id .. '-0', 'm', message)
if type(added) == 'table' and added.err then
  if string.find(added.err, 'equal or smaller', 1, true) then
    return redis.error_reply('ERR remq: id counter behind: id ' .. id .. ' is not above the last message of channel '
      .. channel .. '; the counter ' .. base .. ':id went backwards (Redis lost writes): move it past the highest id in use, see "Failover" in docs/operations.md')
  end
  return redis.error_reply(added.err)
end
local number = redis.call('HGET', base .. ':channel-numbers', channel)
if not number then
  number = redis.call('HLEN', base .. ':channel-numbers') + 1
  redis.call('HSET', base .. ':channel-numbers', channel, number)
  redis.call('HSET', base .. ':channel-names', number, channel)
  redis.call('SADD', base .. ':channels', channel)
  redis.call('ZADD', base .. ':channel-index', 0, channel)
  redis.call('SETNX', base .. ':order-from', id)
end
local order = base .. ':order'
local indexed = redis.pcall('XADD', order, id .. '-0', 'c', number)
if type(indexed) == 'table' and indexed.err then
  if not string.find(indexed.err, 'equal or smaller', 1, true) then return redis.error_reply(indexed.err) end
  redis.call('UNLINK', order)
  redis.call('SET', base .. ':order-from', id)
  redis.call('XADD', order, id .. '-0', 'c', number)
end
if sharded then
  redis.call('SPUBLISH', base .. ':pushes', channel .. '@' .. id .. '\n' .. message)
else
  redis.call('PUBLISH', key, channel .. '@' .. id .. '\n' .. message)
end
if once ~= nil then
  redis.call('SET', once, id, 'PX', tonumber(redis.call('GET', base .. ':once-window') or '120000'))
end
if n % 64 == 0 then
  local clock, now = base .. ':time', redis.call('TIME')[1]
  local newest = redis.call('ZRANGE', clock, -1, -1, 'WITHSCORES')
  if newest[2] ~= now then redis.call('ZADD', clock, now, id) end
end
return n
