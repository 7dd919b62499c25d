--[[ window: a page of jobs in one state, in the state's own order (for
`zizq top`).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  state: 'ready' (dispatch order: priority, then id, across the
         queues given), 'scheduled' (by due time) or 'in_flight' (by
         dequeue time)
ARGV[2]  offset: jobs to skip (0-based)
ARGV[3]  count: jobs to return (1..500)
ARGV[4..] ready only: the queues to merge

Reads at most count index entries (scheduled, in flight, or ready with one
queue) or (offset + count) per queue (ready with several queues: the merge
needs each queue's head), plus count records; callers keep offset small when
they merge.

Returns {total, id1, score1, record1, id2, ...}: total is the number of jobs
in the state (over the queues given), then each job with its index score
(priority, ready_at or dequeued_at) and its record without the payload
('' for a job deleted meanwhile).
Errors: "ZIZQ INVALID" (a bad state or window).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local state, offset, count = ARGV[1], ARGV[2], ARGV[3]
if not natural(offset) or not natural(count) or tonumber(count) < 1 or tonumber(count) > 500 then
  return fail_with('INVALID', 'window ' .. tostring(offset) .. '+' .. tostring(count) .. ' is out of range')
end
offset, count = tonumber(offset), tonumber(count)
local rows, total = {}, 0

local function take_range(key, first, last)
  local flat = redis.call('ZRANGE', key, first, last, 'WITHSCORES')
  local out = {}
  for i = 1, #flat, 2 do out[#out + 1] = {flat[i], tonumber(flat[i + 1])} end
  return out
end

if state == 'scheduled' or state == 'in_flight' then
  local key = P .. (state == 'scheduled' and 'scheduled' or 'inflight')
  total = redis.call('ZCARD', key)
  rows = take_range(key, offset, offset + count - 1)
elseif state == 'ready' then
  local nonempty = {}
  for i = 4, #ARGV do
    local key = P .. 'ready:' .. ARGV[i]
    local n = redis.call('ZCARD', key)
    total = total + n
    if n > 0 then nonempty[#nonempty + 1] = key end
  end
  if #nonempty == 1 then
    rows = take_range(nonempty[1], offset, offset + count - 1)
  else
    local all = {}
    for _, key in ipairs(nonempty) do
      for _, row in ipairs(take_range(key, 0, offset + count - 1)) do all[#all + 1] = row end
    end
    table.sort(all, function(x, y)
      if x[2] ~= y[2] then return x[2] < y[2] end
      return x[1] < y[1]
    end)
    for i = offset + 1, math.min(#all, offset + count) do rows[#rows + 1] = all[i] end
  end
else
  return fail_with('INVALID', 'state ' .. tostring(state) .. ' is not ready, scheduled or in_flight')
end

local out = {total}
for _, row in ipairs(rows) do
  local job = load_job(P, row[1])
  if job then job.d = nil end
  out[#out + 1] = row[1]
  out[#out + 1] = row[2]
  out[#out + 1] = job and pack_job(job) or ''
end
return out
