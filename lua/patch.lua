--[[ patch: change a job that has not finished; only the fields given change.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  job id
ARGV[2..] pairs of (field, value); '' as a value means null:
  queue         new queue name (null not allowed)
  priority      0..65535 (null not allowed)
  ready_at      ms since the epoch; null = now. A ready job given a future
                time becomes scheduled; a scheduled job given a time <= now
                (or null) becomes ready. In flight: only the stored value
                changes (null: no change).
  retry_limit   integer; null = the namespace default
  backoff       "base_ms exponent jitter_ms"; null = the namespace default
  completed_ms  completed retention in ms; null = the namespace default
  dead_ms       dead retention in ms; null = the namespace default

Returns the job's record (see get.lua) after the change.
Errors: "ZIZQ NOT_FOUND" (no such job, or past purge_at), "ZIZQ STATE" (the
job is completed or dead: finished jobs cannot change), "ZIZQ INVALID".
]]
--@include "includes/common.lua"

local P = KEYS[1]
local id = ARGV[1]
local now = now_ms()
local job = visible_job(P, id, now)
if not job then return fail_with('NOT_FOUND', 'no job with id ' .. id) end
if job.s == 'completed' or job.s == 'dead' then
  return fail_with('STATE', 'job ' .. id .. ' is ' .. job.s .. '; finished jobs cannot be patched')
end

local want = {}
local STORED = {retry_limit = 'rl', backoff = 'bo', completed_ms = 'rc', dead_ms = 'rd'}
for i = 2, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if name ~= 'queue' and name ~= 'priority' and name ~= 'ready_at' and not STORED[name] then
    return fail_with('INVALID', 'unknown patch field ' .. name)
  end
  want[name] = value
end
if want.queue and not name_ok(want.queue) then
  return fail_with('INVALID', 'queue ' .. want.queue .. ' is empty or has , * ? [ ] { } \\ or NUL')
end
if want.ready_at and want.ready_at ~= '' and not natural(want.ready_at) then
  return fail_with('INVALID', 'ready_at ' .. want.ready_at .. ' is not a non-negative integer')
end
for _, name in ipairs({'retry_limit', 'completed_ms', 'dead_ms'}) do
  if want[name] and want[name] ~= '' and not natural(want[name]) then
    return fail_with('INVALID', name .. ' ' .. want[name] .. ' is not a non-negative integer')
  end
end
if want.backoff and want.backoff ~= '' and not backoff_ok(want.backoff) then
  return fail_with('INVALID', 'backoff ' .. want.backoff .. ' is not "base_ms exponent jitter_ms"')
end
if want.priority then
  local p = tonumber(want.priority)
  if not p or p < 0 or p > 65535 or p % 1 ~= 0 then
    return fail_with('INVALID', 'priority ' .. want.priority .. ' is not an integer in 0..65535')
  end
end

-- Queue and priority first: a job made ready below lands in the right place.
if want.queue or want.priority then
  local queue = want.queue or job.q
  local prio = tonumber(want.priority) or job.p
  if job.s == 'ready' then
    redis.call('ZREM', P .. 'ready:' .. job.q, id)
  end
  job.q, job.p = queue, prio
  if redis.call('SADD', P .. 'queues', queue) == 1 then signal(P .. 'wake') end
  if job.s == 'ready' then make_ready(P, id, queue, prio) end
end

if want.ready_at then
  local at = tonumber(want.ready_at)
  if job.s == 'scheduled' then
    at = at or now
    job.r = at
    if at <= now then
      redis.call('ZREM', P .. 'scheduled', id)
      job.s = 'ready'
      make_ready(P, id, job.q, job.p)
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

for name, field in pairs(STORED) do
  local value = want[name]
  if value == '' then
    job[field] = nil
  elseif value then
    if field ~= 'bo' then value = tonumber(value) end
    job[field] = value
  end
end
return save_job(P, id, job)
