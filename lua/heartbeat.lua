--[[ heartbeat: keep a worker's lease, and recover the jobs of lost workers.

Every worker process calls this from a thread of its own every heartbeat
interval. A worker whose lease lapses is lost: the next heartbeat of any
worker recovers its in-flight jobs in this same atomic step.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id
ARGV[2]  'join' (a new worker), 'beat' (keep the lease) or 'leave' (a worker
         stopping: its lease ends and any job it still holds is handed back)
ARGV[3]  lease in ms: the worker is lost if no beat comes within it
ARGV[4]  the most lost workers to recover in this call
ARGV[5]  jitter sample U in [0, 1), for the backoff of poison-pill failures

Recovering a lost worker's job: the job's recovery count (field "rv") goes
up by one. Up to the namespace's max_recoveries (3) the job goes back to
ready untouched (attempts unchanged, no error record, same place in line,
unique key held again). Past it the job is a poison pill: it fails
with error_type "zizq.WorkerLost", so its backoff and retry limit apply.

Returns {state, recovered, failed}
  state      'ok', or 'lost' when a 'beat' finds this worker was declared lost
             (its jobs were recovered; it must join again under a new id; its
             acks of those jobs are refused)
  recovered  jobs handed back to their queues by this call
  failed     jobs failed as poison pills by this call
]]
--@include "includes/lifecycle.lua"
--@include "includes/failure.lua"

local P = KEYS[1]
local worker, mode, lease = ARGV[1], ARGV[2], tonumber(ARGV[3])
local now = now_ms()
local workers = P .. 'workers'
local state = 'ok'
if not natural(ARGV[3]) or not natural(ARGV[4]) then
  return fail_with('INVALID', 'lease ' .. ARGV[3] .. ' and count ' .. ARGV[4] .. ' must be non-negative integers')
end
local recovered, failed = 0, 0

local function hand_back(wid, poison)
  local back, poisoned = 0, 0
  local held = P .. 'worker:' .. wid
  for _, id in ipairs(redis.call('SMEMBERS', held)) do
    local job = load_job(P, id)
    if job and job.s == 'in_flight' and job.w == wid then
      local rv = 0
      if poison then
        rv = (job.rv or 0) + 1
        job.rv = rv
      end
      if rv > config(P, 'max_recoveries') then
        record_failure(P, id, job, now, {
          message = 'the worker running this job was lost ' .. rv .. ' times (worker ' .. wid .. ')',
          error_type = 'zizq.WorkerLost', backtrace = '', kill = false, u = unit_sample(ARGV[5]),
        })
        poisoned = poisoned + 1
      else
        requeue(P, id, job)
        back = back + 1
      end
    end
  end
  redis.call('DEL', held)
  redis.call('ZREM', workers, wid)
  return back, poisoned
end

if mode == 'join' then
  redis.call('ZADD', workers, now + lease, worker)
elseif mode == 'beat' then
  -- A lapsed lease that nobody has acted on yet is simply renewed: the
  -- worker's jobs were never touched. Once recovered, the entry is gone.
  if redis.call('ZADD', workers, 'XX', 'CH', now + lease, worker) == 0
      and not redis.call('ZSCORE', workers, worker) then
    state = 'lost'
    -- Jobs still held under this id were never recovered (the lease entry
    -- went without a recovery: removed by hand, evicted): hand them back
    -- now, or no heartbeat ever will.
    recovered, failed = hand_back(worker, true)
  end
elseif mode == 'leave' then
  hand_back(worker, false)
end

local lost = redis.call('ZRANGEBYSCORE', workers, '-inf', '(' .. now, 'LIMIT', 0, tonumber(ARGV[4]))
for _, wid in ipairs(lost) do
  local r, f = hand_back(wid, true)
  recovered, failed = recovered + r, failed + f
end
return {state, recovered, failed}
