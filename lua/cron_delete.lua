--[[ cron_delete: delete a cron entry, a cron group, or every group.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  group name, or '' for every group
ARGV[2]  entry name, or '' for the whole group
ARGV[3]  optional: a call id (see includes/memo.lua): a call sent again with
         the same id answers as the first did

Enqueues already claimed for a deleted entry (cron:pending) are still sent.

Returns how many entries (ARGV[2] given) or groups were deleted: 0 when the
entry or group did not exist.
]]
--@include "includes/common.lua"
--@include "includes/memo.lua"

local P = KEYS[1]
local group, entry, call_id = ARGV[1], ARGV[2], ARGV[3]
local kept = memo_get(P, call_id)
if kept then return kept end

local function drop_entry(g, name)
  local member = g .. ',' .. name
  redis.call('DEL', P .. 'cron:entry:' .. member)
  redis.call('ZREM', P .. 'cron:next', member)
  return redis.call('HDEL', P .. 'cron:entries:' .. g, name)
end

local function drop_group(g)
  for _, name in ipairs(redis.call('HKEYS', P .. 'cron:entries:' .. g)) do
    drop_entry(g, name)
  end
  redis.call('DEL', P .. 'cron:group:' .. g, P .. 'cron:entries:' .. g)
  return redis.call('SREM', P .. 'cron:groups', g)
end

if entry ~= '' then
  return memo_put(P, call_id, drop_entry(group, entry))
end
if group ~= '' then
  return memo_put(P, call_id, drop_group(group))
end
local n = 0
for _, g in ipairs(redis.call('SMEMBERS', P .. 'cron:groups')) do
  n = n + drop_group(g)
end
return memo_put(P, call_id, n)
