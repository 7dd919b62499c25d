-- Limits and groups: how take decides that a job may start (concurrency and
-- rate limits, per key), how a job gives its slot back as it leaves flight,
-- and the turns that interleave the groups of a queue and priority. Included
-- by lifecycle.lua (so every script that moves a job out of flight gives its
-- slot back), by take.lua and by enqueue.lua. See docs/protocol/keys.md.
--
-- Keys (all under the namespace prefix P, so in its hash slot):
--   limits              hash: limit name -> "<concurrency> <rate> <per_ms>",
--                       '-' for a part not set. A name "queue:<q>" limits
--                       every job of queue q.
--   limit:<name>        hash: limit key ('' for none) -> jobs in flight
--                       holding a slot of the limit under that key
--   limitw:<name>,<key> sorted set: the starts within the rate window
--                       (score: Redis ms; member "<id>@<ms>"); expires
--                       when idle for a window
--   limitk:<name>       sorted set: the keys of a rate limit with starts
--                       in the window, scored by their latest start (for
--                       limit_read; take trims it)
--   limitwait           hash: "<limit name>,<queue>" -> ready jobs of the
--                       queue the latest take that met them passed over
--                       for want of room under the limit; the field goes
--                       when a take walks the whole queue and passes none
--   groups:<queue>      hash: "<priority>" -> the turn being served (of the
--                       latest job taken); "<priority>,<group>" -> the
--                       latest turn given to the group
--@include "includes/common.lua"

-- The most ready entries one take passes over (jobs with no room under
-- their limit); past them the take stops and the jobs further back wait for
-- a slot or a window to free.
local LIMIT_WALK = 1000
-- Group turns sit in the fraction of the ready score: priority + turn / 2^36
-- stays exact in a double for priorities up to 65535.
local TURN_SCALE = 2 ^ 36
local TURN_MAX = TURN_SCALE - 1

-- A limit as stored ("<concurrency> <rate> <per_ms>", '-' for none) as
-- {c = concurrency or nil, r = rate or nil, per = ms}, or nil when malformed.
local function limit_parse(v)
  if type(v) ~= 'string' then return nil end
  local c, r, per = string.match(v, '^(%S+) (%S+) (%S+)$')
  if not c or not natural(per) or tonumber(per) < 1 then return nil end
  if (c ~= '-' and not natural(c)) or (r ~= '-' and not natural(r)) or (c == '-' and r == '-') then return nil end
  return {c = tonumber(c), r = tonumber(r), per = tonumber(per)}
end

-- The score of a ready job: its priority, plus its group's turn as a
-- fraction (jobs without a group come first within their priority).
local function ready_score(priority, turn)
  if not turn then return priority end
  return string.format('%.17g', priority + turn / TURN_SCALE)
end

-- Group turns for an enqueue: read once per group, written only after every
-- job of the call passed its checks (turns_save).
local function turns_next(P, T, queue, prio, group)
  local k, f = P .. 'groups:' .. queue, prio .. ',' .. group
  local entry = T[k .. '\0' .. f]
  if not entry then
    local last = tonumber(redis.call('HGET', k, f)) or 0
    local serving = tonumber(redis.call('HGET', k, tostring(prio))) or 0
    -- A group that has been idle starts at the turn being served.
    entry = {k, f, math.max(last, serving - 1)}
    T[k .. '\0' .. f] = entry
  end
  entry[3] = math.min(entry[3] + 1, TURN_MAX)
  return entry[3]
end

local function turns_save(T)
  for _, entry in pairs(T) do redis.call('HSET', entry[1], entry[2], entry[3]) end
end

-- A grouped job was taken: its turn is now the one being served; the
-- group's field goes once its latest job is taken (a later job starts at the
-- served turn anyway).
local function turn_taken(P, job)
  local k, prio = P .. 'groups:' .. job.q, tostring(job.p)
  local serving = tonumber(redis.call('HGET', k, prio)) or 0
  if job.gt > serving then redis.call('HSET', k, prio, job.gt) end
  local f = prio .. ',' .. job.gk
  if tonumber(redis.call('HGET', k, f)) == job.gt then redis.call('HDEL', k, f) end
end

-- The jobs waiting on each limit, per queue, as "limitwait" holds them:
-- {name = {queue = count, ...}, ...}.
local function limit_waiting(P)
  local flat = redis.call('HGETALL', P .. 'limitwait')
  local out = {}
  for i = 1, #flat, 2 do
    local comma = string.find(flat[i], ',', 1, true)
    if comma then
      local name = string.sub(flat[i], 1, comma - 1)
      out[name] = out[name] or {}
      out[name][string.sub(flat[i], comma + 1)] = tonumber(flat[i + 1]) or 0
    end
  end
  return out
end

-- Write the slots given back (see limit_release): one HINCRBY per limit
-- and key; and wake a worker of each queue where jobs wait on a limit that
-- got a slot back.
local function limit_flush(P, freed)
  if next(freed) == nil then return end
  local waiting = limit_waiting(P)
  for name, keys in pairs(freed) do
    local k = P .. 'limit:' .. name
    for key, n in pairs(keys) do
      if redis.call('HINCRBY', k, key, -n) <= 0 then redis.call('HDEL', k, key) end
    end
    for q in pairs(waiting[name] or {}) do signal(P .. 'wake:' .. q) end
  end
end

-- Give back the concurrency slots a job holds (field "ls": 1 its own
-- limit's, 2 its queue's, 3 both) as it leaves flight; the caller saves the
-- job. With `freed` (a table) the counts are gathered for one limit_flush
-- of a batch; without, they are written at once.
local function limit_release(P, job, freed)
  local held = job.ls
  if not held then return end
  job.ls = nil
  local batch = freed or {}
  local function give(name, key)
    local entry = batch[name]
    if not entry then
      entry = {}
      batch[name] = entry
    end
    entry[key] = (entry[key] or 0) + 1
  end
  if held % 2 == 1 and job.lm then give(job.lm, job.lk or '') end
  if held >= 2 then give('queue:' .. job.q, '') end
  if not freed then limit_flush(P, batch) end
end

-- The limits of one take: each definition and each (limit, key) state read
-- once, with the room this take has given out so far.
local function gate_new(P, now)
  return {P = P, now = now, on = redis.call('HLEN', P .. 'limits') > 0, defs = {}, lanes = {}, qnames = {},
    waiting = {}, due = nil}
end

local function gate_def(g, name)
  local d = g.defs[name]
  if d == nil then
    d = limit_parse(redis.call('HGET', g.P .. 'limits', name)) or false
    g.defs[name] = d
    if d then g.lanes[name] = {} end
  end
  return d
end

-- Whether the limit `name` has room for one more start under `key`: true
-- and its lane (nil when the limit does not exist: no limit), or false and
-- when room is due by the rate window (ms; nil: when a slot frees).
local function gate_room(g, name, key)
  local def = gate_def(g, name)
  if not def then return true, nil end
  local lanes = g.lanes[name]
  local lane = lanes[key]
  if not lane then
    lane = {def = def, name = name, key = key, n = 0, s = 0, taken = 0}
    if def.c then lane.n = tonumber(redis.call('HGET', g.P .. 'limit:' .. name, key)) or 0 end
    if def.r then
      lane.wk, lane.starts = g.P .. 'limitw:' .. name .. ',' .. key, {}
      -- A start at now counts against every start in [now - per, now].
      redis.call('ZREMRANGEBYSCORE', lane.wk, '-inf', '(' .. (g.now - def.per))
      lane.s = redis.call('ZCARD', lane.wk)
    end
    lanes[key] = lane
  end
  if def.c and lane.n >= def.c then return false, nil end
  if def.r and lane.s >= def.r then
    if not lane.due then
      local oldest = redis.call('ZRANGE', lane.wk, 0, 0, 'WITHSCORES')[2]
      lane.due = (tonumber(oldest) or g.now) + def.per + 1
    end
    return false, lane.due
  end
  return true, lane
end

-- A job of queue q the take passes over for want of room under the limit
-- `name`.
local function gate_wait(g, name, due, q)
  local field = name .. ',' .. q
  g.waiting[field] = (g.waiting[field] or 0) + 1
  if due and (not g.due or due < g.due) then g.due = due end
end

local function gate_reserve(lane)
  if lane then
    if lane.def.c then lane.n = lane.n + 1 end
    if lane.def.r then lane.s = lane.s + 1 end
  end
end

-- Whether a job may start now under its own limit and its queue's. When it
-- may, its room is given out (reserved for this take) and the two lanes
-- (nil where there is no limit) are returned for gate_commit; when not, the
-- take counts it as waiting and notes when room is due.
local function gate_admit(g, job)
  if not g.on then return true, nil, nil end
  local own, ok, due
  if job.lm then
    ok, own = gate_room(g, job.lm, job.lk or '')
    if not ok then
      gate_wait(g, job.lm, own, job.q)
      return false
    end
  end
  local qname = g.qnames[job.q]
  if not qname then
    qname = 'queue:' .. job.q
    g.qnames[job.q] = qname
  end
  local ok_q, queue = gate_room(g, qname, '')
  if not ok_q then
    gate_wait(g, qname, queue, job.q)
    return false
  end
  gate_reserve(own)
  gate_reserve(queue)
  return true, own, queue
end

-- The job admitted with its lanes is taken: its concurrency slots are
-- marked on it (field "ls": 1 its own limit's, 2 its queue's) and its start
-- counted; gate_flush writes the counts.
local function gate_count(g, id, lane)
  lane.taken = lane.taken + 1
  if lane.def.r then
    local starts = lane.starts
    starts[#starts + 1] = g.now
    starts[#starts + 1] = id .. '@' .. g.now
  end
  return lane.def.c and 1 or 0
end

local function gate_commit(g, id, job, own, queue)
  local held = 0
  if own then held = gate_count(g, id, own) end
  if queue then held = held + 2 * gate_count(g, id, queue) end
  if held > 0 then job.ls = held end
end

-- Write what the take's jobs took, one command per lane: the slots
-- (HINCRBY) and the starts in the rate window.
local function gate_flush(g)
  local trimmed = {}
  for _, lanes in pairs(g.lanes) do
    for _, lane in pairs(lanes) do
    if lane.taken > 0 then
      if lane.def.c then redis.call('HINCRBY', g.P .. 'limit:' .. lane.name, lane.key, lane.taken) end
      if lane.def.r then
        call_in_slices('ZADD', lane.wk, lane.starts, 2)
        redis.call('PEXPIRE', lane.wk, lane.def.per + 1000)
        local recent = g.P .. 'limitk:' .. lane.name
        redis.call('ZADD', recent, g.now, lane.key)
        if not trimmed[lane.name] then
          trimmed[lane.name] = true
          redis.call('ZREMRANGEBYSCORE', recent, '-inf', '(' .. (g.now - lane.def.per))
        end
      end
    end
    end
  end
end

-- The jobs the take passed over, per limit and queue ("limitwait"); for a
-- queue it walked to its end, a limit with none passed over has none
-- waiting there. `ended`: the queues walked to their end.
local function gate_report(g, ended)
  if not g.on then return end
  for field, n in pairs(g.waiting) do redis.call('HSET', g.P .. 'limitwait', field, n) end
  for _, q in ipairs(ended) do
    for name, d in pairs(g.defs) do
      local field = name .. ',' .. q
      if d and not g.waiting[field] then redis.call('HDEL', g.P .. 'limitwait', field) end
    end
  end
end

-- Enqueue values 15..17 (optional: a row has 14 or 17 values): limit,
-- limit_key, group. Why they cannot make a job (a limit must exist when the
-- job is enqueued), or nil. `known` caches the limit names seen.
local function limit_row_error(P, known, J)
  local name, key, group = J[15] or '', J[16] or '', J[17] or ''
  if name ~= '' and not known[name] then
    if redis.call('HEXISTS', P .. 'limits', name) == 0 then
      return 'limit ' .. name .. ' does not exist: set it first (set_limit)'
    end
    known[name] = true
  end
  if key ~= '' and name == '' then return 'limit_key ' .. key .. ' given without a limit' end
  if #key > 1000 or #group > 1000 then return 'a limit_key or group is longer than 1000 bytes' end
  return nil
end
