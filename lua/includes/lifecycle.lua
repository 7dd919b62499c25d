-- The state moves shared by the scripts that change jobs: namespace
-- settings, putting a job in line, the unique index, finishing, deleting.
-- Scripts that need these include this file instead of common.lua.
--@include "includes/common.lua"

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
  if v then return tonumber(v) end
  return DEFAULTS[name]
end

-- A jitter sample in [0, 1); anything else counts as 0.
local function unit_sample(v)
  local u = tonumber(v)
  if not u or u ~= u or u < 0 or u >= 1 then return 0 end
  return u
end

-- Put a job in its queue's ready set; dispatch order is (priority, id).
local function make_ready(P, id, queue, priority)
  redis.call('ZADD', P .. 'ready:' .. queue, priority, id)
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

-- Drop the unique index entry, but only while it still points at this job.
local function unique_release(P, id, job)
  if job.uk then
    local k = P .. 'unique:' .. job.uk
    if redis.call('GET', k) == id then redis.call('DEL', k) end
  end
end

-- Point the unique index back at this job unless a live job holds the key.
local function unique_restore(P, id, job)
  if job.uk then
    local k = P .. 'unique:' .. job.uk
    local holder = redis.call('GET', k)
    local live = false
    if holder and holder ~= id then
      local other = load_job(P, holder)
      live = other ~= nil and not expired(other, now_ms())
    end
    if not live then redis.call('SET', k, id) end
  end
end

-- Leave the id of a job deleted as it finished in the "done" bucket of
-- now (see DONE_WINDOW_MS in common.lua); the bucket expires a window after
-- its end.
local function remember_done(P, id, now)
  local bucket = math.floor(now / DONE_BUCKET_MS)
  local key = P .. 'done:' .. bucket
  redis.call('SADD', key, id)
  redis.call('PEXPIREAT', key, (bucket + 1) * DONE_BUCKET_MS + DONE_WINDOW_MS)
end

-- Remove a job's record, its error history and its unique key (if it
-- still points at the job); the caller has taken it out of every index.
local function forget_job(P, id, job)
  redis.call('HDEL', P .. 'jobs', id)
  redis.call('DEL', P .. 'errors:' .. id)
  unique_release(P, id, job)
end

-- Remove a job and every index entry that names it.
local function delete_job(P, id, job)
  redis.call('ZREM', P .. 'ready:' .. job.q, id)
  redis.call('ZREM', P .. 'scheduled', id)
  redis.call('ZREM', P .. 'inflight', id)
  redis.call('ZREM', P .. 'completed', id)
  redis.call('ZREM', P .. 'dead', id)
  if job.w then redis.call('SREM', P .. 'worker:' .. job.w, id) end
  forget_job(P, id, job)
end

-- Take a job out of flight (the caller decides where it goes next, and
-- saves the job).
local function leave_flight(P, id, job)
  redis.call('ZREM', P .. 'inflight', id)
  redis.call('SREM', P .. 'worker:' .. job.w, id)
  job.w = nil
end

-- Give an in-flight job back to its queue untouched: attempts unchanged, no
-- error record, same id and so the same place in line; a queued-scope unique
-- key points at it again unless a live job holds the key.
local function requeue(P, id, job)
  leave_flight(P, id, job)
  job.s = 'ready'
  save_job(P, id, job)
  make_ready(P, id, job.q, job.p)
  if unique_scope(job) == 'queued' then unique_restore(P, id, job) end
end

-- Move a job that has left flight to a terminal state: completed or dead,
-- and save it. With a retention of 0 the job is deleted now; otherwise it is
-- kept until purge_at.
local function finish(P, id, job, status, now, retention_ms)
  local scope = unique_scope(job)
  if retention_ms <= 0 then
    forget_job(P, id, job)
    remember_done(P, id, now)
    job.s = status
    return
  end
  local purge_at = now + retention_ms
  job.s = status
  job.pa = purge_at
  save_job(P, id, job)
  redis.call('ZADD', P .. status, purge_at, id)
  if scope == 'queued' or scope == 'active' then unique_release(P, id, job) end
end

-- The job, or nil when it does not exist or is past its purge time.
local function visible_job(P, id, now)
  local job = load_job(P, id)
  if not job or expired(job, now) then return nil end
  return job
end
