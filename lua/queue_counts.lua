--[[ queue_counts: jobs per queue in a window of one index.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  index key below the prefix: 'scheduled', 'inflight', 'completed',
         'dead' or 'waiting' (ready jobs are counted with ZCARD of 'ready:<queue>')
ARGV[2]  first rank to look at (0-based)
ARGV[3]  how many index entries to look at (1..10000)

The indexes of these states are not kept per queue, so counting them per
queue reads each job's record; a client walks an index window by window.

Returns {next, queue1, count1, queue2, count2, ...}: next is the rank to
look at next (-1 when the index ends). Jobs past purge_at are not counted.
Errors: "ZIZQ INVALID" (a bad index or window).
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
local index, first, size = ARGV[1], ARGV[2], ARGV[3]
if index ~= 'scheduled' and index ~= 'inflight' and index ~= 'completed' and index ~= 'dead' and index ~= 'waiting' then
  return fail_with('INVALID', 'index ' .. tostring(index) .. ' is not scheduled, inflight, completed, dead or waiting')
end
if not natural(first) or not natural(size) or tonumber(size) < 1 or tonumber(size) > 10000 then
  return fail_with('INVALID', 'window ' .. tostring(first) .. '+' .. tostring(size) .. ' is out of range')
end
first, size = tonumber(first), tonumber(size)
local ids = redis.call('ZRANGE', P .. index, first, first + size - 1)
local now = now_ms()
local counts = {}
for _, id in ipairs(ids) do
  local job = visible_job(P, id, now)
  if job then counts[job.q] = (counts[job.q] or 0) + 1 end
end
local out = {#ids == size and first + size or -1}
for q, n in pairs(counts) do
  out[#out + 1] = q
  out[#out + 1] = n
end
return out
