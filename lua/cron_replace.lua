--[[ cron_replace: create or replace a cron group, or add or put one entry.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  mode: 'replace' (the group becomes exactly the entries given),
         'add' (add entries; an existing name is an error) or
         'put' (create or replace the entries given; others are kept)
ARGV[2]  group name
ARGV[3]  the group's time zone (IANA name, or '' for UTC); set by 'replace' only
ARGV[4]  '1' pause the group, '0' resume it, '' leave it as it is
then 3 values per entry:
  name        entry name, unique in the group
  definition  the entry's definition as JSON text (expression, effective time
              zone and job template); compared byte for byte
  next        ms of the entry's next run, or '' when it has none
and optionally, last: a call id (see includes/memo.lua), so that a call
sent again with the same id answers as the first did (an 'add' repeated
after a lost reply does not fail with EXISTS)

An entry whose definition is unchanged keeps its scheduling state (next run,
last run, paused), except that one with no next run gets the `next` given
(it is put back on the schedule); a changed or new one starts afresh with
the `next` given. Idempotent: calling it again with the same arguments
changes nothing.

Returns {created, replaced, deleted, unchanged} counts.
Errors (nothing is written): "ZIZQ INVALID <what>" for a malformed argument,
"ZIZQ EXISTS <what>" when 'add' names an entry the group has.
Cost: O((G + A) * log E) for G entries in the group, A entries given and E
scheduled entries in the namespace.
]]
--@include "includes/common.lua"
--@include "includes/memo.lua"

local P = KEYS[1]
local mode, group, tz, paused = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
if mode ~= 'replace' and mode ~= 'add' and mode ~= 'put' then
  return fail_with('INVALID', 'mode ' .. mode .. ' is not replace, add or put')
end
if not name_ok(group) then
  return fail_with('INVALID', 'cron group ' .. group .. ' is empty or has , * ? [ ] { } \\ or NUL')
end
local last, call_id = #ARGV, nil
if (#ARGV - 4) % 3 == 1 then last, call_id = #ARGV - 1, ARGV[#ARGV] end
if #ARGV < 4 or (last - 4) % 3 ~= 0 then
  return fail_with('INVALID', 'argument count ' .. #ARGV .. ' is not 4 + 3 per entry (+ 1 call id)')
end
local kept = memo_get(P, call_id)
if kept then return kept end
if paused ~= '' and paused ~= '0' and paused ~= '1' then
  return fail_with('INVALID', 'paused ' .. paused .. ' is not 0, 1 or empty')
end
local defs = P .. 'cron:entries:' .. group
local wanted = {}
for i = 5, last, 3 do
  local name, next_run = ARGV[i], ARGV[i + 2]
  if not name_ok(name) then
    return fail_with('INVALID', 'cron entry ' .. name .. ' is empty or has , * ? [ ] { } \\ or NUL')
  end
  if next_run ~= '' and not natural(next_run) then
    return fail_with('INVALID', 'next run ' .. next_run .. ' of cron entry ' .. name .. ' is not an integer')
  end
  if wanted[name] then
    return fail_with('INVALID', 'cron entry ' .. name .. ' is given twice')
  end
  if mode == 'add' and redis.call('HEXISTS', defs, name) == 1 then
    return fail_with('EXISTS', 'cron entry ' .. name .. ' exists in group ' .. group)
  end
  wanted[name] = true
end

local now = now_ms()
local gkey = P .. 'cron:group:' .. group
redis.call('SADD', P .. 'cron:groups', group)
if mode == 'replace' then
  redis.call('HSET', gkey, 'tz', tz)
else
  redis.call('HSETNX', gkey, 'tz', '')
end
local is_paused = redis.call('HGET', gkey, 'paused') == '1'
if paused == '1' and not is_paused then
  redis.call('HSET', gkey, 'paused', '1', 'paused_at', now)
elseif paused == '0' and is_paused then
  redis.call('HDEL', gkey, 'paused')
  redis.call('HSET', gkey, 'resumed_at', now)
end

local created, replaced, deleted, unchanged = 0, 0, 0, 0
if mode == 'replace' then
  for _, name in ipairs(redis.call('HKEYS', defs)) do
    if not wanted[name] then
      redis.call('HDEL', defs, name)
      redis.call('DEL', P .. 'cron:entry:' .. group .. ',' .. name)
      redis.call('ZREM', P .. 'cron:next', group .. ',' .. name)
      deleted = deleted + 1
    end
  end
end
for i = 5, last, 3 do
  local name, def, next_run = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local old = redis.call('HGET', defs, name)
  local member = group .. ',' .. name
  if old == def then
    unchanged = unchanged + 1
    if next_run ~= '' and not redis.call('ZSCORE', P .. 'cron:next', member) then
      redis.call('ZADD', P .. 'cron:next', next_run, member)
    end
  else
    if old then replaced = replaced + 1 else created = created + 1 end
    redis.call('HSET', defs, name, def)
    redis.call('DEL', P .. 'cron:entry:' .. member)
    if next_run == '' then
      redis.call('ZREM', P .. 'cron:next', member)
    else
      redis.call('ZADD', P .. 'cron:next', next_run, member)
    end
  end
end
return memo_put(P, call_id, {created, replaced, deleted, unchanged})
