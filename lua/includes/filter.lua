-- Job filters for the query and bulk scripts. Needs includes/common.lua.
--
-- A filter is a JSON object; every key is optional and all given keys AND:
--   "s": [status, ...]   "q": [queue, ...]   "t": [type, ...]   (OR within)
--   "p": [lo, hi]  priority   "r": [lo, hi]  ready_at (ms)   "a": [lo, hi]  attempts
-- Ranges are inclusive at both ends. The jq filter on payloads is not here:
-- clients apply it to the records these scripts return.

local function set_of(list)
  if type(list) ~= 'table' then return nil end
  local set = {}
  for _, v in ipairs(list) do set[v] = true end
  return set
end

local function range_of(pair)
  if type(pair) ~= 'table' then return nil end
  return {tonumber(pair[1]), tonumber(pair[2])}
end

-- The filter as a table, or nil and an error reply.
local function parse_filter(text)
  local ok, raw = pcall(cjson.decode, text)
  if not ok or type(raw) ~= 'table' then
    return nil, fail_with('INVALID', 'filter ' .. text .. ' is not a JSON object')
  end
  return {
    s = set_of(raw.s), q = set_of(raw.q), t = set_of(raw.t),
    p = range_of(raw.p), r = range_of(raw.r), a = range_of(raw.a),
  }
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

-- The index keys a job's status puts it in ('ready:<queue>' for ready).
local function index_of(job)
  if job.s == 'ready' then return 'ready:' .. job.q end
  if job.s == 'in_flight' then return 'inflight' end
  return job.s
end
