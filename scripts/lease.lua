-- lease.lua: exclusive ownership of a durable consumer, with a fencing token.
--
--   EVAL <lease.lua> 0 acquire <consumer> <ttl-ms>
--   EVAL <lease.lua> 0 renew   <consumer> <ttl-ms> <token>
--   EVAL <lease.lua> 0 release <consumer> 0        <token>
--   (or numkeys 1 with KEYS[1] = the namespace base, as for the other scripts)
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  the operation: acquire, renew or release
-- ARGV[2]  the consumer's durable name
-- ARGV[3]  the lease time in milliseconds (ignored by release)
-- ARGV[4]  the token returned by acquire (renew and release only)
-- Reply    acquire: {token, ttl-ms} when the lease was free (token > 0, a new
--          fencing token from <base>:consumer:<name>:epoch), else {0, remaining-ms};
--          renew and release: 1 when the caller held the lease, else 0
--
-- The lease is the key <base>:consumer:<name>:lease holding the owner's token;
-- checkpoint.lua refuses to move the cursor for any other token.
local base = KEYS[1] or 'remq'
local op, name, ttl, token = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if name == nil or name == '' then
  return redis.error_reply('ERR remq: invalid consumer: the consumer name must not be empty')
end
local lease = base .. ':consumer:' .. name .. ':lease'
if op == 'acquire' then
  if ttl == nil or ttl < 1 then return redis.error_reply('ERR remq: invalid lease time') end
  local remaining = redis.call('PTTL', lease)
  if remaining ~= -2 then return {0, remaining} end
  local epoch = redis.call('INCR', base .. ':consumer:' .. name .. ':epoch')
  redis.call('SET', lease, epoch, 'PX', ttl)
  return {epoch, ttl}
elseif op == 'renew' or op == 'release' then
  if redis.call('GET', lease) ~= token then return 0 end
  if op == 'release' then
    redis.call('DEL', lease)
  else
    if ttl == nil or ttl < 1 then return redis.error_reply('ERR remq: invalid lease time') end
    redis.call('PEXPIRE', lease, ttl)
  end
  return 1
end
return redis.error_reply('ERR remq: invalid lease operation: use acquire, renew or release')
