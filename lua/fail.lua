--[[ fail: record a failed attempt; the job retries later or goes dead.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id; only a job this worker holds can be failed
ARGV[2]  job id
ARGV[3]  message
ARGV[4]  error_type (e.g. the exception's qualified class name), or ''
ARGV[5]  backtrace, or ''
ARGV[6]  retry_at: absolute ms since the epoch, or ''
ARGV[7]  retry_in: ms after Redis's clock, or ''
ARGV[8]  '1' to kill (dead now, whatever the retry limit), else '0'
ARGV[9]  jitter sample U in [0, 1), drawn by the client
ARGV[10] the attempt's dequeued_at ("da") as the take returned it: only that
         attempt can be failed; '' (or absent) for any attempt

Decision, with a = attempts after this failure:
  1. kill                      -> dead
  2. retry_at or retry_in      -> scheduled then (bypasses the retry limit)
  3. a > retry_limit           -> dead
  4. otherwise                 -> scheduled at now + floor(a^E*1000 + B + U*J*a)
Always: attempts = a, failed_at = now, one error record appended to
"errors:<id>" (the oldest dropped past the namespace's error_history, 100).
The handler's own failure ends the count of losses: "rp" and "sx" are
reset (see heartbeat.lua).

Returns the job's record (see get.lua) after the change, even when it was
deleted at once (a dead retention of 0), or nil when the job
is not in flight for this worker in this attempt (so a retried call does
nothing twice, also once the same worker has taken the job again).
]]
--@include "includes/lifecycle.lua"
--@include "includes/flow.lua"
--@include "includes/failure.lua"

local P = KEYS[1]
local worker, id = ARGV[1], ARGV[2]
for i = 6, 7 do
  if ARGV[i] ~= '' and not natural(ARGV[i]) then
    return fail_with('INVALID', 'retry time ' .. ARGV[i] .. ' is not a non-negative integer')
  end
end
local job = load_job(P, id)
if not holds(job, worker, ARGV[10] or '') then return nil end
job.rp, job.sx = nil, nil

local now = now_ms()
local retry_at = nil
if ARGV[6] ~= '' then retry_at = tonumber(ARGV[6])
elseif ARGV[7] ~= '' then retry_at = now + tonumber(ARGV[7]) end
record_failure(P, id, job, now, {
  message = ARGV[3], error_type = ARGV[4], backtrace = ARGV[5],
  retry_at = retry_at, kill = ARGV[8] == '1', u = unit_sample(ARGV[9]),
})

return pack_job(job)
