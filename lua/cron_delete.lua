--[[ cron_delete: delete a cron entry, a cron group, or every group.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  group name, or '' for every group
ARGV[2]  entry name, or '' for the whole group

Enqueues already claimed for a deleted entry (cron:pending) are still sent.

Returns how many entries (ARGV[2] given) or groups were deleted: 0 when the
entry or group did not exist.
]]
--@include "includes/common.lua"

local P = KEYS[1]
local group, entry = ARGV[1], ARGV[2]

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
  return drop_entry(group, entry)
end
if group ~= '' then
  return drop_group(group)
end
local n = 0
for _, g in ipairs(redis.call('SMEMBERS', P .. 'cron:groups')) do
  n = n + drop_group(g)
end
return n
