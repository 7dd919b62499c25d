-- The state moves shared by the scripts that change jobs: namespace
-- settings, putting a job in line, the unique index, finishing, deleting.
-- Scripts that need these include this file instead of common.lua.
--@include "includes/common.lua"
--@include "includes/limits.lua"
--@include "includes/tally.lua"

-- Namespace settings (hash "config") with built-in defaults.
local DEFAULTS = {
  retry_limit = 25,
  backoff_base_ms = 15000,
  backoff_exponent = 4,
  backoff_jitter_ms = 30000,
  completed_ms = 0,
  dead_ms = 604800000,
  error_history = 100,
  max_recoveries = 3,
}

local function config(P, name)
  local v = redis.call('HGET', P .. 'config', name)
  -- A value config.lua would refuse (only a hand-written HSET stores one)
  -- counts as unset: no script may stop halfway, after a write, on it.
  if v and (natural(v) or name == 'backoff_exponent' and exponent_ok(v)) then return tonumber(v) end
  return DEFAULTS[name]
end

-- A jitter sample in [0, 1); anything else counts as 0.
local function unit_sample(v)
  local u = tonumber(v)
  if not u or u ~= u or u < 0 or u >= 1 then return 0 end
  return u
end

-- Put a job in its queue's ready set; dispatch order is (priority, id), and
-- within a priority the turn of the job's group, if it has one (field "gt").
local function make_ready(P, id, queue, priority, turn)
  redis.call('ZADD', P .. 'ready:' .. queue, ready_score(priority, turn), id)
  signal(P .. 'wake:' .. queue)
end

-- Put a job in the scheduled set. When it becomes the earliest scheduled job,
-- idle workers are blocked with a timeout set for a later due time, so one of
-- them is woken to recompute it.
local function schedule(P, id, queue, ready_at)
  local key = P .. 'scheduled'
  redis.call('ZADD', key, ready_at, id)
  local head = redis.call('ZRANGE', key, 0, 0)
  if head[1] == id then
    signal(P .. 'wake:' .. queue)
  end
end

-- The scope a job's unique key holds in; a key given without scope is queued.
local function unique_scope(job)
  if not job.uk then return nil end
  return job.uw or 'queued'
end

-- The score of the job in its key's holder set (see unique_holder in
-- common.lua) for its status and scope, or nil when its hold has ended.
local function unique_score(job)
  local scope, s = unique_scope(job), job.s
  if not scope then return nil end
  if s == 'ready' or s == 'scheduled' then return 0 end
  if s == 'in_flight' then return scope ~= 'queued' and 1 or nil end
  if scope == 'exists' then return job.pa end
  return nil
end

-- Bring the job's entry in its key's holder set in line with its status:
-- added or rescored while it holds the key, removed once its hold ends.
-- Other holders are never touched. One ZADD or ZREM: O(log H).
local function unique_update(P, id, job)
  if not job.uk then return end
  local key, score = P .. 'unique:' .. job.uk, unique_score(job)
  if score then
    redis.call('ZADD', key, score, id)
  else
    redis.call('ZREM', key, id)
  end
end

-- Leave the id of a job being deleted in the "done" bucket of now, with how
-- it left: 'f' deleted as it completed, 'x' deleted as it went dead, 'd'
-- deleted later or by hand (see
-- DONE_WINDOW_MS in common.lua); the bucket expires a window after its end.
local function remember_done(P, id, now, how)
  local bucket = math.floor(now / DONE_BUCKET_MS)
  local key = P .. 'done:' .. bucket
  redis.call('HSET', key, id, how)
  redis.call('PEXPIREAT', key, (bucket + 1) * DONE_BUCKET_MS + DONE_WINDOW_MS)
end

-- Wake the callers of wait (lua/wait.lua) blocked on this job, when there
-- are any: each counted itself in the record's "wt", and gets one token on
-- "waited:<id>" (what became of the job: 'completed', 'dead' or
-- 'deleted'). The list expires after a minute, so the tokens of waiters
-- that gave up do not stay. Nobody waiting costs nothing (one field test).
local WAITED_MS = 60000
local function wake_waiters(P, id, waiters, how, now)
  if not waiters then return end
  local key, tokens = P .. 'waited:' .. id, {}
  for i = 1, math.min(waiters, 100000) do tokens[i] = how end
  call_in_slices('RPUSH', key, tokens, 1)
  redis.call('PEXPIREAT', key, now + WAITED_MS)
end

-- Remove a job's record, its error history and its hold on its unique key;
-- the caller has taken it out of every index.
local function forget_job(P, id, job)
  redis.call('HDEL', P .. 'jobs', id)
  redis.call('DEL', P .. 'errors:' .. id)
  if job.uk then redis.call('ZREM', P .. 'unique:' .. job.uk, id) end
end

-- finish() with a retention of 0, for many jobs at once (jobs[i] is the job
-- of ids[i], out of flight): one HDEL of their records, one HSET and one
-- PEXPIREAT of the done bucket. Only a job that has failed (fa) can have an
-- error history.
local function forget_finished(P, ids, jobs, status, now)
  if #ids == 0 then return end
  local marks, how = {}, status == 'dead' and 'x' or 'f'
  for i, id in ipairs(ids) do
    local job = jobs[i]
    if job.fa then redis.call('DEL', P .. 'errors:' .. id) end
    if job.uk then redis.call('ZREM', P .. 'unique:' .. job.uk, id) end
    job.s = status
    marks[#marks + 1] = id
    marks[#marks + 1] = how
  end
  call_in_slices('HDEL', P .. 'jobs', ids, 1)
  local bucket = math.floor(now / DONE_BUCKET_MS)
  local key = P .. 'done:' .. bucket
  call_in_slices('HSET', key, marks, 2)
  redis.call('PEXPIREAT', key, (bucket + 1) * DONE_BUCKET_MS + DONE_WINDOW_MS)
  for i, id in ipairs(ids) do
    local waiters = jobs[i].wt
    jobs[i].wt = nil
    wake_waiters(P, id, waiters, status, now)
  end
end

-- Remove a job and every index entry that names it, and remember its id in
-- the done window (an enqueue repeated after a lost reply finds it there).
local function delete_job(P, id, job, now)
  redis.call('ZREM', P .. 'ready:' .. job.q, id)
  redis.call('ZREM', P .. 'scheduled', id)
  redis.call('ZREM', P .. 'inflight', id)
  redis.call('ZREM', P .. 'completed', id)
  redis.call('ZREM', P .. 'dead', id)
  if job.w then redis.call('SREM', P .. 'worker:' .. job.w, id) end
  limit_release(P, job)
  forget_job(P, id, job)
  remember_done(P, id, now, 'd')
  wake_waiters(P, id, job.wt, 'deleted', now)
end

-- Whether the job (as load_job returns it, or nil) is in flight for this
-- worker, in the attempt whose dequeued_at is da ('' for any attempt).
local function holds(job, worker, da)
  return job ~= nil and job.s == 'in_flight' and job.w == worker
    and (da == '' or tonumber(da) == job.da)
end

-- Take a job out of flight (the caller decides where it goes next, and
-- saves the job).
local function leave_flight(P, id, job)
  redis.call('ZREM', P .. 'inflight', id)
  redis.call('SREM', P .. 'worker:' .. job.w, id)
  job.w = nil
  limit_release(P, job)
end

-- Give an in-flight job back to its queue untouched: attempts unchanged, no
-- error record, same id and so the same place in line; it holds its unique
-- key again as a waiting job (alongside any job that took the key meanwhile).
local function requeue(P, id, job)
  leave_flight(P, id, job)
  job.s, job.st = 'ready', nil
  save_job(P, id, job)
  make_ready(P, id, job.q, job.p, job.gt)
  unique_update(P, id, job)
end

-- Move a job that has left flight to a terminal state: completed or dead,
-- and save it. With a retention of 0 the job is deleted now; otherwise it is
-- kept until purge_at. Callers of wait blocked on it are woken.
local function finish(P, id, job, status, now, retention_ms)
  local waiters = job.wt
  job.wt = nil
  if retention_ms <= 0 then
    forget_job(P, id, job)
    remember_done(P, id, now, status == 'dead' and 'x' or 'f')
    job.s = status
  else
    local purge_at = now + retention_ms
    job.s = status
    job.pa = purge_at
    save_job(P, id, job)
    redis.call('ZADD', P .. status, purge_at, id)
    unique_update(P, id, job)
  end
  wake_waiters(P, id, waiters, status, now)
end

-- The job, or nil when it does not exist or is past its purge time.
local function visible_job(P, id, now)
  local job = load_job(P, id)
  if not job or expired(job, now) then return nil end
  return job
end
