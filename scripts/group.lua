-- group.lua: the members of a consumer group over a partitioned namespace, and
-- which partitions each of them owns.
--
--   EVAL <group.lua> 1 <base> sync  <consumer> <member> <ttl-ms>
--   EVAL <group.lua> 1 <base> leave <consumer> <member>
--
-- KEYS[1]  the base of a partitioned namespace (its partition count is the key
--          <base>:partitions, written when it was created)
-- ARGV[1]  the operation: sync (a heartbeat, or a poll) or leave
-- ARGV[2]  the consumer's durable name (not empty)
-- ARGV[3]  the member: unique per running worker process (e.g. host:pid:random)
-- ARGV[4]  sync: how long the member stays live without another heartbeat, in
--          milliseconds on the Redis server's clock; 0 for a poll that does not
--          extend it (a poll never adds a member)
-- Reply    sync: {generation, live members, 1 if this member is live else 0,
--          {the partitions assigned to this member, ascending}};
--          leave: the generation afterwards
-- Errors   "ERR remq: not partitioned ..." when <base>:partitions is missing
--
-- Keys (all beside the base, in its hash slot on a cluster):
--   <base>:group:<consumer>:members     sorted set: member -> when it expires (server ms)
--   <base>:group:<consumer>:assignment  hash: member -> its partitions, "0,4,8"
--   <base>:group:<consumer>:generation  bumped whenever the assignment changes
--
-- Every call first drops the members whose heartbeat expired. When the live
-- members changed (one joined, left or expired), the assignment is computed
-- again, here, atomically, so no member leads and all see the same one. It is
-- balanced (each member gets floor(P/N) or ceil(P/N) partitions of P over N live
-- members) and sticky: a partition keeps its owner unless that owner left or is
-- over its share, so a join or a leave moves only the partitions that must move.
-- Precisely: the members holding the most keep the ceil shares (ties: by name);
-- a member over its share gives up its highest partitions; the partitions without
-- a live owner then go, lowest first, to the members below their share, in name
-- order. The assignment says who should own a partition; the partition's lease
-- (lease.lua in the partition's namespace) still says who does, so a member
-- starts a partition only once its previous owner released it or it expired.
local base = KEYS[1]
local op, consumer, member, ttl = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4] or '0')
if base == nil then
  return redis.error_reply('ERR remq: group.lua takes the namespace base as KEYS[1] (numkeys 1)')
end
if consumer == nil or consumer == '' or member == nil or member == '' then
  return redis.error_reply('ERR remq: invalid group call: pass the consumer name and the member, neither empty')
end
if ttl == nil or ttl < 0 then
  return redis.error_reply('ERR remq: invalid heartbeat time: a number of milliseconds, 0 for a poll')
end
local partitions = tonumber(redis.call('GET', base .. ':partitions') or '')
if partitions == nil or partitions < 1 then
  return redis.error_reply('ERR remq: not partitioned: ' .. base .. ' has no partition count ('
    .. base .. ':partitions); create it with `remq namespace create ' .. base .. ' --partitions <P>`')
end
local prefix = base .. ':group:' .. consumer
local members, assignment, generation = prefix .. ':members', prefix .. ':assignment', prefix .. ':generation'
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000)

-- Computes the assignment for the live members and stores it when it changed.
local function rebalance()
  local live = redis.call('ZRANGE', members, 0, -1)
  table.sort(live)
  local old = redis.call('HGETALL', assignment)
  local before, is_live, owner, held = {}, {}, {}, {}
  for _, m in ipairs(live) do
    is_live[m], held[m] = true, {}
  end
  for i = 1, #old, 2 do
    before[old[i]] = old[i + 1]
    if is_live[old[i]] then
      for p in string.gmatch(old[i + 1], '%d+') do
        p = tonumber(p)
        if p < partitions and owner[p] == nil then owner[p] = old[i] end
      end
    end
  end
  for p = 0, partitions - 1 do
    if owner[p] then table.insert(held[owner[p]], p) end
  end
  local n = #live
  local changed = false
  if n > 0 then
    local share, extra = math.floor(partitions / n), partitions % n
    local by_load = {}
    for i, m in ipairs(live) do by_load[i] = m end
    table.sort(by_load, function(a, b)
      if #held[a] ~= #held[b] then return #held[a] > #held[b] end
      return a < b
    end)
    local quota = {}
    for i, m in ipairs(by_load) do
      quota[m] = share + ((i <= extra) and 1 or 0)
      while #held[m] > quota[m] do
        owner[table.remove(held[m])] = nil
      end
    end
    local next_free = 0
    for _, m in ipairs(live) do
      while #held[m] < quota[m] do
        while owner[next_free] do next_free = next_free + 1 end
        owner[next_free] = m
        table.insert(held[m], next_free)
      end
      table.sort(held[m])
    end
  end
  local after = {}
  for _, m in ipairs(live) do
    after[m] = table.concat(held[m], ',')
    if before[m] ~= after[m] then changed = true end
  end
  for m, _ in pairs(before) do
    if after[m] == nil then changed = true end
  end
  if changed then
    redis.call('DEL', assignment)
    for _, m in ipairs(live) do redis.call('HSET', assignment, m, after[m]) end
    redis.call('INCR', generation)
  end
end

local dropped = redis.call('ZREMRANGEBYSCORE', members, '-inf', now)
local joined = 0
if op == 'sync' then
  if ttl > 0 then
    joined = redis.call('ZADD', members, now + ttl, member)
    -- A group whose members are all gone leaves nothing behind for long.
    local keep = math.max(ttl * 10, 60000)
    for _, key in ipairs({members, assignment, generation}) do redis.call('PEXPIRE', key, keep) end
  end
elseif op == 'leave' then
  joined = redis.call('ZREM', members, member)
else
  return redis.error_reply('ERR remq: invalid group operation: use sync or leave')
end
if dropped > 0 or joined > 0 or redis.call('EXISTS', assignment) == 0 then
  rebalance()
end
local gen = tonumber(redis.call('GET', generation) or '0')
if op == 'leave' then return gen end
local mine = {}
local live = redis.call('ZSCORE', members, member) and 1 or 0
if live == 1 then
  for p in string.gmatch(redis.call('HGET', assignment, member) or '', '%d+') do
    table.insert(mine, tonumber(p))
  end
end
return {gen, redis.call('ZCARD', members), live, mine}
