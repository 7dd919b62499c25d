--[[ limit_read: every limit with its live state.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the most keys to report per limit (the busiest first), 0..1000

Returns {now, name1, limit1, state1, name2, ...} sorted by name, where
  limitK   "<concurrency> <rate> <per_ms>" as stored ('-' for none)
  stateK   {running, waiting, keys, key1, running1, starts1, key2, ...}
    running  jobs in flight under the limit, all keys together
    waiting  ready jobs passed over for want of room under the limit, as
             the latest take that met them in each queue counted them (a
             take passes over at most 1,000)
    keys     how many keys have jobs in flight or (of a rate limit) starts
             in the window (counting at most 1,000 of the latter)
    keyN, runningN, startsN  per key ('' for none), at most ARGV[1] of
             them, most running first, then most starts: jobs in flight,
             and starts in the current rate window (0 without a rate)
]]
--@include "includes/limits.lua"

local P = KEYS[1]
if not natural(ARGV[1]) or tonumber(ARGV[1]) > 1000 then
  return fail_with('INVALID', 'the key count ' .. ARGV[1] .. ' is not an integer in 0..1000')
end
local most = tonumber(ARGV[1])
local now = now_ms()
local flat = redis.call('HGETALL', P .. 'limits')
local names, defs = {}, {}
for i = 1, #flat, 2 do
  names[#names + 1] = flat[i]
  defs[flat[i]] = flat[i + 1]
end
table.sort(names)
local out = {now}
local waiting = limit_waiting(P)
for _, name in ipairs(names) do
  local def = limit_parse(defs[name])
  local counts = redis.call('HGETALL', P .. 'limit:' .. name)
  local keys, running, index = {}, 0, {}
  for i = 1, #counts, 2 do
    local n = tonumber(counts[i + 1]) or 0
    running = running + n
    keys[#keys + 1] = {counts[i], n, 0}
    index[counts[i]] = keys[#keys]
  end
  if def and def.r then
    -- The keys with starts in the window (the most recent 1,000).
    local recent = P .. 'limitk:' .. name
    redis.call('ZREMRANGEBYSCORE', recent, '-inf', '(' .. (now - def.per))
    for _, key in ipairs(redis.call('ZRANGE', recent, 0, 999, 'REV')) do
      if not index[key] then
        keys[#keys + 1] = {key, 0, 0}
        index[key] = keys[#keys]
      end
    end
    for _, k in ipairs(keys) do
      k[3] = redis.call('ZCOUNT', P .. 'limitw:' .. name .. ',' .. k[1], now - def.per, '+inf')
    end
  end
  table.sort(keys, function(a, b)
    if a[2] ~= b[2] then return a[2] > b[2] end
    if a[3] ~= b[3] then return a[3] > b[3] end
    return a[1] < b[1]
  end)
  local waits = 0
  for _, n in pairs(waiting[name] or {}) do waits = waits + n end
  local state = {running, waits, #keys}
  for i = 1, math.min(most, #keys) do
    state[#state + 1] = keys[i][1]
    state[#state + 1] = keys[i][2]
    state[#state + 1] = keys[i][3]
  end
  out[#out + 1] = name
  out[#out + 1] = defs[name]
  out[#out + 1] = state
end
return out
