--[[ release: give jobs back to their queues untouched (in_flight -> ready).

Used by a worker that is stopping for the jobs it took but never started. The
job keeps its id, and so its place in line; attempts do not change and no error
is recorded; it holds its unique key again, as a waiting job.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id; only jobs this worker holds are released
ARGV[2..] pairs: job id, then its dequeued_at ("da") as the take returned
         it, so that only that attempt is released; '' for any attempt

Returns the number of jobs released.

Errors: "ZIZQ INVALID" when the ids and dequeued_at values do not pair up.
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
local worker = ARGV[1]
if #ARGV % 2 ~= 1 then
  return fail_with('INVALID', 'release takes pairs of job id and dequeued_at after the worker id')
end
local released = 0
for i = 2, #ARGV, 2 do
  local id = ARGV[i]
  local job = load_job(P, id)
  if holds(job, worker, ARGV[i + 1]) then
    requeue(P, id, job)
    released = released + 1
  end
end
return released
