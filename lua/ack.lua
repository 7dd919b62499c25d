--[[ ack: mark jobs done (in_flight -> completed).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id; only jobs this worker holds are acknowledged
ARGV[2..] job ids

A completed job is deleted at once when its completed retention (the job's
own, else the namespace's, default 0) is 0; otherwise it is kept until
purge_at = now + retention. Acknowledging twice is harmless: the second time
the job is no longer in flight for this worker.

Returns the ids that were not acknowledged (unknown, deleted, not in flight,
or held by another worker).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local worker = ARGV[1]
local now = now_ms()
local default_ms = config(P, 'completed_ms')
local missed = {}
for i = 2, #ARGV do
  local id = ARGV[i]
  local key = P .. 'job:' .. id
  local job = to_map(redis.call('HGETALL', key))
  if job.s ~= 'in_flight' or job.w ~= worker then
    missed[#missed + 1] = id
  else
    leave_flight(P, id, job)
    redis.call('HSET', key, 'ca', now)
    finish(P, id, job, 'completed', now, tonumber(job.rc) or default_ms)
  end
end
return missed
