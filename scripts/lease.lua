-- lease.lua: exclusive ownership of a durable consumer (for fencing its
-- checkpoints), or of another job that one process at a time must run.
--
--   EVAL <lease.lua> 0 acquire <name> <ttl-ms> <token> [consumer|flush]
--   EVAL <lease.lua> 0 renew   <name> <ttl-ms> <token> [consumer|flush]
--   EVAL <lease.lua> 0 release <name> 0        <token> [consumer|flush]
--   (or numkeys 1 with KEYS[1] = the namespace base, as for the other scripts)
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  the operation: acquire, renew or release
-- ARGV[2]  the consumer's durable name (not empty), or for a flush lock the pattern flushed
-- ARGV[3]  the lease time in milliseconds (ignored by release)
-- ARGV[4]  the owner's token: random and new for every acquisition (e.g. 64
--          random bits), so it stays unique even if Redis loses its data
-- ARGV[5]  (optional) what the lease guards: "consumer" (the default) or "flush";
--          each kind has keys of its own, so no consumer name can take a flush lock
-- Reply    acquire: {1, ttl-ms} when the lease was free and is now held with this
--          token, else {0, remaining-ms} (how long the current owner still holds it);
--          renew and release: 1 when this token held the lease, else 0
--
-- A consumer's lease is the key <base>:consumer:<name>:lease holding the owner's
-- token; checkpoint.lua refuses to move the cursor for any other token. A flush
-- lock is the key <base>:flush:<pattern>:lock.
local base = KEYS[1] or 'remq'
local op, name, ttl, token, kind = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4], ARGV[5] or 'consumer'
if name == nil or name == '' then
  return redis.error_reply('ERR remq: invalid name: the consumer name (or the flushed pattern) must not be empty')
end
if token == nil or token == '' then
  return redis.error_reply('ERR remq: invalid token: pass the owner token as the fourth argument')
end
if op ~= 'release' and (ttl == nil or ttl < 1) then
  return redis.error_reply('ERR remq: invalid lease time: it must be a positive number of milliseconds')
end
local lease
if kind == 'consumer' then
  lease = base .. ':consumer:' .. name .. ':lease'
elseif kind == 'flush' then
  lease = base .. ':flush:' .. name .. ':lock'
else
  return redis.error_reply('ERR remq: invalid lease kind: use consumer or flush')
end
if op == 'acquire' then
  if redis.call('SET', lease, token, 'NX', 'PX', ttl) then return {1, ttl} end
  local remaining = redis.call('PTTL', lease)
  -- a lease without an expiry (set by hand) is reported as a full lease time
  if remaining < 0 then remaining = ttl end
  return {0, remaining}
elseif op == 'renew' or op == 'release' then
  if redis.call('GET', lease) ~= token then return 0 end
  if op == 'release' then
    redis.call('DEL', lease)
  else
    redis.call('PEXPIRE', lease, ttl)
  end
  return 1
end
return redis.error_reply('ERR remq: invalid lease operation: use acquire, renew or release')
