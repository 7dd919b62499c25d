--[[ progress: record how far a running job has got.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id; only a job this worker holds is changed
ARGV[2]  job id
ARGV[3]  the attempt's dequeued_at ("da") as the take returned it; '' for any
ARGV[4]  fraction done: a decimal number in 0..1, kept as text (field "pg")
ARGV[5]  message, or '' for none (field "pm")

The worker coalesces a handler's reports (at most one call per job every
half second, and the last one before the job's outcome is sent), so this is
no write per report. The fields stay after the job finishes (the last
report of its last attempt that reported).

Returns 1 when recorded, 0 when the job is not in flight for this worker in
this attempt (deleted, cancelled, recovered).
Errors: "ZIZQ INVALID" for a fraction that is not a number in 0..1.
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
local fraction = tonumber(ARGV[4])
if not fraction or fraction ~= fraction or fraction < 0 or fraction > 1 then
  return fail_with('INVALID', 'progress ' .. tostring(ARGV[4]) .. ' is not a number in 0..1')
end
local job = load_job(P, ARGV[2])
if not holds(job, ARGV[1], ARGV[3]) then return 0 end
job.pg = ARGV[4]
job.pm = ARGV[5] ~= '' and ARGV[5] or nil
save_job(P, ARGV[2], job)
return 1
