--[[ query: read jobs that match a filter, a bounded window at a time.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  mode: 'walk' (look at a window of an index) or 'ids' (look at the
         given ids)
ARGV[2]  filter JSON (see includes/filter.lua)
ARGV[3]  order: 'asc' or 'desc' (by id)
ARGV[4]  after: only ids strictly after this one in that order ('' = any)
ARGV[5]  before: only ids strictly before this one in that order ('' = any);
         a client that already holds a full page passes its last id here, so
         records that could not make the page are not read
ARGV[6]  most matches to return, the first in id order (0 = all of them)
ARGV[7]  what to return: 'jobs' (records with payloads), 'meta' (records
         without payloads), 'ids' (ids, each with '' for its record) or 'count'
         (only the number of matches)
walk:
ARGV[8]  index key below the prefix: 'ready:<queue>', 'scheduled',
         'inflight', 'completed', 'dead' or 'waiting'
ARGV[9]  first rank to look at (0-based, in the index's own order)
ARGV[10] how many index entries to look at (1..2000)
ids:
ARGV[8..] job ids (at most 2000)

Jobs that do not exist or are past purge_at are skipped (they are invisible).
Every call reads at most 2000 index entries and records (about 25 ms at
most), so it is bounded whatever the size of the namespace.

Returns {next, count, id1, record1, id2, record2, ...}: next is the rank to
look at next in a walk (-1 when the index ends; always -1 for ids), count the
number of matches in the window (all of them, before the cap of ARGV[6]),
then the matches in id order, each with its record as get.lua returns it
(without the payload in 'meta' mode; '' in 'ids' mode; none in 'count'
mode).
Errors: "ZIZQ INVALID" (a bad mode, filter, order, number or index).
]]
--@include "includes/lifecycle.lua"
--@include "includes/filter.lua"

local P = KEYS[1]
local mode, order, after, before = ARGV[1], ARGV[3], ARGV[4], ARGV[5]
local f, err = parse_filter(ARGV[2])
if not f then return err end
if order ~= 'asc' and order ~= 'desc' then return fail_with('INVALID', 'order ' .. order .. ' is not asc or desc') end
if not natural(ARGV[6]) then return fail_with('INVALID', 'limit ' .. ARGV[6] .. ' is not a non-negative integer') end
local cap, what = tonumber(ARGV[6]), ARGV[7]
if what ~= 'jobs' and what ~= 'meta' and what ~= 'ids' and what ~= 'count' then
  return fail_with('INVALID', 'output ' .. tostring(what) .. ' is not jobs, meta, ids or count')
end
local MAX = 2000

local ids, next_rank = {}, -1
if mode == 'walk' then
  local index, first, size = ARGV[8], ARGV[9], ARGV[10]
  local ok_index = index == 'scheduled' or index == 'inflight' or index == 'completed' or index == 'dead'
    or index == 'waiting'
    or (string.sub(index or '', 1, 6) == 'ready:' and name_ok(string.sub(index, 7)))
  if not ok_index then return fail_with('INVALID', 'index ' .. tostring(index) .. ' is not a job index') end
  if not natural(first) or not natural(size) or tonumber(size) < 1 or tonumber(size) > MAX then
    return fail_with('INVALID', 'window ' .. tostring(first) .. '+' .. tostring(size) .. ' is out of range')
  end
  first, size = tonumber(first), tonumber(size)
  ids = redis.call('ZRANGE', P .. index, first, first + size - 1)
  if #ids == size then next_rank = first + size end
elseif mode == 'ids' then
  if #ARGV - 7 > MAX then return fail_with('INVALID', 'at most ' .. MAX .. ' ids a call') end
  for i = 8, #ARGV do ids[#ids + 1] = ARGV[i] end
else
  return fail_with('INVALID', 'mode ' .. tostring(mode) .. ' is not walk or ids')
end

local now = now_ms()
local found = {}
for _, id in ipairs(ids) do
  if id_between(id, order, after, before) then
    local job = visible_job(P, id, now)
    if job and job_matches(job, f) then
      found[#found + 1] = {id, job}
    end
  end
end

local out = {next_rank, #found}
if what == 'count' then return out end
if order == 'desc' then
  table.sort(found, function(x, y) return x[1] > y[1] end)
else
  table.sort(found, function(x, y) return x[1] < y[1] end)
end
local n = #found
if cap > 0 and cap < n then n = cap end
for i = 1, n do
  local id, job = found[i][1], found[i][2]
  if what == 'meta' then job.d = nil end
  out[#out + 1] = id
  out[#out + 1] = what == 'ids' and '' or pack_job(job)
end
return out
