--[[ limit_set: create or change a named limit (it holds from the next take).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the limit's name: non-empty, none of , * ? [ ] { } \ or NUL; a name
         "queue:<q>" limits every job of queue q
ARGV[2]  concurrency: the most jobs of the limit in flight at once, per key;
         a non-negative integer, or '-' for none
ARGV[3]  rate: the most starts in any window of per_ms, per key; a
         non-negative integer, or '-' for none (not both '-')
ARGV[4]  per_ms: the rate window in ms, 1 or more

The running counts and the rate windows are kept: a changed limit counts
the jobs already in flight and the starts already made.

Returns 1 when the limit is new, 0 when it was changed.

Errors: "ZIZQ INVALID" naming the bad value.
]]
--@include "includes/limits.lua"

local P = KEYS[1]
local name, value = ARGV[1], ARGV[2] .. ' ' .. ARGV[3] .. ' ' .. ARGV[4]
if not name_ok(name) then
  return fail_with('INVALID', 'limit name ' .. name .. ' is empty or has , * ? [ ] { } \\ or NUL')
end
if not limit_parse(value) then
  return fail_with('INVALID', 'limit ' .. name .. ': concurrency ' .. ARGV[2] .. ', rate ' .. ARGV[3] .. ' per '
    .. ARGV[4] .. ' ms: give a non-negative integer (or - for none) for at least one, per_ms 1 or more')
end
return redis.call('HSET', P .. 'limits', name, value)
