--[[ limit_delete: delete a named limit. Jobs bound to it run unlimited
from the next take; jobs in flight under it give their slot back as usual.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the limit's name

Returns 1 when the limit existed, else 0.
]]
--@include "includes/limits.lua"

local P = KEYS[1]
local name = ARGV[1]
redis.call('DEL', P .. 'limit:' .. name, P .. 'limitk:' .. name)
for q in pairs(limit_waiting(P)[name] or {}) do redis.call('HDEL', P .. 'limitwait', name .. ',' .. q) end
return redis.call('HDEL', P .. 'limits', name)
