-- consume.lua: read stored messages after a cursor from every channel matching a pattern.
--
--   EVAL <consume.lua> 0 <pattern> <cursor> [<limit> [state|packed|route]]
--   EVAL <consume.lua> 1 <base> <pattern> <cursor> [<limit> [state|packed|route]]
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  pattern: a Redis glob over channel names (the same syntax as PSUBSCRIBE)
-- ARGV[2]  cursor: only messages with an id strictly greater than this are returned;
--          0 reads from the start, and so does a negative integer (the 2013 clients
--          send -1 for "from the start"); anything else that is not an integer is
--          an error
-- ARGV[3]  (optional) limit: at most this many messages; default 1000, capped at 10000
-- ARGV[4]  (optional) "state": put the log's state first in the reply;
--          "packed": the same page and state, in one MessagePack string (below);
--          "route": as "packed", but the caller follows the order index itself (below)
-- Reply    array of "<channel>@<id>\n<message>", ascending by id across all channels.
--          Without a fourth argument (the seed's call) the page is complete: fewer
--          than limit messages (possibly none) means the log holds nothing more for now.
--          With "state", the first element is {head, removed}: head is the last id
--          issued (<base>:id); removed the highest id retention removed from a
--          matching channel before this consumer read it (0 if none; see below).
--          removed > cursor means messages after the cursor are gone; head < cursor
--          means the id counter went backwards (data loss in Redis). Such a call may
--          stop early to stay short (a pattern that few of many messages match):
--          then the state is {head, removed, next}, every matching message with an
--          id in (cursor, next] is in the page, and the next call goes on with
--          cursor = next. Without a third element, the page is complete as in the
--          seed's call.
--          With "packed", one bulk string: the MessagePack encoding of
--          [head, removed, [channel, entry, entry, ..., channel, entry, ...]], and
--          `next` as a fourth element when the call stopped early:
--          the page in the same order as the frames, each entry as XRANGE returns
--          it, [<id>-0, [field, <message>]], and belonging to the channel named
--          last before it. No frame strings are built, so it costs Redis and the
--          client less per message; a client with a MessagePack decoder should
--          prefer it.
--          With "route", the reply is as with "packed", except where the call
--          would follow the order index (see below): it stops there instead,
--          with `next` the id after which the index is to be followed and a
--          fifth element, "index". The caller then reads <base>:order itself
--          (XRANGE (<next>-0 <head>-0 COUNT ..., the channel numbers' names with
--          HMGET <base>:channel-names, the glob matched as Redis matches it, the
--          bodies with one XRANGE per channel span): plain commands, each short,
--          whose replies cost Redis far less than a script's tables do.
-- Errors   "ERR remq: invalid cursor ..." / "ERR remq: invalid limit ..."
--
-- How channels are found (never KEYS), by what the pattern allows:
-- - a literal name: that channel's stream, one XRANGE;
-- - a glob that at most NARROW channels match, among the at most LEX_SCAN that
--   share its literal prefix (the part before its first * ? [ or \): those
--   channels, from the lexically ordered registry <base>:channel-index
--   (ZRANGEBYLEX), matched here, their streams merged lazily (each read in pages
--   sized by its share of the output);
-- - any other glob: the order index <base>:order, which names the channel of every
--   id (entry <id>-0 {c <channel number>}, or <last id>-0 {c <number> n <count>}
--   for a batch of the ids last-count+1 .. last),
--   is followed from the cursor; the channels it names are matched here (by the
--   numbers' names in <base>:channel-names), and the bodies read from the matching
--   channels' streams. Such a call looks at about BUDGET index entries and returns
--   at most ROOM messages (the early stop above; each message costs a lookup in
--   its channel's stream), except in the seed's call, which must return a
--   complete page.
-- Ids below <base>:order-from were written before the order index existed (by
-- earlier versions of these scripts): they are read by merging every matching
-- channel (SSCAN MATCH of <base>:channels), as those versions did.
-- In the order index path, "removed" is the highest matching id in the page's
-- span whose message is gone from its stream. Ids the index itself no longer
-- holds (flush.lua trims it past entries whose messages are all gone) are not
-- reported: the index cannot tell which of them matched.
local NARROW, LEX_SCAN, BUDGET, CHUNK, ROOM = 32, 2000, 4000, 500, 250

local base = KEYS[1] or 'remq'
local pattern, cursor, limit = ARGV[1], ARGV[2], ARGV[3]
if pattern == nil or pattern == '' then
  return redis.error_reply('ERR remq: invalid pattern: a pattern must not be empty')
end
if cursor ~= nil and string.find(cursor, '^%-%d+$') then
  cursor = '0'
end
if cursor == nil or not string.find(cursor, '^%d+$') then
  return redis.error_reply('ERR remq: invalid cursor: it must be a message id, an integer (0 or a negative one reads from the start)')
end
if limit == nil or limit == '' then
  limit = 1000
elseif string.find(limit, '^%d+$') and tonumber(limit) > 0 then
  limit = math.min(tonumber(limit), 10000)
else
  return redis.error_reply('ERR remq: invalid limit: it must be a positive integer (it is capped at 10000)')
end

local route = ARGV[4] == 'route'
local packed = route or ARGV[4] == 'packed'
local with_state = packed or ARGV[4] == 'state'
if ARGV[4] ~= nil and not with_state then
  return redis.error_reply('ERR remq: invalid option: the fourth argument can only be "state", "packed" or "route"')
end

local sub, find, byte, fmt = string.sub, string.find, string.byte, string.format
local head = tonumber(redis.call('GET', base .. ':id') or '0')
local from = tonumber(cursor)
local ledger = base .. ':removed'

-- The page, as frames or packed items; how many messages it holds; the
-- channel named last (packed).
local out, n, named = {}, 0, nil
if with_state and not packed then out[1] = false end

-- The message id of an entry id "<id>-<seq>" (Remq writes "<id>-0"), as digits.
local function digits(entry_id)
  return sub(entry_id, 1, byte(entry_id, -2) == 45 and -3 or find(entry_id, '-', 1, true) - 1)
end

local function emit(name, entry)
  n = n + 1
  if packed then
    if name ~= named then
      named = name
      out[#out + 1] = name
    end
    out[#out + 1] = entry
  else
    out[#out + 1] = name .. '@' .. digits(entry[1]) .. '\n' .. entry[2][2]
  end
end

-- The reply around the page; `next` only when the call stopped early, and
-- "index" after it when it stopped where the caller follows the index.
local function reply(removed, next_id, to_index)
  local stopped = next_id and next_id < head and n < limit
  if packed then
    local r = {head, removed, out}
    if stopped then r[4] = next_id end
    if stopped and to_index then r[5] = 'index' end
    return cmsgpack.pack(r)
  end
  if with_state then out[1] = stopped and {head, removed, next_id} or {head, removed} end
  return out
end

-- The highest id retention removed from any of `names` (the ledger flush.lua keeps).
local function removed_from(names)
  local removed = 0
  -- in slices: unpack() of thousands of names would overflow Lua's stack
  for i = 1, #names, 1000 do
    local ids = redis.call('HMGET', ledger, unpack(names, i, math.min(i + 999, #names)))
    for _, id in ipairs(ids) do
      if id and tonumber(id) > removed then removed = tonumber(id) end
    end
  end
  return removed
end

-- Redis' own glob matching (stringmatchlen in util.c, case-sensitive), so a
-- pattern selects here exactly the channels PSUBSCRIBE pushes: * ? [abc] [^a]
-- [a-z] and \ escapes; byte ranges compare bytes as C's signed chars do.
local function signed(b) if b > 127 then return b - 256 end return b end
local function glob(p, pi, s, si, skip, nesting)
  if nesting > 1000 then return false end
  local plen, slen = #p, #s
  while pi <= plen and si <= slen do
    local c = byte(p, pi)
    if c == 42 then -- *
      while pi < plen and byte(p, pi + 1) == 42 do pi = pi + 1 end
      if pi == plen then return true end
      while si <= slen do
        if glob(p, pi + 1, s, si, skip, nesting + 1) then return true end
        if skip[1] then return false end
        si = si + 1
      end
      skip[1] = true
      return false
    elseif c == 63 then -- ?
      si = si + 1
    elseif c == 91 then -- [
      pi = pi + 1
      local negate = byte(p, pi) == 94
      if negate then pi = pi + 1 end
      local sc, matched = byte(s, si), false
      while true do
        local pc = byte(p, pi)
        if pc == 92 and plen - pi >= 1 then -- \ inside a class
          pi = pi + 1
          if byte(p, pi) == sc then matched = true end
        elseif pc == 93 then -- ]
          break
        elseif pi > plen then -- an unterminated class ends with the pattern
          pi = pi - 1
          break
        elseif plen - pi >= 2 and byte(p, pi + 1) == 45 then -- a range x-y
          local lo, hi, x = signed(pc), signed(byte(p, pi + 2)), signed(sc)
          if lo > hi then lo, hi = hi, lo end
          pi = pi + 2
          if x >= lo and x <= hi then matched = true end
        elseif pc == sc then
          matched = true
        end
        pi = pi + 1
      end
      if negate then matched = not matched end
      if not matched then return false end
      si = si + 1
    else
      if c == 92 and plen - pi >= 1 then -- \x is x
        pi = pi + 1
        c = byte(p, pi)
      end
      if c ~= byte(s, si) then return false end
      si = si + 1
    end
    pi = pi + 1
    if si > slen then
      while byte(p, pi) == 42 do pi = pi + 1 end
      break
    end
  end
  return pi > plen and si > slen
end
local matches
-- The common `<prefix>*` needs no glob: a comparison of the name's start.
local star_prefix = string.match(pattern, '^([^%*%?%[\\]*)%*$')
if star_prefix then
  local length = #star_prefix
  matches = function(name) return sub(name, 1, length) == star_prefix end
else
  matches = function(name) return glob(pattern, 1, name, 1, {false}, 0) end
end

-- Merges the streams of `names` after `after` and up to the id `upto` ("+" for
-- no bound) into the page, through a binary min-heap on each stream's head
-- entry. Returns whether the page is full.
local function merge(names, after, upto)
  local bound = upto == '+' and '+' or upto .. '-0'
  if #names == 1 then
    -- One channel: its stream is already in id order; one XRANGE is the answer.
    local name = names[1]
    local page = redis.call('XRANGE', base .. ':channel:' .. name, '(' .. after .. '-0', bound, 'COUNT', limit - n)
    if n > 0 or #page == 0 then
      for i = 1, #page do emit(name, page[i]) end
    elseif packed then
      -- The reply becomes the page in place: after the channel's name, as it is.
      table.insert(page, 1, name)
      out, n, named = page, #page - 1, name
    else
      -- In place too: entry i replaced by its frame.
      local header = name .. '@'
      for i = 1, #page do page[i] = header .. digits(page[i][1]) .. '\n' .. page[i][2][2] end
      if with_state then table.insert(page, 1, false) end
      out, n = page, #page - (with_state and 1 or 0)
    end
    return n == limit
  end
  local heap, size, read = {}, 0, 0
  -- Reads the next `count` entries of a source, noting how many messages the
  -- merge had put out by then.
  local function refill(s, count)
    local page = redis.call('XRANGE', s.key, '(' .. s.after, bound, 'COUNT', count)
    s.entries, s.pos, s.done, s.read_at = page, 1, #page < count, read
    if #page > 0 then s.after = page[#page][1] end
    return #page > 0
  end
  local function read_head(s) s.id = tonumber(digits(s.entries[s.pos][1])) end
  local function sift_down(i)
    while true do
      local l, r, m = 2 * i, 2 * i + 1, i
      if l <= size and heap[l].id < heap[m].id then m = l end
      if r <= size and heap[r].id < heap[m].id then m = r end
      if m == i then return end
      heap[i], heap[m] = heap[m], heap[i]
      i = m
    end
  end
  -- Every source starts with an equal share of the limit.
  local first_page = math.max(1, math.ceil(limit / #names))
  for _, name in ipairs(names) do
    local s = { name = name, key = base .. ':channel:' .. name, after = after .. '-0' }
    if refill(s, first_page) then
      read_head(s)
      size = size + 1
      heap[size] = s
    end
  end
  for i = math.floor(size / 2), 1, -1 do sift_down(i) end
  while size > 0 do
    local s = heap[1]
    emit(s.name, s.entries[s.pos])
    read = read + 1
    -- Stop as soon as the page is full: refilling a source now would read entries
    -- this call cannot return.
    if n == limit then return true end
    s.pos = s.pos + 1
    -- A drained source is read again for as many entries as its share of the output
    -- since its last read predicts for the rest of the call: about one entry of
    -- look-ahead when many channels take turns, nearly everything that is left
    -- when one channel supplies most messages.
    if s.pos > #s.entries
      and (s.done or not refill(s, math.ceil((limit - read) * #s.entries / (read - s.read_at)))) then
      heap[1] = heap[size]
      heap[size] = nil
      size = size - 1
    else
      read_head(s)
    end
    if size > 0 then sift_down(1) end
  end
  return false
end

-- Follows the order index after the cursor (see the header), putting the
-- messages of matching channels into the page; stops when the page is full, at
-- the end of the index, or after `budget` entries. Returns removed and next.
local function follow_index(from, budget)
  local order = base .. ':order'
  local names, matched = {}, {}
  local examined, looked, removed, ended = from, 0, 0, false
  local room = budget and math.min(limit, ROOM) or limit
  -- Nothing lies after the head (a cursor from before Redis lost data, or from elsewhere).
  if from >= head then return 0, from end
  -- Resolves the channel numbers `entries` name that are not known yet.
  local function resolve(entries)
    local unknown, seen = {}, {}
    for _, e in ipairs(entries) do
      local number = e[2][2]
      if matched[number] == nil and not seen[number] then
        seen[number] = true
        unknown[#unknown + 1] = number
      end
    end
    for i = 1, #unknown, 1000 do
      local found_names = redis.call('HMGET', base .. ':channel-names', unpack(unknown, i, math.min(i + 999, #unknown)))
      for j, name in ipairs(found_names) do
        local number = unknown[i + j - 1]
        names[number] = name
        matched[number] = name and matches(name) or false
      end
    end
  end
  -- The last id of an index entry (a batch's entry is keyed by its last id and
  -- names `n` ids up to it), and its first.
  local function last_of(e) return tonumber(digits(e[1])) end
  local function first_of(e) return last_of(e) - (tonumber(e[2][4]) or 1) + 1 end
  -- Rounds: find as many matching ids as the page has room for, then read their
  -- bodies; ids whose messages retention removed leave room for another round.
  while n < room and not ended and not (budget and looked >= budget) do
    -- The ids to read, as runs of consecutive ids of one channel: {number, first, last}.
    local runs, found = {}, n
    -- Takes the ids of an entry above what was examined, while the page has room.
    local function take(e)
      local number, last = e[2][2], last_of(e)
      local first = math.max(first_of(e), examined + 1)
      if first > last then return end
      if matched[number] then
        last = math.min(last, first + room - found - 1)
        runs[#runs + 1] = {number, first, last}
        found = found + last - first + 1
      end
      examined = last
    end
    while found < room and not (budget and looked >= budget) do
      -- As many entries as the page has room for (fewer ids than that when
      -- some are batches), more once matches turn out sparse.
      local want = math.min(CHUNK, math.max(room - found, looked - (found - n)))
      local chunk = redis.call('XRANGE', order, fmt('(%d-0', examined), '+', 'COUNT', want)
      if #chunk == 0 then
        examined, ended = head, true
        break
      end
      resolve(chunk)
      for _, e in ipairs(chunk) do
        take(e)
        looked = looked + 1
        -- (A batch cut short is read again from the index by the next round:
        -- its entry is keyed by its last id, which is above what was examined.)
        if found >= room or (budget and looked >= budget) then break end
      end
    end
    -- The bodies: one XRANGE per channel, over the span of ids the page takes
    -- from it (every id of the channel in that span is one the page takes).
    local spans = {}
    for _, r in ipairs(runs) do
      local span = spans[r[1]]
      if span then span[2] = r[3] else spans[r[1]] = {r[2], r[3]} end
    end
    local stored = {}
    for number, span in pairs(spans) do
      local key = base .. ':channel:' .. names[number]
      stored[number] = {redis.call('XRANGE', key, fmt('%d-0', span[1]), fmt('%d-0', span[2])), 1}
    end
    for _, r in ipairs(runs) do
      local s, name = stored[r[1]], names[r[1]]
      for id = r[2], r[3] do
        local e = s[1][s[2]]
        -- Entries the index does not name (none, unless something else wrote them) are passed over.
        while e and tonumber(digits(e[1])) < id do
          s[2] = s[2] + 1
          e = s[1][s[2]]
        end
        if e and tonumber(digits(e[1])) == id then
          emit(name, e)
          s[2] = s[2] + 1
        else
          removed = id -- gone from its stream: retention removed it
        end
      end
    end
  end
  return removed, examined
end

-- A literal channel name: its stream, one XRANGE.
if not find(pattern, '[%*%?%[\\]') then
  merge({pattern}, cursor, '+')
  return reply(removed_from({pattern}))
end

-- Ids written before the order index existed: the merge of every matching channel.
local order_from = tonumber(redis.call('GET', base .. ':order-from') or '0')
local legacy_end = order_from == 0 and head or order_from - 1
local removed, after = 0, from
if from < legacy_end then
  local names, scan = {}, '0'
  repeat
    local r = redis.call('SSCAN', base .. ':channels', scan, 'MATCH', pattern, 'COUNT', 1000)
    scan = r[1]
    for _, name in ipairs(r[2]) do names[#names + 1] = name end
  until scan == '0'
  removed = removed_from(names)
  if #names > 0 and merge(names, cursor, fmt('%d', legacy_end)) then return reply(removed) end
  after = legacy_end
end

-- Few channels share the pattern's literal prefix: merge them.
local prefix = sub(pattern, 1, find(pattern, '[%*%?%[\\]') - 1)
local low, high = '-', '+'
if prefix ~= '' then low, high = '[' .. prefix, '(' .. prefix .. '\255' end
local registry = base .. ':channel-index'
local sharing = redis.call('ZLEXCOUNT', registry, low, high)
-- (`<prefix>*` matches every name that shares its prefix: no need to look.)
if sharing <= (star_prefix and NARROW or LEX_SCAN) then
  local names = {}
  for _, name in ipairs(redis.call('ZRANGEBYLEX', registry, low, high)) do
    if matches(name) then names[#names + 1] = name end
  end
  if #names <= NARROW then
    if #names > 0 then merge(names, after == from and cursor or fmt('%d', after), '+') end
    return reply(math.max(removed, removed_from(names)))
  end
end

-- Any other glob: the order index, within the budget unless this is the seed's
-- call, or followed by the caller.
if route then return reply(removed, after, true) end
local index_removed, next_id = follow_index(after, with_state and BUDGET or nil)
return reply(math.max(removed, index_removed), next_id)
