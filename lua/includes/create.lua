-- Making one job from its 14 enqueue values (id, type, queue, priority,
-- payload, ready_at, delay_ms, retry_limit, backoff, completed_ms, dead_ms,
-- unique_key, unique_while, timeout_ms: enqueue.lua's header), for the
-- scripts that create a job as one step of something else (cron_fire).
-- The checks, the unique-key rule and the stored record are enqueue's, for
-- one job instead of a batch. Includes lifecycle.lua.
--@include "includes/lifecycle.lua"

local JOB_WIDTH = 14
-- The values that must be '' or a non-negative integer, by position.
local JOB_NUMERIC = {[6] = 'ready_at', [7] = 'delay_ms', [8] = 'retry_limit', [10] = 'completed_ms',
  [11] = 'dead_ms', [14] = 'timeout_ms'}

-- Why the values J cannot make a job, or nil when they can (enqueue's
-- checks, in its order).
local function job_row_error(J)
  if type(J) ~= 'table' or #J ~= JOB_WIDTH then
    return 'not an array of ' .. JOB_WIDTH .. ' values'
  end
  for k = 1, JOB_WIDTH do
    local v = J[k]
    if type(v) ~= 'string' then return 'value ' .. k .. ' is not a string' end
    if v ~= '' and JOB_NUMERIC[k] and not natural(v) then
      return JOB_NUMERIC[k] .. ' ' .. v .. ' is not a non-negative integer'
    end
  end
  if J[1] == '' then return 'the id is empty' end
  if not name_ok(J[2]) or not name_ok(J[3]) then
    return 'type ' .. J[2] .. ' or queue ' .. J[3] .. ' is empty or has , * ? [ ] { } \\ or NUL'
  end
  local prio = tonumber(J[4])
  if not prio or prio < 0 or prio > 65535 or prio % 1 ~= 0 then
    return 'priority ' .. J[4] .. ' is not an integer in 0..65535'
  end
  if J[13] ~= '' and not UNIQUE_REACH[J[13]] then
    return 'unique_while ' .. J[13] .. ' is not queued, active or exists'
  end
  if J[13] ~= '' and J[12] == '' then return 'unique_while given without unique_key' end
  if J[9] ~= '' and not backoff_ok(J[9]) then
    return 'backoff ' .. J[9] .. ' is not "base_ms exponent jitter_ms"'
  end
  return nil
end

-- Make the job of the checked values J, unless a live job holds its unique
-- key (unique_holder in common.lua, as enqueue.lua asks it). Returns 0 and
-- the id (created), or 1 and the holder's id (a duplicate: nothing is
-- written). Cost: O(log n) in the job's queue or the scheduled set, O(log H)
-- in the key's holders, plus the record's size.
local function create_job(P, J, now)
  local holder = J[12] ~= '' and unique_holder(P, J[12], J[13] ~= '' and J[13] or 'queued', now)
  if holder then return 1, holder end
  local id, queue, prio = J[1], J[3], tonumber(J[4])
  local ready_at = now
  if J[6] ~= '' then
    ready_at = tonumber(J[6])
  elseif J[7] ~= '' then
    ready_at = now + tonumber(J[7])
  end
  local job = {t = J[2], s = ready_at <= now and 'ready' or 'scheduled', r = ready_at, d = J[5], q = queue, p = prio,
    a = 0}
  if J[8] ~= '' then job.rl = tonumber(J[8]) end
  if J[9] ~= '' then job.bo = J[9] end
  if J[10] ~= '' then job.rc = tonumber(J[10]) end
  if J[11] ~= '' then job.rd = tonumber(J[11]) end
  if J[12] ~= '' then
    job.uk = J[12]
    redis.call('ZADD', P .. 'unique:' .. J[12], 0, id)  -- waiting: score 0, as enqueue.lua holds it
  end
  if J[13] ~= '' then job.uw = J[13] end
  if J[14] ~= '' then job.to = tonumber(J[14]) end
  save_job(P, id, job)
  if redis.call('SADD', P .. 'queues', queue) > 0 then signal(P .. 'wake') end
  if job.s == 'ready' then
    make_ready(P, id, queue, prio)
  else
    schedule(P, id, queue, ready_at)
  end
  return 0, id
end
