--[[ pause: pause or resume a queue (beyond Zizq).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  'pause' or 'resume'
ARGV[2]  queue name
ARGV[3]  optional: a call id, unique per call (see includes/memo.lua): a
         call sent again with the same id answers as the first did

A paused queue's jobs stay ready (and keep their places) but are not taken;
enqueueing still works. Resuming wakes an idle worker when jobs are waiting.

Returns 1 when the queue's state changed, 0 when it already was so.
Errors: "ZIZQ INVALID" for a bad queue name.
]]
--@include "includes/common.lua"
--@include "includes/memo.lua"

local P = KEYS[1]
local queue, call_id = ARGV[2], ARGV[3]
if not name_ok(queue) then
  return fail_with('INVALID', 'queue ' .. queue .. ' is empty or has , * ? [ ] { } \\ or NUL')
end
local kept = memo_get(P, call_id)
if kept then return kept end
if ARGV[1] == 'pause' then
  return memo_put(P, call_id, redis.call('SADD', P .. 'paused', queue))
end
local changed = redis.call('SREM', P .. 'paused', queue)
if changed == 1 and redis.call('ZCARD', P .. 'ready:' .. queue) > 0 then
  signal(P .. 'wake:' .. queue)
end
return memo_put(P, call_id, changed)
