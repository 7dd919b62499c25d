--[[ batches: read batches, by id or newest first.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  'get', then batch ids (at most 1000); or 'list', then the offset
         and the count (1..500), newest first

Returns an array with one entry per batch found: {id, total, completed,
dead, closed, created_at, finished_at, parent, on_success, on_complete,
on_dead, fired_on_success, fired_on_complete, fired_on_dead}: the counters
and times as strings (ms), each callback as its job's id, absent fields
(a callback not given or not fired, no parent, not finished) as nil. A
batch that does not exist (or expired, 7 days after it finished) is left
out; 'list' removes its id from "batches".
Errors: "ZIZQ INVALID" (an unknown mode, a bad offset or count, too many ids).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local NAMES = {'total', 'completed', 'dead', 'closed', 'created_at', 'finished_at', 'parent', 'on_success',
  'on_complete', 'on_dead', 'fired_on_success', 'fired_on_complete', 'fired_on_dead'}
local ids
if ARGV[1] == 'get' then
  if #ARGV > 1001 then return fail_with('INVALID', (#ARGV - 1) .. ' ids is more than 1000 a call') end
  ids = {unpack(ARGV, 2)}
elseif ARGV[1] == 'list' then
  if not natural(ARGV[2]) or not natural(ARGV[3]) or tonumber(ARGV[3]) < 1 or tonumber(ARGV[3]) > 500 then
    return fail_with('INVALID', 'offset ' .. tostring(ARGV[2]) .. ' and count ' .. tostring(ARGV[3])
      .. ' must be whole numbers, the count in 1..500')
  end
  local first = tonumber(ARGV[2])
  ids = redis.call('ZREVRANGE', P .. 'batches', first, first + tonumber(ARGV[3]) - 1)
else
  return fail_with('INVALID', 'mode ' .. tostring(ARGV[1]) .. ' is not get or list')
end
local out = {}
for _, id in ipairs(ids) do
  local v = redis.call('HMGET', P .. 'batch:' .. id, unpack(NAMES))
  if v[1] then
    for k = 8, 10 do v[k] = v[k] and cmsgpack.unpack(v[k])[1] or false end
    table.insert(v, 1, id)
    out[#out + 1] = v
  elseif ARGV[1] == 'list' then
    redis.call('ZREM', P .. 'batches', id)
  end
end
return out
