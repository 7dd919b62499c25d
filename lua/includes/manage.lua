-- Changes made by an operator to one job: patch, retry and cancel. patch.lua,
-- retry.lua and cancel.lua apply them to one job, bulk.lua to a batch of jobs matched by a
-- filter; the logic lives here once. Needs includes/lifecycle.lua.

local PATCH_STORED = {retry_limit = 'rl', backoff = 'bo', completed_ms = 'rc', dead_ms = 'rd'}

-- The patch pairs ARGV[first..last] (last: #ARGV when not given) as a table
-- {name = value}, or nil and the error reply naming the bad field or value.
-- '' as a value means null.
local function patch_wanted(first, last)
  local want = {}
  for i = first, last or #ARGV, 2 do
    local name, value = ARGV[i], ARGV[i + 1]
    if name ~= 'queue' and name ~= 'priority' and name ~= 'ready_at' and not PATCH_STORED[name] then
      return nil, fail_with('INVALID', 'unknown patch field ' .. tostring(name))
    end
    if value == nil then return nil, fail_with('INVALID', 'patch field ' .. name .. ' has no value') end
    want[name] = value
  end
  if want.queue and not name_ok(want.queue) then
    return nil, fail_with('INVALID', 'queue ' .. want.queue .. ' is empty or has , * ? [ ] { } \\ or NUL')
  end
  if want.ready_at and want.ready_at ~= '' and not natural(want.ready_at) then
    return nil, fail_with('INVALID', 'ready_at ' .. want.ready_at .. ' is not a non-negative integer')
  end
  for _, name in ipairs({'retry_limit', 'completed_ms', 'dead_ms'}) do
    if want[name] and want[name] ~= '' and not natural(want[name]) then
      return nil, fail_with('INVALID', name .. ' ' .. want[name] .. ' is not a non-negative integer')
    end
  end
  if want.backoff and want.backoff ~= '' and not backoff_ok(want.backoff) then
    return nil, fail_with('INVALID', 'backoff ' .. want.backoff .. ' is not "base_ms exponent jitter_ms"')
  end
  if want.priority then
    local p = tonumber(want.priority)
    if not p or p < 0 or p > 65535 or p % 1 ~= 0 then
      return nil, fail_with('INVALID', 'priority ' .. want.priority .. ' is not an integer in 0..65535')
    end
  end
  return want
end

-- Apply checked patch values to a job that has not finished, and save it;
-- returns its record.
local function patch_apply(P, id, job, want, now)
  -- Queue and priority first: a job made ready below lands in the right place.
  if want.queue or want.priority then
    local queue = want.queue or job.q
    local prio = tonumber(want.priority) or job.p
    if job.s == 'ready' then
      redis.call('ZREM', P .. 'ready:' .. job.q, id)
    end
    job.q, job.p = queue, prio
    if redis.call('SADD', P .. 'queues', queue) == 1 then signal(P .. 'wake') end
    if job.s == 'ready' then make_ready(P, id, queue, prio, job.gt) end
  end

  if want.ready_at then
    local at = tonumber(want.ready_at)
    if job.s == 'scheduled' then
      at = at or now
      job.r = at
      if at <= now then
        redis.call('ZREM', P .. 'scheduled', id)
        job.s = 'ready'
        make_ready(P, id, job.q, job.p, job.gt)
      else
        schedule(P, id, job.q, at)
      end
    elseif job.s == 'ready' and at then
      job.r = at
      if at > now then
        redis.call('ZREM', P .. 'ready:' .. job.q, id)
        job.s = 'scheduled'
        schedule(P, id, job.q, at)
      end
    elseif job.s == 'in_flight' and at then
      job.r = at
    end
  end

  for name, field in pairs(PATCH_STORED) do
    local value = want[name]
    if value == '' then
      job[field] = nil
    elseif value then
      if field ~= 'bo' then value = tonumber(value) end
      job[field] = value
    end
  end
  return save_job(P, id, job)
end

-- Put a dead job back to ready: attempts 0, purge_at cleared, ready now;
-- same id (so the same place in line), error history kept. Its unique key
-- is judged as enqueue judges a new job's: when another visible job holds
-- the key in a status the job's own scope conflicts with, nothing is
-- written and the reply is nil, the holder's id and its status; otherwise
-- the job holds the key again, as a waiting job. Returns the job's record.
local function retry_dead(P, id, job, now)
  local scope = unique_scope(job)
  if scope then
    local holder, other = unique_holder(P, job.uk, scope, now, id)
    if holder then return nil, holder, other.s end
  end
  redis.call('ZREM', P .. 'dead', id)
  job.s, job.a, job.r, job.pa, job.cx = 'ready', 0, now, nil, nil
  local record = save_job(P, id, job)
  make_ready(P, id, job.q, job.p, job.gt)
  unique_update(P, id, job)
  return record
end

-- Cancel a job that has not finished: it goes dead now, with "cx" (when it
-- was cancelled) set, attempts unchanged and no error record; it is never
-- retried by itself, and its unique key is released whatever its scope.
-- A job in flight leaves flight at once (its worker's later ack or failure
-- is refused), and its id joins "cancel:<worker>", which that worker's next
-- heartbeat reads (heartbeat.lua) to stop the handler.
local function cancel_job(P, id, job, now)
  if job.s == 'in_flight' then
    local worker = job.w
    leave_flight(P, id, job)
    redis.call('SADD', P .. 'cancel:' .. worker, id)
  elseif job.s == 'ready' then
    redis.call('ZREM', P .. 'ready:' .. job.q, id)
  else
    redis.call('ZREM', P .. 'scheduled', id)
  end
  job.cx, job.st, job.rp, job.sx = now, nil, nil, nil
  finish(P, id, job, 'dead', now, job.rd or config(P, 'dead_ms'))
  if job.uk then redis.call('ZREM', P .. 'unique:' .. job.uk, id) end
end
