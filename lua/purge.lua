--[[ purge: delete finished jobs whose purge_at has passed.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the most jobs to delete in this call: 1..1000, so one call stays
         within a few ms (a bigger limit is refused)

Workers call this in the background, again while a batch comes back full.
Each job goes as delete.lua deletes it: its id stays in the done window
(done:<n>) for a minute.

Returns the number of jobs deleted.
Errors: "ZIZQ INVALID" for a limit outside 1..1000; nothing is deleted.
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
if not natural(ARGV[1]) or tonumber(ARGV[1]) < 1 or tonumber(ARGV[1]) > 1000 then
  return fail_with('INVALID', 'limit ' .. tostring(ARGV[1]) .. ' is not in 1..1000: purge more with several calls')
end
local limit = tonumber(ARGV[1])
local now = now_ms()
local purged = 0
for _, status in ipairs({'completed', 'dead'}) do
  if purged < limit then
    local ids = redis.call('ZRANGEBYSCORE', P .. status, '-inf', now, 'LIMIT', 0, limit - purged)
    for _, id in ipairs(ids) do
      local job = load_job(P, id)
      if job then
        delete_job(P, id, job, now)
      else  -- an index entry without a record: drop it
        redis.call('ZREM', P .. status, id)
      end
      purged = purged + 1
    end
  end
end
return purged
