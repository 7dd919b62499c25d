-- Job filters for the query and bulk scripts. Needs includes/common.lua.
--
-- A filter is a JSON object; every key is optional and all given keys AND:
--   "s": [status, ...]   "q": [queue, ...]   "t": [type, ...]   (OR within)
--   "p": [lo, hi]  priority   "r": [lo, hi]  ready_at (ms)   "a": [lo, hi]  attempts
-- Ranges are inclusive at both ends. The jq filter on payloads is not here:
-- clients apply it to the records these scripts return.

-- A set: a JSON array of strings (absent: no condition). Anything else is
-- refused, so a filter a client got wrong never matches every job.
local function set_of(key, list)
  if list == nil then return true, nil end
  if type(list) ~= 'table' then return false end
  local set = {}
  for i, v in pairs(list) do
    if type(i) ~= 'number' or type(v) ~= 'string' then return false end
    set[v] = true
  end
  return true, set
end

-- A range: a JSON array of two numbers, lo <= hi (absent: no condition).
local function range_of(key, pair)
  if pair == nil then return true, nil end
  if type(pair) ~= 'table' or #pair ~= 2 or type(pair[1]) ~= 'number' or type(pair[2]) ~= 'number'
      or pair[1] > pair[2] then
    return false
  end
  return true, {pair[1], pair[2]}
end

local FILTER_KEYS = {s = set_of, q = set_of, t = set_of, p = range_of, r = range_of, a = range_of}

-- The filter as a table, or nil and an error reply naming the bad part.
local function parse_filter(text)
  local ok, raw = pcall(cjson.decode, text)
  if not ok or type(raw) ~= 'table' then
    return nil, fail_with('INVALID', 'filter ' .. tostring(text) .. ' is not a JSON object')
  end
  local f = {}
  for key, value in pairs(raw) do
    local read = FILTER_KEYS[key]
    if not read then
      return nil, fail_with('INVALID', 'filter key ' .. tostring(key) .. ' is not one of s q t p r a')
    end
    local good, parsed = read(key, value)
    if not good then
      local want = read == set_of and 'an array of strings' or 'an array of two numbers, low first'
      return nil, fail_with('INVALID', 'filter ' .. key .. ' is not ' .. want)
    end
    f[key] = parsed
  end
  return f
end

local function in_range(v, range)
  return range == nil or (v ~= nil and v >= range[1] and v <= range[2])
end

-- Whether a job (as load_job returns it) passes the filter.
local function job_matches(job, f)
  return (f.s == nil or f.s[job.s] == true)
    and (f.q == nil or f.q[job.q] == true)
    and (f.t == nil or f.t[job.t] == true)
    and in_range(job.p, f.p) and in_range(job.r, f.r) and in_range(job.a, f.a)
end

-- Whether an id lies strictly between `after` and `before` in the given
-- order ('' = no bound on that side). Ids sort as strings by creation time.
local function id_between(id, order, after, before)
  if order == 'desc' then
    return (after == '' or id < after) and (before == '' or id > before)
  end
  return (after == '' or id > after) and (before == '' or id < before)
end
