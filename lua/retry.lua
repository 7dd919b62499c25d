--[[ retry: put a dead job back to ready (beyond Zizq).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  job id

The job keeps its id (and so its place in line); attempts go back to 0,
purge_at is cleared, ready_at is now, and its error history is kept. Its
unique key points at it again unless a live job holds the key.

Returns the job's record (see get.lua) after the change.
Errors: "ZIZQ NOT_FOUND" (no such job, or past purge_at), "ZIZQ STATE" (the
job is not dead).
]]
--@include "includes/lifecycle.lua"
--@include "includes/manage.lua"

local P = KEYS[1]
local id = ARGV[1]
local now = now_ms()
local job = visible_job(P, id, now)
if not job then return fail_with('NOT_FOUND', 'no job with id ' .. id) end
if job.s ~= 'dead' then
  return fail_with('STATE', 'job ' .. id .. ' is ' .. job.s .. '; only dead jobs can be retried')
end
return retry_dead(P, id, job, now)
