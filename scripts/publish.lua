-- publish.lua: store one message on a channel and push it to live subscribers.
--
--   EVAL <publish.lua> 0 <channel> <message>
--   EVAL <publish.lua> 1 <base> <channel> <message>
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  channel: non-empty, no "\n", none of the glob characters * ? [ ]
-- ARGV[2]  message: any bytes
-- Reply    the new message id (integer), unique and increasing in the namespace
-- Errors   "ERR remq: invalid channel ..." naming the rule that was broken
--
-- Effects: INCR <base>:id; XADD <base>:channel:<channel> <id>-0 m <message>;
-- SADD <base>:channels <channel>; PUBLISH <base>:channel:<channel>
-- "<channel>@<id>\n<message>". The push happens in the same call that stores the
-- message, so a subscriber never sees a message the log does not hold.
local base = KEYS[1] or 'remq'
local channel, message = ARGV[1], ARGV[2]
if message == nil or ARGV[3] ~= nil then
  return redis.error_reply('ERR remq: publish takes exactly two arguments, <channel> <message>')
end
if channel == '' then
  return redis.error_reply('ERR remq: invalid channel: a channel name must not be empty')
end
if string.find(channel, '[\n%*%?%[%]]') then
  return redis.error_reply('ERR remq: invalid channel: a channel name must not contain "\\n" or the glob characters * ? [ ]')
end
local key = base .. ':channel:' .. channel
local id = string.format('%d', redis.call('INCR', base .. ':id'))
redis.call('XADD', key, id .. '-0', 'm', message)
redis.call('SADD', base .. ':channels', channel)
redis.call('PUBLISH', key, channel .. '@' .. id .. '\n' .. message)
return tonumber(id)
