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

Recovering a lost worker's job: its recovery count (field "rv", how often
it was handed back) goes up by one. Only a job marked started (field "st",
set by take for the jobs a worker starts at once) can have killed its
worker: its loss count (field "rp") goes up by one too. Up to the
namespace's max_recoveries (3) losses the job goes back to ready untouched
(attempts unchanged, no error record, same place in line, unique key held
again). Past it the job is a poison pill: it fails with error_type
"zizq.WorkerLost", so its backoff and retry limit apply. Every job handed
back is marked a suspect (field "sx"): take never prefetches a suspect, so
should a job not marked started have been the one that started (from the
worker's prefetch), its next loss is counted; and take hands a suspect out
alone, so a pill's next deaths are not counted against jobs taken with it.
ack and fail (a normal outcome) reset "rp" and "sx".

A gap: when no heartbeat of any worker reached Redis for longer than this
call's lease (Redis was down or stalled, or no worker ran), the time nobody
could beat does not count against any lease: every lease entry is pushed
back by the gap (key "beat_at" holds the time of the last heartbeat call),
so the first worker back does not recover the jobs of workers that are
still running them. One ZADD per worker entry, only after such a gap.

Cancelled jobs: cancel (cancel.lua, bulk) puts the id of a job it takes out
of a worker's flight in "cancel:<worker-id>"; a 'join' or 'beat' that keeps
the lease returns those ids and empties the set, so the worker stops their
handlers within a heartbeat interval. A lost worker's set goes with its
jobs.

Returns {state, recovered, failed} or, when any were cancelled,
{state, recovered, failed, cancelled}
  state      'ok', or 'lost' when a 'beat' finds this worker was declared lost
             (its jobs were recovered; it must join again under a new id; its
             acks of those jobs are refused)
  recovered  jobs handed back to their queues by this call
  failed     jobs failed as poison pills by this call
  cancelled  ids of this worker's jobs cancelled since its last heartbeat
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
      local losses = 0
      if poison then
        job.rv, job.sx = (job.rv or 0) + 1, 1
        if job.st then
          losses = (job.rp or 0) + 1
          job.rp = losses
        end
      end
      if losses > config(P, 'max_recoveries') then
        record_failure(P, id, job, now, {
          message = 'the worker running this job was lost ' .. losses .. ' times (worker ' .. wid .. ')',
          error_type = 'zizq.WorkerLost', backtrace = '', kill = false, u = unit_sample(ARGV[5]),
        })
        poisoned = poisoned + 1
      else
        requeue(P, id, job)
        back = back + 1
      end
    end
  end
  redis.call('DEL', held, P .. 'cancel:' .. wid)
  redis.call('ZREM', workers, wid)
  return back, poisoned
end

-- The gap rule (see above): nobody could beat, so nobody is lost for it.
local last = tonumber(redis.call('GET', P .. 'beat_at'))
redis.call('SET', P .. 'beat_at', now)
if last and now - last > lease then
  local entries = redis.call('ZRANGE', workers, 0, -1, 'WITHSCORES')
  for i = 1, #entries, 2 do
    redis.call('ZADD', workers, tonumber(entries[i + 1]) + now - last, entries[i])
  end
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
if mode ~= 'leave' and state == 'ok' then
  local key = P .. 'cancel:' .. worker
  local cancelled = redis.call('SMEMBERS', key)
  if #cancelled > 0 then
    redis.call('DEL', key)
    return {state, recovered, failed, cancelled}
  end
end
return {state, recovered, failed}
