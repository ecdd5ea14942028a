-- consume.lua: read stored messages after a cursor from every channel matching a pattern.
--
--   EVAL <consume.lua> 0 <pattern> <cursor> [<limit> [state|packed]]
--   EVAL <consume.lua> 1 <base> <pattern> <cursor> [<limit> [state|packed]]
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  pattern: a Redis glob over channel names (the same syntax as PSUBSCRIBE)
-- ARGV[2]  cursor: only messages with an id strictly greater than this are returned
-- ARGV[3]  (optional) limit: at most this many messages; default 1000, capped at 10000
-- ARGV[4]  (optional) "state": put the log's state first in the reply;
--          "packed": the same page and state, in one MessagePack string (below)
-- Reply    array of "<channel>@<id>\n<message>", ascending by id across all channels;
--          fewer than limit (possibly none) means the log holds nothing more for now.
--          With "state", the first element is {head, removed}: head is the last id
--          issued (<base>:id), removed the highest id flush.lua removed from a
--          matching channel (the hash <base>:removed), 0 if none. removed > cursor
--          means messages after the cursor are gone; head < cursor means the id
--          counter went backwards (data loss in Redis).
--          With "packed", one bulk string: the MessagePack encoding of
--          [head, removed, [channel, entry, entry, ..., channel, entry, ...]]:
--          the page in the same order as the frames, each entry as XRANGE returns
--          it, [<id>-0, [field, <message>]], and belonging to the channel named
--          last before it. No frame strings are built, so it costs Redis and the
--          client less per message; a client with a MessagePack decoder should
--          prefer it.
-- Errors   "ERR remq: invalid cursor ..." / "ERR remq: invalid limit ..."
--
-- Channels are found through the registry set <base>:channels (SSCAN MATCH), never
-- KEYS. When one channel matches, its stream is the answer: one XRANGE. Several
-- streams are merged lazily: each channel is read in pages sized by its share of
-- the output, so a call reads about `limit` entries, not all of them.
local base = KEYS[1] or 'remq'
local pattern, cursor, limit = ARGV[1], ARGV[2], ARGV[3]
if pattern == nil or pattern == '' then
  return redis.error_reply('ERR remq: invalid pattern: a pattern must not be empty')
end
if cursor == nil or not string.find(cursor, '^%d+$') then
  return redis.error_reply('ERR remq: invalid cursor: it must be a message id, a non-negative integer (0 reads from the start)')
end
if limit == nil or limit == '' then
  limit = 1000
elseif string.find(limit, '^%d+$') and tonumber(limit) > 0 then
  limit = math.min(tonumber(limit), 10000)
else
  return redis.error_reply('ERR remq: invalid limit: it must be a positive integer (it is capped at 10000)')
end

local packed = ARGV[4] == 'packed'
local with_state = packed or ARGV[4] == 'state'
if ARGV[4] ~= nil and not with_state then
  return redis.error_reply('ERR remq: invalid option: the fourth argument can only be "state" or "packed"')
end

local registry = base .. ':channels'
local channels = {}
if string.find(pattern, '[%*%?%[\\]') then
  local scan = '0'
  repeat
    local reply = redis.call('SSCAN', registry, scan, 'MATCH', pattern, 'COUNT', 1000)
    scan = reply[1]
    for _, name in ipairs(reply[2]) do channels[#channels + 1] = name end
  until scan == '0'
elseif redis.call('SISMEMBER', registry, pattern) == 1 then
  channels[1] = pattern
end

-- {head, removed}, see the header.
local function state()
  local removed = 0
  -- in slices: unpack() of thousands of names would overflow Lua's stack
  for i = 1, #channels, 1000 do
    local ids = redis.call('HMGET', base .. ':removed', unpack(channels, i, math.min(i + 999, #channels)))
    for _, id in ipairs(ids) do
      if id and tonumber(id) > removed then removed = tonumber(id) end
    end
  end
  return {tonumber(redis.call('GET', base .. ':id') or '0'), removed}
end

-- The "packed" reply around a page of channel names and entries.
local function pack(items)
  local log = state()
  return cmsgpack.pack({log[1], log[2], items})
end

if #channels == 0 then
  if packed then return pack({}) end
  if with_state then return {state()} end
  return {}
end

local after = cursor .. '-0'

-- A stream entry is {"<id>-0", {"m", <message>}}; its frame is
-- "<channel>@<id>\n<message>", the id being the entry id up to its "-".
local sub, find, byte = string.sub, string.find, string.byte

if #channels == 1 then
  -- One channel: its stream is already in id order, so one XRANGE is the answer.
  -- Its reply becomes the result in place: packed, as it is after the channel's
  -- name; otherwise entry i replaced by its frame.
  local header = channels[1] .. '@'
  local page = redis.call('XRANGE', base .. ':channel:' .. channels[1], '(' .. after, '+', 'COUNT', limit)
  if packed then
    if #page > 0 then table.insert(page, 1, channels[1]) end
    return pack(page)
  end
  for i = 1, #page do
    local entry = page[i]
    local entry_id = entry[1]
    -- Remq's entry ids end in "-0": cut those two bytes without a search.
    local id_end = byte(entry_id, -2) == 45 and -3 or find(entry_id, '-', 1, true) - 1
    page[i] = header .. sub(entry_id, 1, id_end) .. '\n' .. entry[2][2]
  end
  if with_state then table.insert(page, 1, state()) end
  return page
end

-- Several channels: one source per channel, with its buffered page of entries and
-- where to read next, merged through a binary min-heap on the head entry's id.
local heap, size, n = {}, 0, 0

-- Reads the next `count` entries of a source, noting how many messages the call
-- had returned by then.
local function refill(s, count)
  local page = redis.call('XRANGE', s.key, '(' .. s.after, '+', 'COUNT', count)
  s.entries, s.pos, s.done, s.read_at = page, 1, #page < count, n
  if #page > 0 then s.after = page[#page][1] end
  return #page > 0
end

-- Caches the head entry's id: as digits for the frame, as a number for the heap.
local function read_head(s)
  local entry_id = s.entries[s.pos][1]
  local digits = sub(entry_id, 1, find(entry_id, '-', 1, true) - 1)
  s.digits, s.id = digits, tonumber(digits)
end

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
local first_page = math.max(1, math.ceil(limit / #channels))
for _, name in ipairs(channels) do
  local s = { name = name, header = name .. '@', key = base .. ':channel:' .. name, after = after }
  if refill(s, first_page) then
    read_head(s)
    size = size + 1
    heap[size] = s
  end
end
for i = math.floor(size / 2), 1, -1 do sift_down(i) end

local out = {}
if with_state and not packed then out[1] = state() end
local skip = #out
-- Packed: the source whose name came last, and how many items are out.
local named, items = nil, 0
while size > 0 do
  local s = heap[1]
  n = n + 1
  if packed then
    if s ~= named then
      named, items = s, items + 1
      out[items] = s.name
    end
    items = items + 1
    out[items] = s.entries[s.pos]
  else
    out[n + skip] = s.header .. s.digits .. '\n' .. s.entries[s.pos][2][2]
  end
  -- Stop as soon as the page is full: refilling a source now would read entries
  -- this call cannot return.
  if n == limit then break end
  s.pos = s.pos + 1
  -- A drained source is read again for as many entries as its share of the output
  -- since its last read predicts for the rest of the call: about one entry of
  -- look-ahead when many channels take turns, nearly everything that is left
  -- when one channel supplies most messages.
  if s.pos > #s.entries
    and (s.done or not refill(s, math.ceil((limit - n) * #s.entries / (n - s.read_at)))) then
    heap[1] = heap[size]
    heap[size] = nil
    size = size - 1
  else
    read_head(s)
  end
  if size > 0 then sift_down(1) end
end
if packed then return pack(out) end
return out
