--[[ cron_fire: claim due cron runs, and enqueue each claimed run, at once.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  N, at most 100; then 4 values per entry:
  member    "<group>,<entry>"
  expected  the entry's next run (ms) as cron_due returned it
  next      the entry's following run (ms, computed by the caller: the first
            occurrence strictly after cron_due's now), or '' for none
  job_id    a new SCRU128 id: the id of the job a claimed run creates

For each entry, a compare-and-set: only when the entry's stored next run is
still `expected` is the run claimed (any number of workers may try; one
wins). A claimed run moves the entry's next run to `next`; then, when neither
the entry nor its group is paused, it records last = now and enqueues the
job of the entry's template (the definition's "job", values as enqueue takes
them) with id job_id, here, as enqueue does: the same checks and unique-key
rule. Claim and enqueue are one step, so a run is enqueued at most once,
whatever calls are repeated or workers die. Missed runs collapse: one claim
per call, whatever number of occurrences passed.

Returns one {outcome, detail} per entry:
  0  not claimed (another worker did, or the entry changed or is gone); ''
  1  claimed and enqueued; detail = job_id
  2  claimed while paused (skipped, nothing enqueued); ''
  3  claimed; a live job holds the template's unique key, so nothing is
     enqueued (as enqueue's flag 1); detail = that job's id
  4  claimed; the template cannot be enqueued (a definition that is not
     JSON with a "job" object, a value enqueue refuses, or job_id in use);
     nothing is enqueued; detail = why
Errors (nothing is written): "ZIZQ INVALID <what>" for an argument count
that does not match N, N above 100, or a `next` that is not '' or an integer.
Cost: O(N * (log E + log J + D)) for E scheduled entries, J jobs in the
job's queue (or scheduled) and D the definition's size; N <= 100.
]]
--@include "includes/create.lua"

local P = KEYS[1]
local n = tonumber(ARGV[1])
if not n or #ARGV ~= 1 + 4 * n then
  return fail_with('INVALID', 'argument count ' .. #ARGV .. ' does not match ' .. tostring(ARGV[1]) .. ' entries')
end
if n > 100 then
  return fail_with('INVALID', 'N ' .. ARGV[1] .. ' is above 100')
end
for i = 0, n - 1 do  -- every argument checked before anything is written
  local next_run = ARGV[4 + 4 * i]
  if next_run ~= '' and not natural(next_run) then
    return fail_with('INVALID', 'next run ' .. next_run .. ' is not an integer')
  end
end

-- The 14 enqueue values of a run of definition `def` with id `job_id`, or
-- nil and why not. JSON numbers become their decimal text, null ''.
local TEMPLATE = {'type', 'queue', 'priority', 'payload', 'ready_at', 'delay_ms', 'retry_limit', 'backoff',
  'completed_ms', 'dead_ms', 'unique_key', 'unique_while', 'timeout_ms'}
local function job_values(def, job_id)
  local ok, d = pcall(cjson.decode, def)
  if not ok or type(d) ~= 'table' or type(d.job) ~= 'table' then
    return nil, 'the definition is not JSON with a "job" object'
  end
  local J = {job_id}
  for k, name in ipairs(TEMPLATE) do
    local v = d.job[name]
    if v == nil or v == cjson.null then
      v = ''
    elseif type(v) == 'number' and v % 1 == 0 and math.abs(v) < 1e15 then
      v = string.format('%d', v)
    end
    J[k + 1] = v
  end
  local why = job_row_error(J)
  if why then return nil, 'template: ' .. why end
  if redis.call('HEXISTS', P .. 'jobs', job_id) == 1 then return nil, 'job id ' .. job_id .. ' is in use' end
  return J
end

local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 2 + 4 * i
  local member, expected, next_run, job_id = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local outcome, detail = 0, ''
  local score = redis.call('ZSCORE', P .. 'cron:next', member)
  local comma = string.find(member, ',', 1, true)
  if score and comma and tonumber(score) == tonumber(expected) then
    local group, entry = string.sub(member, 1, comma - 1), string.sub(member, comma + 1)
    local def = redis.call('HGET', P .. 'cron:entries:' .. group, entry)
    if not def then
      redis.call('ZREM', P .. 'cron:next', member)
    else
      if next_run == '' then
        redis.call('ZREM', P .. 'cron:next', member)
      else
        redis.call('ZADD', P .. 'cron:next', next_run, member)
      end
      local ekey = P .. 'cron:entry:' .. member
      if redis.call('HGET', P .. 'cron:group:' .. group, 'paused') == '1'
          or redis.call('HGET', ekey, 'paused') == '1' then
        outcome = 2
      else
        redis.call('HSET', ekey, 'last', now)
        local J, why = job_values(def, job_id)
        if not J then
          outcome, detail = 4, why
        else
          local flag, id = create_job(P, J, now)
          outcome, detail = flag == 0 and 1 or 3, id
        end
      end
    end
  end
  out[i + 1] = {outcome, detail}
end
return out
