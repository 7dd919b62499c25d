--[[ get: read jobs by id.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1..] job ids

Returns one entry per id, in order: the job's fields as a flat list
[field, value, ...] (the keys of its record, docs/redis-layout.md, with the
left-out defaults filled in; numbers as decimal text), or an empty array when
the job does not exist or is past its purge_at (expired jobs are invisible to
every read even before they are purged).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local now = now_ms()
local out = {}
for i = 1, #ARGV do
  local job = visible_job(P, ARGV[i], now)
  out[i] = job and fields_of(job) or {}
end
return out
