--[[ get: read jobs by id.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1..] job ids

Returns one entry per id, in order: the job's HGETALL, or an empty array when
the job does not exist or is past its purge_at (expired jobs are invisible to
every read even before they are purged).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local now = now_ms()
local out = {}
for i = 1, #ARGV do
  local fields = redis.call('HGETALL', P .. 'job:' .. ARGV[i])
  if expired(to_map(fields), now) then fields = {} end
  out[i] = fields
end
return out
