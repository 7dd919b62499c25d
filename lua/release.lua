--[[ release: give jobs back to their queues untouched (in_flight -> ready).

Used by a worker that is stopping for the jobs it took but never started. The
job keeps its id, and so its place in line; attempts do not change and no error
is recorded; it holds its unique key again, as a waiting job.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id; only jobs this worker holds are released
ARGV[2..] job ids

Returns the number of jobs released.
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
local worker = ARGV[1]
local released = 0
for i = 2, #ARGV do
  local id = ARGV[i]
  local job = load_job(P, id)
  if job and job.s == 'in_flight' and job.w == worker then
    requeue(P, id, job)
    released = released + 1
  end
end
return released
