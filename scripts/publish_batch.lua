-- publish_batch.lua: store many messages on one channel in one call.
--
--   EVAL <publish_batch.lua> 0 <channel> <message> [<message> ...]
--   EVAL <publish_batch.lua> 1 <base> <channel> <message> [<message> ...]
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  channel: non-empty, no "\n", none of the glob characters * ? [ ]
-- ARGV[2…] the messages, in order; at least one
-- Reply    {first id, last id}: the messages got the consecutive ids first..last
-- Errors   "ERR remq: invalid channel ..." naming the rule that was broken
--
-- Each message is stored and pushed exactly as publish.lua does it, so
-- subscribers and consumers cannot tell a batch from single publishes.
local base = KEYS[1] or 'remq'
local channel = ARGV[1]
local count = #ARGV - 1
if count < 1 then
  return redis.error_reply('ERR remq: publish_batch takes a channel and at least one message')
end
if channel == '' then
  return redis.error_reply('ERR remq: invalid channel: a channel name must not be empty')
end
if string.find(channel, '[\n%*%?%[%]]') then
  return redis.error_reply('ERR remq: invalid channel: a channel name must not contain "\\n" or the glob characters * ? [ ]')
end
local key = base .. ':channel:' .. channel
local last = redis.call('INCRBY', base .. ':id', count)
local first = last - count + 1
local header = channel .. '@'
for i = 1, count do
  local id = string.format('%d', first + i - 1)
  local message = ARGV[i + 1]
  redis.call('XADD', key, id .. '-0', 'm', message)
  redis.call('PUBLISH', key, header .. id .. '\n' .. message)
end
redis.call('SADD', base .. ':channels', channel)
return {first, last}
