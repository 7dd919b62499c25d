--[[ patch: change a job that has not finished; only the fields given change.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  job id
ARGV[2..] pairs of (field, value); '' as a value means null:
  queue         new queue name (null not allowed)
  priority      0..65535 (null not allowed)
  ready_at      ms since the epoch; null = now. A ready job given a future
                time becomes scheduled; a scheduled job given a time <= now
                (or null) becomes ready. In flight: only the stored value
                changes (null: no change).
  retry_limit   integer; null = the namespace default
  backoff       "base_ms exponent jitter_ms"; null = the namespace default
  completed_ms  completed retention in ms; null = the namespace default
  dead_ms       dead retention in ms; null = the namespace default

Returns the job's record (see get.lua) after the change.
Errors: "ZIZQ NOT_FOUND" (no such job, or past purge_at), "ZIZQ STATE" (the
job is completed or dead: finished jobs cannot change), "ZIZQ INVALID".
]]
--@include "includes/lifecycle.lua"
--@include "includes/manage.lua"

local P = KEYS[1]
local id = ARGV[1]
local now = now_ms()
local job = visible_job(P, id, now)
if not job then return fail_with('NOT_FOUND', 'no job with id ' .. id) end
if job.s == 'completed' or job.s == 'dead' then
  return fail_with('STATE', 'job ' .. id .. ' is ' .. job.s .. '; finished jobs cannot be patched')
end
local want, err = patch_wanted(2)
if not want then return err end
return patch_apply(P, id, job, want, now)
