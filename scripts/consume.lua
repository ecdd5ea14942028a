-- consume.lua: read stored messages after a cursor from every channel matching a pattern.
--
--   EVAL <consume.lua> 0 <pattern> <cursor> [<limit>]
--   EVAL <consume.lua> 1 <base> <pattern> <cursor> [<limit>]
--
-- KEYS[1]  (optional) the namespace base; "remq" when numkeys is 0
-- ARGV[1]  pattern: a Redis glob over channel names (the same syntax as PSUBSCRIBE)
-- ARGV[2]  cursor: only messages with an id strictly greater than this are returned
-- ARGV[3]  (optional) limit: at most this many messages; default 1000, capped at 10000
-- Reply    array of "<channel>@<id>\n<message>", ascending by id across all channels;
--          fewer than limit (possibly none) means the log holds nothing more for now
-- Errors   "ERR remq: invalid cursor ..." / "ERR remq: invalid limit ..."
--
-- Channels are found through the registry set <base>:channels (SSCAN MATCH), never
-- KEYS, and their streams are merged lazily: each channel is read in pages that
-- grow as it is drained, so a call reads about `limit` entries, not all of them.
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
if #channels == 0 then return {} end

-- One source per channel: its buffered page of entries and where to read next.
local first_page = math.max(1, math.ceil(limit / #channels))
local sources, heap = {}, {}

local function refill(s)
  local page = redis.call('XRANGE', s.key, '(' .. s.after, '+', 'COUNT', s.page)
  s.entries, s.pos, s.done = page, 1, #page < s.page
  s.page = math.min(s.page * 2, limit)
  if #page > 0 then s.after = page[#page][1] end
  return #page > 0
end

local function head_id(s)
  local entry_id = s.entries[s.pos][1]
  return tonumber(string.sub(entry_id, 1, string.find(entry_id, '-', 1, true) - 1))
end

local function less(a, b) return a.id < b.id end

local function sift_down(i)
  local n = #heap
  while true do
    local l, r, m = 2 * i, 2 * i + 1, i
    if l <= n and less(heap[l], heap[m]) then m = l end
    if r <= n and less(heap[r], heap[m]) then m = r end
    if m == i then return end
    heap[i], heap[m] = heap[m], heap[i]
    i = m
  end
end

for _, name in ipairs(channels) do
  local s = { name = name, key = base .. ':channel:' .. name, after = cursor .. '-0', page = first_page }
  if refill(s) then
    s.id = head_id(s)
    heap[#heap + 1] = s
  end
end
for i = math.floor(#heap / 2), 1, -1 do sift_down(i) end

local out = {}
while #out < limit and #heap > 0 do
  local s = heap[1]
  local entry = s.entries[s.pos]
  -- entry = {"<id>-0", {"m", <message>}}
  out[#out + 1] = s.name .. '@' .. string.format('%d', s.id) .. '\n' .. entry[2][2]
  s.pos = s.pos + 1
  if s.pos > #s.entries and (s.done or not refill(s)) then
    heap[1] = heap[#heap]
    heap[#heap] = nil
  else
    s.id = head_id(s)
  end
  if #heap > 0 then sift_down(1) end
end
return out
