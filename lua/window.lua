--[[ window: a page of jobs in one state, in the state's own order (for
`zizq top`).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  state: 'ready' (dispatch order: priority, then id, across the
         queues given), 'scheduled' (by due time), 'in_flight' (by
         dequeue time), 'waiting' (waiting for dependencies, by enqueue
         time), 'dead' (kept dead jobs, the latest purge_at first) or
         'retries' (scheduled jobs with attempts > 0, by due time)
ARGV[2]  offset: jobs to skip (0-based); for 'retries', the rank in
         "scheduled" where the scan starts
ARGV[3]  count: jobs to return (1..500)
ARGV[4..] ready: the queues to merge; retries: ARGV[4], the most entries
         of "scheduled" to look at (count..10000)

Reads at most count index entries (scheduled, in flight, waiting, dead, or ready
with one queue) or (offset + count) per queue (ready with several queues:
the merge needs each queue's head), plus count records; callers keep offset
small when they merge. 'retries' looks at up to ARGV[4] entries of
"scheduled" from the offset and reads each one's record, keeping those with
attempts > 0. For in-flight jobs, one GET of "running:<worker>" per worker
on the page; for 'retries' and 'dead', the last element of "errors:<id>" per
row.

Returns {total, next, id1, score1, record1, notes1, id2, ...}:
  total   the jobs in the state (over the queues given); 'dead' counts only
          those not past purge_at; 'retries' gives the entries of
          "scheduled" (its matches cannot be counted without reading them all)
  next    the offset of the next page, or -1 when this page ends the state
  idK, scoreK  each job with its index score (priority, ready_at,
          dequeued_at, enqueue time or purge_at)
  recordK its record without the payload ('' for a job deleted meanwhile)
  notesK  '' or a JSON object: "worker" (in flight: its holder), "running"
          (in flight: true when its handler runs, false when it was taken
          ahead and waits, per the holder's running:<worker> key; absent when
          the holder publishes none), "error" ('retries' and 'dead': the last
          error record, as stored in errors:<id>)
Errors: "ZIZQ INVALID" (a bad state, window or scan size).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local state, offset, count = ARGV[1], ARGV[2], ARGV[3]
if not natural(offset) or not natural(count) or tonumber(count) < 1 or tonumber(count) > 500 then
  return fail_with('INVALID', 'window ' .. tostring(offset) .. '+' .. tostring(count) .. ' is out of range')
end
offset, count = tonumber(offset), tonumber(count)
local rows, total, next_offset = {}, 0, -1

local function take_range(key, first, last)
  local flat = redis.call('ZRANGE', key, first, last, 'WITHSCORES')
  local out = {}
  for i = 1, #flat, 2 do out[#out + 1] = {flat[i], tonumber(flat[i + 1])} end
  return out
end

local ORDERED = {scheduled = 'scheduled', in_flight = 'inflight', waiting = 'waiting'}
if ORDERED[state] then
  local key = P .. ORDERED[state]
  total = redis.call('ZCARD', key)
  rows = take_range(key, offset, offset + count - 1)
elseif state == 'dead' then
  -- Members past purge_at (awaiting the purge) have the lowest scores: the
  -- live ones are the last `total` ranks. Read in ascending order (ZRANGE's
  -- REV needs Redis 6.2), then turned around.
  local key = P .. 'dead'
  local n = redis.call('ZCARD', key)
  total = redis.call('ZCOUNT', key, '(' .. now_ms(), '+inf')
  if offset < total then
    local up = take_range(key, n - math.min(offset + count, total), n - 1 - offset)
    for i = #up, 1, -1 do rows[#rows + 1] = up[i] end
  end
elseif state == 'retries' then
  local scan = ARGV[4]
  if not natural(scan) or tonumber(scan) < count or tonumber(scan) > 10000 then
    return fail_with('INVALID', 'scan size ' .. tostring(scan) .. ' is not in ' .. count .. '..10000')
  end
  local key = P .. 'scheduled'
  total = redis.call('ZCARD', key)
  local looked = 0
  for _, row in ipairs(take_range(key, offset, offset + tonumber(scan) - 1)) do
    looked = looked + 1
    local job = load_job(P, row[1])
    if job and job.a > 0 then
      row[3] = job
      rows[#rows + 1] = row
      if #rows == count then break end
    end
  end
  if offset + looked < total then next_offset = offset + looked end
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
  return fail_with('INVALID', 'state ' .. tostring(state) .. ' is not ready, scheduled, in_flight, waiting, dead or retries')
end
if state ~= 'retries' and offset + count < total then next_offset = offset + count end

-- What each holder's heartbeat last said runs: ' id1 id2 ... ', or false.
local running = {}
local function notes_of(id, job)
  local parts = {}
  if job.s == 'in_flight' and job.w then
    local w = job.w
    if running[w] == nil then
      local ids = redis.call('GET', P .. 'running:' .. w)
      running[w] = ids and (' ' .. ids .. ' ') or false
    end
    parts[#parts + 1] = '"worker":' .. cjson.encode(w)
    if running[w] then
      local on = string.find(running[w], ' ' .. id .. ' ', 1, true) ~= nil
      parts[#parts + 1] = '"running":' .. (on and 'true' or 'false')
    end
  end
  if state == 'retries' or state == 'dead' then
    local last = redis.call('LRANGE', P .. 'errors:' .. id, -1, -1)
    if last[1] then parts[#parts + 1] = '"error":' .. last[1] end
  end
  if #parts == 0 then return '' end
  return '{' .. table.concat(parts, ',') .. '}'
end

local out = {total, next_offset}
for _, row in ipairs(rows) do
  local job = row[3] or load_job(P, row[1])
  out[#out + 1] = row[1]
  out[#out + 1] = row[2]
  if job then
    job.d = nil
    out[#out + 1] = pack_job(job)
    out[#out + 1] = notes_of(row[1], job)
  else
    out[#out + 1] = ''
    out[#out + 1] = ''
  end
end
return out
