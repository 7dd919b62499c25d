--[[ stats: job counts per state, and the queues with their ready counts.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the most queues to report (1..10000), in name order

Counts come from the indexes (ZCARD, ZCOUNT): no job record is read, so the
cost grows with the number of queues, not of jobs. Completed and dead jobs
past purge_at (invisible, awaiting the purge) are not counted.

Returns {now, scheduled, in_flight, completed, dead, workers, n_queues,
waiting, queue1, ready1, paused1, queue2, ...}: now in ms, workers the number of
workers holding a lease, n_queues the number of queues known (the list
after it may be cut at ARGV[1]); paused is 1 or 0.
Errors: "ZIZQ INVALID" (a bad count).
]]
--@include "includes/common.lua"

local P = KEYS[1]
if not natural(ARGV[1]) or tonumber(ARGV[1]) < 1 or tonumber(ARGV[1]) > 10000 then
  return fail_with('INVALID', 'queue count ' .. tostring(ARGV[1]) .. ' is not in 1..10000')
end
local most = tonumber(ARGV[1])
local now = now_ms()
local live = '(' .. now
local queues = redis.call('SMEMBERS', P .. 'queues')
table.sort(queues)
local out = {
  now,
  redis.call('ZCARD', P .. 'scheduled'),
  redis.call('ZCARD', P .. 'inflight'),
  redis.call('ZCOUNT', P .. 'completed', live, '+inf'),
  redis.call('ZCOUNT', P .. 'dead', live, '+inf'),
  redis.call('ZCOUNT', P .. 'workers', now, '+inf'),
  #queues,
  redis.call('ZCARD', P .. 'waiting'),
}
for i = 1, math.min(#queues, most) do
  local q = queues[i]
  out[#out + 1] = q
  out[#out + 1] = redis.call('ZCARD', P .. 'ready:' .. q)
  out[#out + 1] = redis.call('SISMEMBER', P .. 'paused', q)
end
return out
