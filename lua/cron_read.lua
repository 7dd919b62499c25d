--[[ cron_read: read cron groups with their entries and scheduling state.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  group name, or '' for every group

Returns {now, group...}; now is Redis's time in ms. Each group is
  {name, fields, entries} where fields is the group hash in HGETALL form
  (tz, paused, paused_at, resumed_at) and entries is a list of entries,
  each {name, definition, state, next}: state is the entry's hash in HGETALL form
  (paused, paused_at, resumed_at, last), next the next run in ms or ''.
A group that does not exist is left out.
]]
--@include "includes/common.lua"

local P = KEYS[1]
local names = {ARGV[1]}
if ARGV[1] == '' then
  names = redis.call('SMEMBERS', P .. 'cron:groups')
  table.sort(names)
end
local out = {now_ms()}
for _, g in ipairs(names) do
  if redis.call('SISMEMBER', P .. 'cron:groups', g) == 1 then
    local entries = {}
    local defs = redis.call('HGETALL', P .. 'cron:entries:' .. g)
    for i = 1, #defs, 2 do
      local member = g .. ',' .. defs[i]
      local next_run = redis.call('ZSCORE', P .. 'cron:next', member)
      entries[#entries + 1] = {defs[i], defs[i + 1], redis.call('HGETALL', P .. 'cron:entry:' .. member), next_run or ''}
    end
    out[#out + 1] = {g, redis.call('HGETALL', P .. 'cron:group:' .. g), entries}
  end
end
return out
