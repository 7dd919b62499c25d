--[[ cancel: stop jobs that have not finished (beyond Zizq).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  a call id, unique per call, or '' (see includes/memo.lua): a call
         sent again with the same id answers as the first did
ARGV[2..] job ids, at most 1000

A scheduled or ready job leaves its queue and never runs. A job in flight
leaves flight at once, and its worker learns of it with its next heartbeat
(its handler is then cancelled, or can see it). Either way the job is dead
now, with "cx" (cancelled_at, ms) set, attempts unchanged and no error
record; it is never retried by itself; its unique key is released; it is
kept for its dead retention; callers of wait blocked on it are woken.

Returns one integer per id, in order: 1 cancelled now, 0 already finished
(completed or dead; nothing changes), -1 no such job (or past purge_at).
Errors: "ZIZQ INVALID" for more than 1000 ids; nothing is cancelled.
]]
--@include "includes/lifecycle.lua"
--@include "includes/manage.lua"
--@include "includes/memo.lua"

local P = KEYS[1]
local call_id = ARGV[1]
if #ARGV > 1001 then
  return fail_with('INVALID', (#ARGV - 1) .. ' ids is more than 1000 a call')
end
local kept = memo_get(P, call_id)
if kept then return kept end
local now = now_ms()
local out = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local job = visible_job(P, id, now)
  if not job then
    out[i - 1] = -1
  elseif job.s == 'completed' or job.s == 'dead' then
    out[i - 1] = 0
  else
    cancel_job(P, id, job, now)
    out[i - 1] = 1
  end
end
return memo_put(P, call_id, out)
