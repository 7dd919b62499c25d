--[[ retry: put a dead job back to ready (beyond Zizq).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  job id
ARGV[2]  optional: a call id (see includes/memo.lua): a call sent again with
         the same id returns the first send's reply instead of "STATE"

The job keeps its id (and so its place in line); attempts go back to 0,
purge_at is cleared, ready_at is now, and its error history is kept. Its
unique key is judged as enqueue judges a new job's: when another job that
is not expired holds the key in a status the job's own scope conflicts with
(queued: scheduled or ready; active: also in_flight; exists: any), the
retry is refused; otherwise the job holds the key again, as a waiting job.

Returns the job's record (see get.lua) after the change.
Errors, all before any write: "ZIZQ NOT_FOUND" (no such job, or past
purge_at), "ZIZQ STATE" (the job is not dead), "ZIZQ UNIQUE_HELD" (a
conflicting job holds its unique key; the message names that job).
]]
--@include "includes/lifecycle.lua"
--@include "includes/flow.lua"
--@include "includes/manage.lua"
--@include "includes/memo.lua"

local P = KEYS[1]
local id, call_id = ARGV[1], ARGV[2]
local kept = memo_get(P, call_id)
if kept then return kept end
local now = now_ms()
local job = visible_job(P, id, now)
if not job then return fail_with('NOT_FOUND', 'no job with id ' .. id) end
if job.s ~= 'dead' then
  return fail_with('STATE', 'job ' .. id .. ' is ' .. job.s .. '; only dead jobs can be retried')
end
local record, holder, status = retry_dead(P, id, job, now)
if not record then
  return fail_with('UNIQUE_HELD', 'job ' .. id .. ' cannot be retried: its unique key ' .. job.uk
    .. ' is held by job ' .. holder .. ' (' .. status .. '), which its scope ' .. unique_scope(job)
    .. ' conflicts with; delete or wait for that job first')
end
return memo_put(P, call_id, record)
