--[[ purge: delete finished jobs whose purge_at has passed.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the most jobs to delete in this call (a bounded batch)

Workers call this in the background, again while a batch comes back full.

Returns the number of jobs deleted.
]]
--@include "includes/common.lua"

local P = KEYS[1]
local limit = tonumber(ARGV[1])
local now = now_ms()
local purged = 0
for _, status in ipairs({'completed', 'dead'}) do
  if purged < limit then
    local ids = redis.call('ZRANGEBYSCORE', P .. status, '-inf', now, 'LIMIT', 0, limit - purged)
    for _, id in ipairs(ids) do
      delete_job(P, id, to_map(redis.call('HGETALL', P .. 'job:' .. id)))
      purged = purged + 1
    end
  end
end
return purged
