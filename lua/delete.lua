--[[ delete: remove jobs in any state, in flight included.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1..] job ids

The job record, its error history and every index entry go, and its hold on
its unique key; its id stays in the done window (done:<n>) for a minute, so a
repeated enqueue does not make it again. A worker's later ack or failure of a
deleted in-flight job is refused harmlessly.

Returns the number of jobs deleted (jobs past purge_at count as already gone).
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
local now = now_ms()
local deleted = 0
for i = 1, #ARGV do
  local id = ARGV[i]
  local job, record = load_job(P, id)
  if job then
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
