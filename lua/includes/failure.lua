-- Recording a failed attempt, shared by fail (a handler failed) and
-- heartbeat (the worker running the job was lost too often). Needs
-- includes/lifecycle.lua.

local MAX_DELAY_MS = 100 * 365 * 86400000  -- a steep backoff curve stops at 100 years

-- The job (as load_job returns it, in flight) fails once. f holds: message,
-- error_type, backtrace, retry_at (absolute ms or nil), kill (boolean) and u
-- (the jitter sample in [0, 1)). With a = attempts after this failure:
--   kill -> dead; retry_at -> scheduled then (whatever the retry limit);
--   a > retry_limit -> dead; else scheduled at now + backoff(a).
-- Always: attempts = a, failed_at = now, one error record kept (the newest
-- error_history of them), and the minute's tally counts it (dead or failed,
-- includes/tally.lua). Saves the job; the table matches what is stored.
local function record_failure(P, id, job, now, f)
  local attempts = job.a + 1
  leave_flight(P, id, job)
  job.a, job.fa = attempts, now

  local errors = P .. 'errors:' .. id
  local keep = config(P, 'error_history')
  if keep > 0 then
    redis.call('RPUSH', errors, cjson.encode({
      attempt = attempts, message = f.message, error_type = f.error_type, backtrace = f.backtrace,
      dequeued_at = job.da, failed_at = now,
    }))
    redis.call('LTRIM', errors, -keep, -1)
  else
    redis.call('DEL', errors)
  end

  local retry_at = f.retry_at
  local limit = job.rl or config(P, 'retry_limit')
  if f.kill or (not retry_at and attempts > limit) then
    tally(P, now, 'dead', 1)
    finish(P, id, job, 'dead', now, job.rd or config(P, 'dead_ms'))
    return
  end
  if not retry_at then
    local base, exponent, jitter
    if job.bo then
      local parts = {}
      for part in string.gmatch(job.bo, '%S+') do parts[#parts + 1] = tonumber(part) end
      base, exponent, jitter = parts[1], parts[2], parts[3]
    else
      base = config(P, 'backoff_base_ms')
      exponent = config(P, 'backoff_exponent')
      jitter = config(P, 'backoff_jitter_ms')
    end
    local delay = math.floor(attempts ^ exponent * 1000 + base + f.u * jitter * attempts)
    retry_at = now + math.min(delay, MAX_DELAY_MS)
  end
  tally(P, now, 'failed', 1)
  job.s, job.r = 'scheduled', retry_at
  save_job(P, id, job)
  unique_update(P, id, job)
  -- Zizq's rule: a retry is always scheduled, even when already due; the
  -- next take promotes it.
  schedule(P, id, job.q, retry_at)
end
