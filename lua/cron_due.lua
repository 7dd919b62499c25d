--[[ cron_due: what a worker's cron tick has to do now (reads only).

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the most due entries to return
ARGV[2]  grace in ms: claimed enqueues older than this are returned as stale

Returns {now, earliest, due, stale}:
  now       Redis's time, ms
  earliest  the earliest next run of any entry, ms, or -1 when none
  due       flat list {member, next, definition} of entries whose next run
            is <= now (member is "<group>,<entry>")
  stale     flat list {job id, claimed_at, record} of claimed enqueues not
            confirmed within the grace (left by an older worker, written
            by cron_fire before it enqueued in the claim, that may have died)
]]
--@include "includes/common.lua"

local P = KEYS[1]
local limit, grace = tonumber(ARGV[1]), tonumber(ARGV[2])
local now = now_ms()
local head = redis.call('ZRANGE', P .. 'cron:next', 0, 0, 'WITHSCORES')
local earliest = -1
if head[2] then earliest = tonumber(head[2]) end
local due = {}
local members = redis.call('ZRANGEBYSCORE', P .. 'cron:next', '-inf', now, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #members, 2 do
  local member = members[i]
  local comma = string.find(member, ',', 1, true)
  local def = redis.call('HGET', P .. 'cron:entries:' .. string.sub(member, 1, comma - 1), string.sub(member, comma + 1))
  if def then
    due[#due + 1] = member
    due[#due + 1] = members[i + 1]
    due[#due + 1] = def
  end
end
local stale = {}
local old = redis.call('ZRANGEBYSCORE', P .. 'cron:pending', '-inf', now - grace, 'WITHSCORES', 'LIMIT', 0, limit)
for i = 1, #old, 2 do
  stale[#stale + 1] = old[i]
  stale[#stale + 1] = old[i + 1]
  stale[#stale + 1] = redis.call('HGET', P .. 'cron:sent', old[i]) or ''
end
return {now, earliest, due, stale}
