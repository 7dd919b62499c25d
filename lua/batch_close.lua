--[[ batch_close: close a batch: it takes no new member, and finishes once
every member has.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the batch id

Closing a batch whose members have all finished (or that has none) fires
its callbacks now (on_complete; on_success when none died), and counts it
in its parent batch. Closing twice changes nothing.

Returns the batch as batches.lua reads it.
Errors: "ZIZQ BATCH_NOT_FOUND" (no such batch, or it expired).
]]
--@include "includes/lifecycle.lua"
--@include "includes/flow.lua"

local P = KEYS[1]
local key = P .. 'batch:' .. ARGV[1]
if redis.call('EXISTS', key) == 0 then return fail_with('BATCH_NOT_FOUND', 'no batch with id ' .. ARGV[1]) end
if redis.call('HGET', key, 'closed') ~= '1' then
  redis.call('HSET', key, 'closed', 1)
  flow_build()
  batch_settle(P, key, now_ms())
end
local names = {'total', 'completed', 'dead', 'closed', 'created_at', 'finished_at', 'parent', 'on_success',
  'on_complete', 'on_dead', 'fired_on_success', 'fired_on_complete', 'fired_on_dead'}
local v = redis.call('HMGET', key, unpack(names))
for k = 8, 10 do v[k] = v[k] and cmsgpack.unpack(v[k])[1] or false end
table.insert(v, 1, ARGV[1])
return v
