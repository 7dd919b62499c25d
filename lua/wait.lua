--[[ wait: read a finished job, or count the caller among its waiters.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  job id

A caller of wait sends this first. When the job has not finished, the
script counts the caller in the record's field "wt" (waiters), and the
caller then blocks (BLPOP, with its own timeout) on "waited:<id>": the
script that ends the job (ack, fail, heartbeat, cancel, bulk, or delete)
pushes one token per waiter there, so nobody polls. The list expires a
minute after the push. A waiter that gives up stays counted: it only costs
one token, which expires.

Returns {state, value, error}:
  {'done', record, error}  the job is completed or dead (record as get.lua
                    returns it); error: a dead job's last error record
                    (errors:<id>, JSON), else ''

  {'wait', '', ''}  the job has not finished: the caller was counted; BLPOP
                    "waited:<id>", whose token says what became of the job:
                    'completed', 'dead' or 'deleted'
  {'gone', how, ''} no such job (or past its purge_at); how is its mark in
                    the done window (done:<n>): 'f' completed and deleted at
                    once (a retention of 0), 'x' dead and deleted at once, 'd'
                    purged or deleted, '' none
Errors: none.
]]
--@include "includes/common.lua"

local P = KEYS[1]
local id = ARGV[1]
local now = now_ms()
local job, record = load_job(P, id)
if not job or expired(job, now) then
  return {'gone', was_done(P, id, now) or '', ''}
end
if job.s == 'completed' or job.s == 'dead' then
  local last = job.s == 'dead' and redis.call('LRANGE', P .. 'errors:' .. id, -1, -1)[1]
  return {'done', record, last or ''}
end
job.wt = (job.wt or 0) + 1
save_job(P, id, job)
return {'wait', '', ''}
