--[[ fail: record a failed attempt; the job retries later or goes dead.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id; only a job this worker holds can be failed
ARGV[2]  job id
ARGV[3]  message
ARGV[4]  error_type (e.g. the exception's qualified class name), or ''
ARGV[5]  backtrace, or ''
ARGV[6]  retry_at: absolute ms since the epoch, or ''
ARGV[7]  retry_in: ms after Redis's clock, or ''
ARGV[8]  '1' to kill (dead now, whatever the retry limit), else '0'
ARGV[9]  jitter sample U in [0, 1), drawn by the client

Decision, with a = attempts after this failure:
  1. kill                      -> dead
  2. retry_at or retry_in      -> scheduled then (bypasses the retry limit)
  3. a > retry_limit           -> dead
  4. otherwise                 -> scheduled at now + floor(a^E*1000 + B + U*J*a)
Always: attempts = a, failed_at = now, one error record appended to
"errors:<id>" (the oldest dropped past the namespace's error_history, 100).

Returns the job's fields (HGETALL form) after the change, or nil when the job
is not in flight for this worker (so a retried call does nothing twice).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local MAX_DELAY_MS = 100 * 365 * 86400000  -- a steep curve stops at 100 years
local worker, id = ARGV[1], ARGV[2]
local key = P .. 'job:' .. id
local job = to_map(redis.call('HGETALL', key))
if job.s ~= 'in_flight' or job.w ~= worker then return nil end

local now = now_ms()
local attempts = tonumber(job.a) + 1
leave_flight(P, id, job)
redis.call('HSET', key, 'a', attempts, 'fa', now)
job.a, job.fa = int(attempts), int(now)

local record = cjson.encode({
  attempt = attempts, message = ARGV[3], error_type = ARGV[4], backtrace = ARGV[5],
  dequeued_at = tonumber(job.da), failed_at = now,
})
local errors = P .. 'errors:' .. id
local keep = config(P, 'error_history')
if keep > 0 then
  redis.call('RPUSH', errors, record)
  redis.call('LTRIM', errors, -keep, -1)
else
  redis.call('DEL', errors)
end

local retry_at = nil
if ARGV[6] ~= '' then retry_at = tonumber(ARGV[6])
elseif ARGV[7] ~= '' then retry_at = now + tonumber(ARGV[7]) end
local limit = tonumber(job.rl) or config(P, 'retry_limit')

if ARGV[8] == '1' or (not retry_at and attempts > limit) then
  finish(P, id, job, 'dead', now, tonumber(job.rd) or config(P, 'dead_ms'))
else
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
    local u = tonumber(ARGV[9]) or 0
    local delay = math.floor(attempts ^ exponent * 1000 + base + u * jitter * attempts)
    retry_at = now + math.min(delay, MAX_DELAY_MS)
  end
  job.s, job.r = 'scheduled', int(retry_at)
  redis.call('HSET', key, 's', 'scheduled', 'r', retry_at)
  if unique_scope(job) == 'queued' then unique_restore(P, id, job) end
  -- Zizq's rule: a retry is always scheduled, even when already due; the
  -- next take promotes it.
  schedule(P, id, job.q, retry_at)
end

local fields = {}
for k, v in pairs(job) do
  fields[#fields + 1] = k
  fields[#fields + 1] = v
end
return fields
