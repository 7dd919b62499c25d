--[[ defer: put an in-flight job back to wait, without using an attempt
(a handler raised zizq.RateLimited: someone else's limit said "later").

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id; only a job this worker holds can be deferred
ARGV[2]  job id
ARGV[3]  the attempt's dequeued_at ("da") as the take returned it, or ''
         for any attempt
ARGV[4]  retry_in: ms after Redis's clock (0: ready again now)

The job leaves flight (its limit slots are given back) and is scheduled at
now + retry_in: attempts unchanged, no error record, the same id and so the
same place in line once due; it holds its unique key as a waiting job.

Returns the job's record (see get.lua) after the change, or nil when the job
is not in flight for this worker in this attempt.

Errors: "ZIZQ INVALID" when retry_in is not a non-negative integer.
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
local worker, id = ARGV[1], ARGV[2]
if not natural(ARGV[4]) then
  return fail_with('INVALID', 'retry_in ' .. ARGV[4] .. ' is not a non-negative integer')
end
local job = load_job(P, id)
if not holds(job, worker, ARGV[3]) then return nil end
local at = now_ms() + tonumber(ARGV[4])
leave_flight(P, id, job)
job.s, job.st, job.r = 'scheduled', nil, at
local record = save_job(P, id, job)
unique_update(P, id, job)
schedule(P, id, job.q, at)
return record
