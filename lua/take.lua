--[[ take: promote due scheduled jobs, then move up to N ready jobs in flight.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  worker id (owner of the jobs taken); it must hold a lease that has
         not lapsed (see heartbeat.lua), so a worker declared lost, or one
         whose lease ran out before its heartbeat renewed it, cannot take
ARGV[2]  N, the most jobs to take (0 only promotes and reports)
ARGV[3]  S, how many of the jobs taken start their handler at once (the
         worker's free runners): the first S taken are marked started (field
         "st"); the others are prefetched. A recovered job that may have
         killed its worker (a suspect, field "sx") is taken alone: only as
         the first job of a take with S >= 1, and nothing after it; the take
         stops before a suspect that would come later
ARGV[4..] queue names to take from; none means every known queue

Jobs are taken in (priority, id) order across all the queues named: lowest
priority number first, oldest id first within a priority. Paused queues are
skipped. At most 1000 due scheduled jobs are promoted per call (of every queue,
not only the ones named).

Errors: "ZIZQ LOST" when the worker holds no lease (it never joined, or was
declared lost and its jobs recovered: it must join again under a new id), or
its lease has lapsed (its next beat renews it if nobody recovered its jobs
yet). Nothing is taken then.

Returns {now, next_due, more, id1, record1, id2, record2, ...}
  now       Redis time in ms
  next_due  ready_at of the earliest scheduled job, or -1 when there is none
  more      1 when ready jobs remain in the named queues after this take; 2
            when the take took a suspect or stopped before one (see
            ARGV[3]), whether or not ready jobs remain: take again when the
            suspect taken has started and a runner is free
  idK, recordK  each job taken, with its record after the take (see get.lua)
]]
--@include "includes/lifecycle.lua"
--@include "includes/limits.lua"

local P = KEYS[1]
local worker = ARGV[1]
if not natural(ARGV[2]) then
  return fail_with('INVALID', 'the count ' .. ARGV[2] .. ' is not a non-negative integer')
end
if not natural(ARGV[3]) then
  return fail_with('INVALID', 'the start count ' .. ARGV[3] .. ' is not a non-negative integer')
end
local want, start = tonumber(ARGV[2]), tonumber(ARGV[3])
local now = now_ms()
local lease = redis.call('ZSCORE', P .. 'workers', worker)
if not lease then
  return fail_with('LOST', 'worker ' .. worker .. ' holds no lease; join again under a new id')
end
if tonumber(lease) < now then
  return fail_with('LOST', 'the lease of worker ' .. worker .. ' has lapsed; renew it with a beat first')
end

-- Promote due scheduled jobs. The head of "scheduled" is read first: when
-- it is not due (the common case) nothing is, and it is next_due as well.
local head = redis.call('ZRANGE', P .. 'scheduled', '0', '0', 'WITHSCORES')
if head[2] and tonumber(head[2]) <= now then
  local due = redis.call('ZRANGEBYSCORE', P .. 'scheduled', '-inf', now, 'LIMIT', 0, 1000)
  head = nil  -- read again after the take
  redis.call('ZREM', P .. 'scheduled', unpack(due))
  for _, id in ipairs(due) do
    local job = load_job(P, id)
    if job then
      job.s = 'ready'
      save_job(P, id, job)
      make_ready(P, id, job.q, job.p, job.gt)
    end
  end
end

local queues = {}
if #ARGV > 3 then
  for i = 4, #ARGV do queues[#queues + 1] = ARGV[i] end
else
  queues = redis.call('SMEMBERS', P .. 'queues')
end
-- The paused queues, read once (a few, against the many a take may serve).
local paused = {}
for _, q in ipairs(redis.call('SMEMBERS', P .. 'paused')) do paused[q] = true end
local open, named = {}, {}
for _, q in ipairs(queues) do
  if not named[q] and not paused[q] then open[#open + 1] = q end
  named[q] = true
end

-- Choose: the N smallest (priority, id) among the heads of the open queues;
-- with limits defined, the first N in that order that have room.
local gate = gate_new(P, now)
local chosen, found, own_of, queue_of = {}, {}, {}, {}
local ended = {}  -- the queues the limit walk read to their end
local emptied = false  -- the one open queue was read to its end
if want > 0 and gate.on then
  -- Walk the ready jobs in order, a page of each queue at a time, passing
  -- over (and leaving in place) those whose limit has no room: at most
  -- LIMIT_WALK of them.
  local page = math.min(math.max(want, 10), 100)
  local heads = {}
  for _, q in ipairs(open) do heads[#heads + 1] = {key = P .. 'ready:' .. q, off = 0, buf = {}, pos = 1} end
  -- The id at the head of h's walk (reading its next page when needed), or nil.
  local function head_of(h)
    if h.pos > #h.buf and not h.done then
      h.buf, h.pos = redis.call('ZRANGE', h.key, h.off, h.off + page - 1, 'WITHSCORES'), 1
      h.off = h.off + page
      h.done = #h.buf < 2 * page
    end
    return h.buf[h.pos]
  end
  local passed = 0
  while #chosen < want and passed < LIMIT_WALK do
    local best, best_score, best_id
    if #heads == 1 then
      best, best_id = heads[1], head_of(heads[1])
    else
      for _, h in ipairs(heads) do
        local id = head_of(h)
        local score = id and tonumber(h.buf[h.pos + 1])
        if id and (not best or score < best_score or score == best_score and id < best_id) then
          best, best_score, best_id = h, score, id
        end
      end
    end
    if not best_id then break end
    best.pos = best.pos + 2
    local job = load_job(P, best_id)
    local ok, own, queue = true, nil, nil
    if job then ok, own, queue = gate_admit(gate, job) end
    if ok then
      -- An entry whose record vanished is dropped too.
      chosen[#chosen + 1], found[best_id] = best_id, job or false
      own_of[best_id], queue_of[best_id] = own, queue
      best.out = best.out or {}
      best.out[#best.out + 1] = best_id
    else
      passed = passed + 1
    end
  end
  -- Out of line, once per queue.
  for i, h in ipairs(heads) do
    if h.out then call_in_slices('ZREM', h.key, h.out, 1) end
    if h.done and h.pos > #h.buf then ended[#ended + 1] = open[i] end
  end
elseif want > 0 and #open == 1 then
  -- ZPOPMIN would do, but would format every score as text for nothing.
  local key = P .. 'ready:' .. open[1]
  chosen = redis.call('ZRANGE', key, '0', want - 1)
  if #chosen > 0 then redis.call('ZREMRANGEBYRANK', key, '0', #chosen - 1) end
  -- Fewer than N: the queue is empty now (unless a suspect goes back).
  emptied = #chosen < want
elseif want > 0 then
  -- The N smallest (score, id, queue) seen so far, in order. Most entries
  -- offered are not among them and cost one comparison (a sort of every
  -- queue's head cost a Lua call per comparison). Ids are unique, so no
  -- two entries tie. Returns false when the entry is not among them.
  local best = {}
  local function offer(score, id, q)
    local n = #best
    if n >= want then
      local last = best[n]
      if score > last[1] or (score == last[1] and id > last[2]) then return false end
      best[n], n = nil, n - 1
    end
    while n >= 1 and (score < best[n][1] or (score == best[n][1] and id < best[n][2])) do
      best[n + 1], n = best[n], n - 1
    end
    best[n + 1] = {score, id, q}
    return true
  end
  -- The N smallest are all in the queues whose first jobs are among the N
  -- smallest first jobs: read one job of every queue, then the next N - 1
  -- of those (each queue's in order, up to the first that is not among them).
  for _, q in ipairs(open) do
    local head = redis.call('ZRANGE', P .. 'ready:' .. q, '0', '0', 'WITHSCORES')
    if head[1] then offer(tonumber(head[2]), head[1], q) end
  end
  if want > 1 then
    local first = {}
    for h, entry in ipairs(best) do first[h] = entry[3] end
    for _, q in ipairs(first) do
      local after = redis.call('ZRANGE', P .. 'ready:' .. q, '1', want - 1, 'WITHSCORES')
      for i = 1, #after, 2 do
        if not offer(tonumber(after[i + 1]), after[i], q) then break end
      end
    end
  end
  for _, entry in ipairs(best) do
    redis.call('ZREM', P .. 'ready:' .. entry[3], entry[2])
    chosen[#chosen + 1] = entry[2]
  end
end

local out = {now, -1, 0}
local flight, taken, records = {}, {}, {}
local now_text = tostring(now)  -- one number-to-text conversion, not one per job
local held_back = false
-- The records not read yet, with one HMGET.
local unread = {}
for _, id in ipairs(chosen) do
  if found[id] == nil then unread[#unread + 1] = id end
end
for k, job in pairs(load_jobs(P, unread)) do found[unread[k]] = job end
for _, id in ipairs(chosen) do
  local job = found[id]
  if job and (held_back or (job.sx and (#taken > 0 or start < 1))) then
    -- A suspect is taken alone, first and with a free runner: in the
    -- worker's buffer it would wait unmarked, and next to other jobs of the
    -- same take a pill among them could kill the process before the others
    -- start, counting their losses too. Leave it (and what comes after it)
    -- in line for the next take.
    held_back = true
    redis.call('ZADD', P .. 'ready:' .. job.q, ready_score(job.p, job.gt), id)
  elseif job then
    -- An index entry whose job record has vanished is dropped, not delivered.
    job.s, job.da, job.w = 'in_flight', now, worker
    job.st = #taken < start and 1 or nil
    if gate.on then gate_commit(gate, id, job, own_of[id], queue_of[id]) end
    if job.gk and job.gt then turn_taken(P, job) end
    local record = pack_job(job)
    records[#records + 1] = id
    records[#records + 1] = record
    unique_update(P, id, job)
    flight[#flight + 1] = now_text
    flight[#flight + 1] = id
    taken[#taken + 1] = id
    out[#out + 1] = id
    out[#out + 1] = record
    -- Nothing comes after a suspect in its take (see above).
    if job.sx then held_back = true end
  end
end
gate_flush(gate)
if #taken > 0 then
  call_in_slices('HSET', P .. 'jobs', records, 2)
  call_in_slices('ZADD', P .. 'inflight', flight, 2)
  call_in_slices('SADD', P .. 'worker:' .. worker, taken, 1)
end

if not head then head = redis.call('ZRANGE', P .. 'scheduled', '0', '0', 'WITHSCORES') end
if head[2] then out[2] = tonumber(head[2]) end
-- Room under a rate limit is due like a scheduled job.
if gate.due and (out[2] < 0 or gate.due < out[2]) then out[2] = gate.due end
gate_report(gate, ended)
-- A walk that ended short of N found nothing more that can start now: the
-- jobs left wait for room (a slot freed wakes a worker; a window is due).
local rest = not (gate.on and want > 0 and #chosen < want) and not (emptied and not held_back)
for _, q in ipairs(open) do
  local key = P .. 'ready:' .. q
  if rest and redis.call('ZCARD', key) > 0 then
    out[3] = held_back and 2 or 1
    -- Pass the wake-up on: another idle worker can help with the rest (and
    -- one with a free runner can take a job held back).
    if #chosen > 0 then
      signal(P .. 'wake:' .. q)
      -- Workers serving every queue that blocked before this queue existed
      -- listen only on the new-queue list: wake one of them too.
      signal(P .. 'wake')
    end
    break
  end
end
-- A suspect taken or held back: the worker lets it start before it takes again.
if held_back then out[3] = 2 end
return out
