--[[ ack: mark jobs done (in_flight -> completed).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id; only jobs this worker holds are acknowledged
ARGV[2..] triples: job id; its dequeued_at ("da") as the take returned it,
         so that only that attempt is acknowledged, '' for any attempt; and
         the handler's result as JSON text, '' for none

A completed job is deleted at once when its completed retention (the job's
own, else the namespace's, default 0) is 0; otherwise it is kept until
purge_at = now + retention, with its result (field "rs"; a job deleted at
once keeps none). Acknowledging twice is harmless: the second time
the job is no longer in flight for this worker, or is in flight for a later
attempt (another dequeued_at). The loss count "rp" and the suspect mark
"sx" are reset (see heartbeat.lua).

Returns the ids that were not acknowledged (unknown, deleted, not in flight,
held by another worker, or in another attempt).

Errors: "ZIZQ INVALID" when the arguments after the worker id are not triples.
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
local worker = ARGV[1]
local now = now_ms()
local default_ms = config(P, 'completed_ms')
if #ARGV % 3 ~= 1 then
  return fail_with('INVALID', 'ack takes triples of job id, dequeued_at and result after the worker id')
end
local missed, acked, jobs, seen, results = {}, {}, {}, {}, {}
local ids = {}
for i = 2, #ARGV, 3 do ids[#ids + 1] = ARGV[i] end
local loaded = load_jobs(P, ids)
for k, id in ipairs(ids) do
  local i = 3 * k - 1  -- the id's place in ARGV
  local job = loaded[k]
  if seen[id] or not holds(job, worker, ARGV[i + 1]) then  -- named twice: the second misses
    missed[#missed + 1] = id
  else
    seen[id] = true
    acked[#acked + 1] = id
    jobs[#acked] = job
    results[#acked] = ARGV[i + 2]
  end
end
-- Out of flight, all at once (leave_flight, batched).
if #acked > 0 then
  call_in_slices('ZREM', P .. 'inflight', acked, 1)
  call_in_slices('SREM', P .. 'worker:' .. worker, acked, 1)
end
-- Deleted at once (a retention of 0, the default) all together; kept one by one.
local freed, gone, gone_jobs = {}, {}, {}
for i, id in ipairs(acked) do
  local job = jobs[i]
  job.w, job.ca, job.rp, job.sx, job.st = nil, now, nil, nil, nil
  limit_release(P, job, freed)
  local retention = job.rc or default_ms
  if retention <= 0 then
    gone[#gone + 1] = id
    gone_jobs[#gone] = job
  else
    if results[i] ~= '' then job.rs = results[i] end
    finish(P, id, job, 'completed', now, retention)
  end
end
forget_finished(P, gone, gone_jobs, 'completed', now)
limit_flush(P, freed)
tally(P, now, 'completed', #acked)
return missed
