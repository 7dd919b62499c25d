-- Per-minute counts of ended attempts, for the dashboard's chart of the
-- last hour (read by tally_read.lua). A hash "tally:<m>" per minute m of
-- Redis time (m = floor(now / 60000)), with the fields completed, failed
-- (an attempt failed; the job will retry) and dead (an attempt failed and
-- the job went dead). Each minute's hash expires 65 minutes after the
-- minute ends, so the namespace holds at most 66 of them.
local TALLY_MINUTE_MS = 60000
local TALLY_KEEP_MS = 65 * 60000

-- Add n to this minute's field: one HINCRBY a call, whatever n; nothing
-- when n is 0. The PEXPIREAT follows only when the field is new (the count
-- is n): a field that was there already was written by this helper, which
-- set the same expiry then, so the hash has it.
local function tally(P, now, field, n)
  if n <= 0 then return end
  local minute = math.floor(now / TALLY_MINUTE_MS)
  local key = P .. 'tally:' .. minute
  if redis.call('HINCRBY', key, field, n) == n then
    redis.call('PEXPIREAT', key, (minute + 1) * TALLY_MINUTE_MS + TALLY_KEEP_MS)
  end
end
