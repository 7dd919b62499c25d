--[[ tally_read: ended attempts per minute, over the last minutes.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  how many minutes, 1..60: the current minute (of Redis time) and
         the ones before it

Reads the tally:<m> hashes (includes/tally.lua) that ack, fail and
heartbeat write: one HMGET a minute, so the cost is the same whatever the
number of jobs.

Returns {now, minute, completed1, failed1, dead1, completed2, ...}: now in
ms, minute the number of the first minute reported (floor(ms / 60000)),
then three counts a minute, the oldest minute first and the current one
(still counting) last; 0 for a minute without a hash.
Errors: "ZIZQ INVALID" (a bad number of minutes).
]]
--@include "includes/common.lua"
--@include "includes/tally.lua"

local P = KEYS[1]
if not natural(ARGV[1]) or tonumber(ARGV[1]) < 1 or tonumber(ARGV[1]) > 60 then
  return fail_with('INVALID', 'minute count ' .. tostring(ARGV[1]) .. ' is not in 1..60')
end
local now = now_ms()
local last = math.floor(now / TALLY_MINUTE_MS)
local first = last - tonumber(ARGV[1]) + 1
local out = {now, first}
for m = first, last do
  local counts = redis.call('HMGET', P .. 'tally:' .. m, 'completed', 'failed', 'dead')
  for i = 1, 3 do out[#out + 1] = tonumber(counts[i]) or 0 end
end
return out
