--[[ cron_pause: pause or resume a cron group or one entry.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  'pause' or 'resume'
ARGV[2]  group name
ARGV[3]  entry name, or '' for the group
ARGV[4]  optional: a call id (see includes/memo.lua): a call sent again with
         the same id answers as the first did

A paused entry (or any entry of a paused group) keeps its schedule moving:
its due times pass without an enqueue, so resuming does not catch up.
Pausing records paused_at, resuming resumed_at (ms, Redis time).

Returns 1 when the state changed, 0 when it already was so.
Errors: "ZIZQ CRON_NOT_FOUND <what>" for an unknown group or entry.
]]
--@include "includes/lifecycle.lua"
--@include "includes/memo.lua"

local P = KEYS[1]
local op, group, entry, call_id = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local kept = memo_get(P, call_id)
if kept then return kept end
if op ~= 'pause' and op ~= 'resume' then
  return fail_with('INVALID', 'operation ' .. op .. ' is not pause or resume')
end
if redis.call('SISMEMBER', P .. 'cron:groups', group) == 0 then
  return fail_with('CRON_NOT_FOUND', 'no cron group ' .. group)
end
local key = P .. 'cron:group:' .. group
if entry ~= '' then
  if redis.call('HEXISTS', P .. 'cron:entries:' .. group, entry) == 0 then
    return fail_with('CRON_NOT_FOUND', 'no cron entry ' .. entry .. ' in group ' .. group)
  end
  key = P .. 'cron:entry:' .. group .. ',' .. entry
end
local is_paused = redis.call('HGET', key, 'paused') == '1'
local now = now_ms()
if op == 'pause' then
  if is_paused then return memo_put(P, call_id, 0) end
  redis.call('HSET', key, 'paused', '1', 'paused_at', now)
  return memo_put(P, call_id, 1)
end
if not is_paused then return memo_put(P, call_id, 0) end
redis.call('HDEL', key, 'paused')
redis.call('HSET', key, 'resumed_at', now)
return memo_put(P, call_id, 1)
