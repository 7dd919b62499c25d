--[[ cron_sent: confirm or take over claimed cron enqueues.

Only pending enqueues left by older workers need it (cron_fire before it
enqueued in the claim wrote them); the current cron_fire writes none.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  'done' or 'claim'
'done':  ARGV[2..] job ids whose enqueue returned: their pending records go.
'claim': ARGV[2..] pairs {job id, claimed_at}: a stale pending enqueue is
         taken over (its claimed_at moved to now) only while its claimed_at
         is still the one given, so one worker at a time sends it again.

Returns, for 'done', how many records were removed; for 'claim', the ids
taken over.
]]
--@include "includes/common.lua"

local P = KEYS[1]
if ARGV[1] == 'done' then
  local n = 0
  for i = 2, #ARGV do
    n = n + redis.call('ZREM', P .. 'cron:pending', ARGV[i])
    redis.call('HDEL', P .. 'cron:sent', ARGV[i])
  end
  return n
end
if ARGV[1] ~= 'claim' then
  return fail_with('INVALID', 'operation ' .. ARGV[1] .. ' is not done or claim')
end
local now = now_ms()
local taken = {}
for i = 2, #ARGV - 1, 2 do
  local score = redis.call('ZSCORE', P .. 'cron:pending', ARGV[i])
  if score and tonumber(score) == tonumber(ARGV[i + 1]) then
    redis.call('ZADD', P .. 'cron:pending', now, ARGV[i])
    taken[#taken + 1] = ARGV[i]
  end
end
return taken
