--[[ delete: remove jobs in any state, in flight included.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1..] job ids, at most 1000. An empty ARGV[1] (no id is empty) marks a
         call that repeats one whose reply was lost: then an id that is gone
         but was deleted within the last minute (a 'd' in done:<n>) counts
         as deleted, so the repeat answers as the first call did.

The job record, its error history and every index entry go, and its hold on
its unique key; its id stays in the done window (done:<n>) for a minute, so a
repeated enqueue does not make it again. A worker's later ack or failure of a
deleted in-flight job is refused harmlessly.

Returns the number of jobs deleted (jobs past purge_at count as already gone).
Errors: "ZIZQ INVALID" for more than 1000 ids; nothing is deleted.
]]
--@include "includes/lifecycle.lua"
--@include "includes/flow.lua"

local P = KEYS[1]
local now = now_ms()
local deleted = 0
local repeated = ARGV[1] == ''
if #ARGV > 1001 or #ARGV > 1000 and not repeated then
  return fail_with('INVALID', (repeated and #ARGV - 1 or #ARGV) .. ' ids is more than 1000 a call')
end
for i = repeated and 2 or 1, #ARGV do
  local id = ARGV[i]
  local job, record = load_job(P, id)
  if not job and not record and repeated and was_done(P, id, now) == 'd' then
    deleted = deleted + 1
  elseif job then
    if not expired(job, now) then deleted = deleted + 1 end
    delete_job(P, id, job, now)
  elseif record then  -- a record no script can read: it goes too
    redis.call('HDEL', P .. 'jobs', id)
    redis.call('DEL', P .. 'errors:' .. id)
    remember_done(P, id, now, 'd')
    deleted = deleted + 1
  end
end
return deleted
