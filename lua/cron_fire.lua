--[[ cron_fire: claim due cron runs, exactly once each.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  N; then 4 values per entry:
  member    "<group>,<entry>"
  expected  the entry's next run (ms) as cron_due returned it
  next      the entry's following run (ms, computed by the caller: the first
            occurrence strictly after cron_due's now), or '' for none
  job_id    the id the job will be enqueued with

For each entry, a compare-and-set: only when the entry's stored next run is
still `expected` is the run claimed (any number of workers may try; one
wins). A claimed run moves the entry's next run to `next`; then, when neither
the entry nor its group is paused, it records last = now and a pending
enqueue: cron:pending (job_id -> now) and cron:sent (job_id -> a JSON record
{"member", "due", "definition"}). The caller enqueues the job with job_id and
then confirms with cron_sent 'done'. Missed runs collapse: one claim per call,
whatever number of occurrences passed.

Returns one {outcome, definition} per entry: outcome 1 claimed (enqueue it),
2 claimed while paused (skipped, nothing to enqueue), 0 not claimed (another
worker did, or the entry changed or is gone).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local n = tonumber(ARGV[1])
if not n or #ARGV ~= 1 + 4 * n then
  return fail_with('INVALID', 'argument count ' .. #ARGV .. ' does not match ' .. tostring(ARGV[1]) .. ' entries')
end
for i = 0, n - 1 do  -- every argument checked before anything is written
  local next_run = ARGV[4 + 4 * i]
  if next_run ~= '' and not natural(next_run) then
    return fail_with('INVALID', 'next run ' .. next_run .. ' is not an integer')
  end
end
local now = now_ms()
local out = {}
for i = 0, n - 1 do
  local b = 2 + 4 * i
  local member, expected, next_run, job_id = ARGV[b], ARGV[b + 1], ARGV[b + 2], ARGV[b + 3]
  local outcome, def = 0, ''
  local score = redis.call('ZSCORE', P .. 'cron:next', member)
  local comma = string.find(member, ',', 1, true)
  if score and comma and tonumber(score) == tonumber(expected) then
    local group, entry = string.sub(member, 1, comma - 1), string.sub(member, comma + 1)
    def = redis.call('HGET', P .. 'cron:entries:' .. group, entry)
    if not def then
      redis.call('ZREM', P .. 'cron:next', member)
      def = ''
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
        outcome = 1
        redis.call('HSET', ekey, 'last', now)
        redis.call('ZADD', P .. 'cron:pending', now, job_id)
        redis.call('HSET', P .. 'cron:sent', job_id,
          cjson.encode({member = member, due = expected, definition = def}))
      end
    end
  end
  out[i + 1] = {outcome, def}
end
return out
