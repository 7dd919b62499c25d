--[[ batch_open: create a batch, whose callbacks fire exactly once.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the batch id, made by the client (a SCRU128 id, as a job's)
ARGV[2]  the id of the parent batch, or '': the new batch counts as one
         member of its parent, finished when it is
ARGV[3]  on_success: the job enqueued once every member has completed, as
         a MessagePack array of enqueue.lua's 14 values (its id included), or ''
ARGV[4]  on_complete: the job enqueued once every member has finished
         (completed or dead), or ''
ARGV[5]  on_dead: the job enqueued once, when the first member dies, or ''

Writes "batch:<id>" (total, completed and dead 0, closed 0, created_at,
parent, the callbacks) and adds the id to "batches" (score created_at).
Members join through flow_enqueue.lua until batch_close.lua closes it.

Returns 1 when the batch was made, 0 when it existed (a repeated call).
Errors, before any write: "ZIZQ INVALID" (a callback that is not 14
enqueue values enqueue.lua would take), "ZIZQ BATCH_NOT_FOUND" (no such parent),
"ZIZQ BATCH_CLOSED" (the parent is closed).
]]
--@include "includes/lifecycle.lua"
--@include "includes/flow.lua"

local P = KEYS[1]
local id, parent = ARGV[1], ARGV[2]
local key = P .. 'batch:' .. id
if redis.call('EXISTS', key) == 1 then return 0 end
local fields = {'total', 0, 'completed', 0, 'dead', 0, 'closed', 0, 'created_at', 0}
local names = {'on_success', 'on_complete', 'on_dead'}
for k = 1, 3 do
  local row = ARGV[2 + k]
  if row and row ~= '' then
    local ok, J = pcall(cmsgpack.unpack, row)
    local err = 'not MessagePack'
    if ok then err = job_row_error(J) end
    if err then return fail_with('INVALID', names[k] .. ' callback: ' .. err) end
    fields[#fields + 1] = names[k]
    fields[#fields + 1] = row
  end
end
if parent ~= '' then
  local closed = redis.call('HGET', P .. 'batch:' .. parent, 'closed')
  if not closed then return fail_with('BATCH_NOT_FOUND', 'no batch with id ' .. parent) end
  if closed == '1' then return fail_with('BATCH_CLOSED', 'batch ' .. parent .. ' is closed; it takes no new member') end
  fields[#fields + 1] = 'parent'
  fields[#fields + 1] = parent
  redis.call('HINCRBY', P .. 'batch:' .. parent, 'total', 1)
end
local now = now_ms()
fields[10] = now
redis.call('HSET', key, unpack(fields))
redis.call('ZADD', P .. 'batches', now, id)
return 1
