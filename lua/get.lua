--[[ get: read jobs by id.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1..] job ids

Returns one entry per id, in order: the job's record (the MessagePack map
stored in "jobs", docs/protocol/keys.md), or '' when
the job does not exist or is past its purge_at (expired jobs are invisible to
every read even before they are purged).
]]
--@include "includes/common.lua"

local P = KEYS[1]
local now = now_ms()
local out = {}
for i = 1, #ARGV do
  local job, record = load_job(P, ARGV[i])
  if not job or expired(job, now) then record = '' end
  out[i] = record
end
return out
