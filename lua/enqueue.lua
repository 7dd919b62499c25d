--[[ enqueue: create one or many jobs, atomically (all or nothing).

KEYS[1]  namespace prefix "{<namespace>}:" (every other key derives from it)
ARGV[1]  N, the number of jobs: 0..1000. One call of 1000 jobs with unique
         keys runs for about 10 ms; a client splits a bigger batch into
         calls of at most 1000, each atomic on its own, so that no call
         holds Redis long enough to let leases lapse
ARGV[2]  the jobs: a MessagePack array of N arrays (str and raw types only,
         no bin: Redis's cmsgpack cannot read bin), each of these 14 strings
         in this order, and an optional 15th (one argument for the whole
         batch is much cheaper for clients to send than 14 per job):
  id            SCRU128 id made by the client (a retried call reuses it)
  type          job type name
  queue         queue name
  priority      integer 0..65535, lower runs sooner
  payload       the JSON-encoded payload
  ready_at      absolute ms since the epoch, or '' to use delay_ms
  delay_ms      ms after Redis's clock, or '' for now
  retry_limit   integer, or '' for the namespace default
  backoff       "base_ms exponent jitter_ms", or '' for the namespace default
  completed_ms  completed retention in ms, or ''
  dead_ms       dead retention in ms, or ''
  unique_key    string, or '' for none
  unique_while  'queued' | 'active' | 'exists', or '' (queued when a key is given)
  timeout_ms    the most a handler may run, in ms, or '' for no limit
  and optionally 3 more (a row of 17 values):
  limit         the name of the limit the job starts under (it must exist
                in "limits"), or ''
  limit_key     the key the limit holds per, or '' (needs a limit)
  group         the job's group: ready jobs of one queue and priority are
                taken in turns across groups; or ''
  and optionally an 18th, after those 3 (which may all be ''):
  trace_context the trace context the job was created in (a JSON object of
                propagation headers, by default W3C traceparent, and
                tracestate and baggage when present), stored as given; ''
                for none
  or, after the first job, a short row of 2: {id, payload}, a job with
  the other values of the nearest longer row before it (one check of
  those values, one record layout for all the jobs of a batch that share
  them)
ARGV[3]  optional: '1' when this call repeats one that may have been applied
         (its reply was lost). Only then are the ids looked up among the jobs
         recently deleted (done:<n>), so that a job that has already run (or
         was deleted) is not created again. A first call needs no look-up:
         its ids are new. A repeat that creates nothing writes one record
         it found again, unchanged, so that a WAIT after it on its
         connection has a write of its own to wait for (see the end).

Returns {now, flag1, id1, x1, flag2, id2, x2, ...}: Redis time in ms, then
three values per job, in input order:
  flag 0  created; x = its ready_at (it is scheduled when ready_at > now,
          else ready)
  flag 1  duplicate of the live job `id` holding the same unique key in a
          way the new job's scope conflicts with (an earlier job in this
          batch included); x = that job's record (see get.lua)
  flag 2  a job with this id exists already (the call was retried); x = its
          record
  flag 3  (only in a repeated call) a job with this id was deleted within
          the last minute (as it finished, by purge, or by delete or bulk);
          nothing is written; x = the id's timestamp (now, for an id that
          is not SCRU128)
Errors (nothing is written): "ZIZQ INVALID <what>" for a malformed job, or
N above 1000.
]]
--@include "includes/limits.lua"

local P = KEYS[1]
local n = tonumber(ARGV[1])
local MAX_JOBS = 1000
local WIDTH = 14  -- and an optional 15th value, the trace context
-- The values that must be '' or a non-negative integer, by position.
local NUMERIC = {[6] = 'ready_at', [7] = 'delay_ms', [8] = 'retry_limit', [10] = 'completed_ms', [11] = 'dead_ms',
  [14] = 'timeout_ms'}
local ok, jobs = pcall(cmsgpack.unpack, ARGV[2] or '')
local repeated = ARGV[3] == '1'
if not ok or type(jobs) ~= 'table' or not n or #jobs ~= n or not (#ARGV == 2 or repeated and #ARGV == 3) then
  local got = not ok and 'not MessagePack' or type(jobs) ~= 'table' and ('a ' .. type(jobs)) or ('an array of ' .. #jobs)
  return fail_with('INVALID', 'the arguments are not N and a MessagePack array of N jobs: N ' .. tostring(ARGV[1])
    .. ', ' .. (#ARGV - 1) .. ' argument(s) after it (a third may only be 1), the first ' .. got)
end
if n > MAX_JOBS then
  return fail_with('INVALID', 'N ' .. n .. ' jobs is not in 0..' .. MAX_JOBS .. ': send a bigger batch as several calls')
end
local ids = {}
for i = 1, n do
  local J = jobs[i]
  local w = type(J) == 'table' and #J
  if not (w == 2 and i > 1 or w == WIDTH or w == WIDTH + 3 or w == WIDTH + 4) then
    return fail_with('INVALID', 'job ' .. (i - 1) .. ' is not an array of ' .. WIDTH .. ', ' .. (WIDTH + 3) .. ' or '
      .. (WIDTH + 4) .. ' values (or of 2 after the first job)')
  end
  for k = 1, w do
    local v = J[k]
    if type(v) ~= 'string' then
      return fail_with('INVALID', 'job ' .. (i - 1) .. ': value ' .. k .. ' is not a string')
    end
    if v ~= '' and NUMERIC[k] and not natural(v) then
      return fail_with('INVALID', 'job ' .. (i - 1) .. ': ' .. NUMERIC[k] .. ' ' .. v .. ' is not a non-negative integer')
    end
  end
  ids[i] = J[1]
end

local now = now_ms()
-- Which ids exist already (the call was sent before): one HMGET per 1000.
local exists = {}
for first = 1, n, SLICE do
  local found = redis.call('HMGET', P .. 'jobs', unpack(ids, first, math.min(first + SLICE - 1, n)))
  for k = 1, #found do exists[first + k - 1] = found[k] end
end

-- One pass over the jobs: check each, decide its flag and make its record.
-- Nothing is written until every job has passed its checks.
local batch_keys = {}  -- unique key -> id of the first job in this batch using it
local batch_ids = {}   -- ids created by this batch
local out = {now}
local duplicates = {}     -- positions in out of the records of duplicates
local records = {}        -- {id, record, id, record, ...}
local uniques = {}        -- {unique key, id, ...}
local ready = {}          -- queue -> {priority, id, priority, id, ...}
local scheduled = {}      -- {ready_at, id, ...}
local queue_of = {}       -- id -> queue, for the jobs scheduled here
local queues, seen = {}, {}  -- the distinct queues of this batch
local turns = {}  -- group turns given (see limits.lua)
local str_headers = {}  -- payload length -> its MessagePack str header
local good_names = {}  -- type and queue names already checked in this call
local limits_known = {}  -- limit names checked (see limits.lua)
-- The shape of the latest full row: what its short rows repeat (job: the
-- record without d; lead: the packed start of a short row's record; score:
-- the ready score as text).
local s_queue, s_prio, s_ukey, s_uwhile, s_ready_at, s_group, s_job, s_lead, s_score
local n_out, n_records = 1, 0  -- #out, #records (counted: # costs a search each time)
for i = 0, n - 1 do
  local J = jobs[i + 1]
  local short = #J == 2
  local id, payload = J[1], J[short and 2 or 5]
  if id == '' then
    return fail_with('INVALID', 'job ' .. i .. ': the id is empty')
  end
  if not short then
    -- A full row: check its values, and work out what it and the short
    -- rows after it share.
    local typ, queue, prio = J[2], J[3], tonumber(J[4])
    local ukey, uwhile, bo = J[12], J[13], J[9]
    if not (good_names[typ] and good_names[queue]) then
      if not name_ok(typ) or not name_ok(queue) then
        return fail_with('INVALID', 'job ' .. i .. ': type ' .. typ .. ' or queue ' .. queue
          .. ' is empty or has , * ? [ ] { } \\ or NUL')
      end
      good_names[typ], good_names[queue] = true, true
    end
    if not prio or prio < 0 or prio > 65535 or prio % 1 ~= 0 then
      return fail_with('INVALID', 'job ' .. i .. ': priority ' .. J[4] .. ' is not an integer in 0..65535')
    end
    if uwhile ~= '' and not UNIQUE_REACH[uwhile] then
      return fail_with('INVALID', 'job ' .. i .. ': unique_while ' .. uwhile .. ' is not queued, active or exists')
    end
    if uwhile ~= '' and ukey == '' then
      return fail_with('INVALID', 'job ' .. i .. ': unique_while given without unique_key')
    end
    if bo ~= '' and not backoff_ok(bo) then
      return fail_with('INVALID', 'job ' .. i .. ': backoff ' .. bo .. ' is not "base_ms exponent jitter_ms"')
    end
    local limit_error = #J > WIDTH and limit_row_error(P, limits_known, J)
    if limit_error then return fail_with('INVALID', 'job ' .. i .. ': ' .. limit_error) end
    local ready_at = now
    if J[6] ~= '' then
      ready_at = tonumber(J[6])
    elseif J[7] ~= '' then
      ready_at = now + tonumber(J[7])
    end
    -- The stored form (see load_job): status as a number, defaults left out.
    local job = {t = typ, s = ready_at <= now and 1 or 2, r = ready_at}
    if queue ~= 'default' then job.q = queue end
    if prio ~= 32768 then job.p = prio end
    if J[8] ~= '' then job.rl = tonumber(J[8]) end
    if bo ~= '' then job.bo = bo end
    if J[10] ~= '' then job.rc = tonumber(J[10]) end
    if J[11] ~= '' then job.rd = tonumber(J[11]) end
    if ukey ~= '' then job.uk = ukey end
    if uwhile ~= '' then job.uw = uwhile end
    if J[14] ~= '' then job.to = tonumber(J[14]) end
    if (J[15] or '') ~= '' then job.lm = J[15] end
    if (J[16] or '') ~= '' then job.lk = J[16] end
    local group = J[17] or ''
    if group ~= '' then job.gk = group end
    if (J[18] or '') ~= '' then job.tc = J[18] end
    s_queue, s_prio, s_ukey, s_uwhile, s_ready_at = queue, prio, ukey, uwhile ~= '' and uwhile or 'queued', ready_at
    s_group, s_job, s_lead, s_score = group, job, nil, nil
  end
  local ukey = s_ukey

  local flag, target, x = 0, id, false
  if batch_ids[id] or exists[i + 1] then
    flag = 2
  elseif repeated and was_done(P, id, now) then
    flag, x = 3, id_time(id) or now
  elseif ukey ~= '' and batch_keys[ukey] then
    flag, target = 1, batch_keys[ukey]
  elseif ukey ~= '' then
    local holder = unique_holder(P, ukey, s_uwhile, now)
    if holder then flag, target = 1, holder end
  end

  if flag == 0 then
    -- Only a job this batch creates makes a later job with its id a repeat.
    batch_ids[id] = true
    local queue, ready_at, record, turn = s_queue, s_ready_at, nil, nil
    if s_group ~= '' then
      turn = turns_next(P, turns, queue, s_prio, s_group)
      s_job.gt, s_job.d = turn, payload
      record = cmsgpack.pack(s_job)
    elseif short then
      -- Put together from bytes, with no table packed a job (inline: a
      -- helper function would be made again on every call of the script).
      if not s_lead then
        -- The start of the shape's short-row records, packed once: the map
        -- header and every field of the job but d, then the key d.
        local parts, count = {}, 1
        for k, v in pairs(s_job) do
          if k ~= 'd' then
            parts[count] = cmsgpack.pack(k, v)
            count = count + 1
          end
        end
        s_lead = (count < 16 and string.char(0x80 + count) or string.char(0xde, 0, count)) .. table.concat(parts)
          .. cmsgpack.pack('d')
      end
      -- The payload's MessagePack str header, as cmsgpack writes it (made
      -- once a length: the payloads of a batch share a few lengths).
      local len = #payload
      local header = str_headers[len]
      if not header then
        if len < 32 then
          header = string.char(0xa0 + len)
        elseif len < 256 then
          header = string.char(0xd9, len)
        elseif len < 65536 then
          header = string.char(0xda, math.floor(len / 256), len % 256)
        else
          header = string.char(0xdb, math.floor(len / 16777216), math.floor(len / 65536) % 256,
            math.floor(len / 256) % 256, len % 256)
        end
        str_headers[len] = header
      end
      record = s_lead .. header .. payload
    else
      s_job.d = payload
      record = cmsgpack.pack(s_job)
    end
    if ukey ~= '' then
      batch_keys[ukey] = id
      uniques[#uniques + 1] = ukey
      uniques[#uniques + 1] = id
    end
    if not seen[queue] then
      seen[queue] = true
      queues[#queues + 1] = queue
    end
    records[n_records + 1] = id
    records[n_records + 2] = record
    n_records = n_records + 2
    if ready_at <= now then
      local list = ready[queue]
      if not list then
        list = {}
        ready[queue] = list
      end
      local m = #list
      if not (turn or s_score) then s_score = tostring(s_prio) end  -- text: ZADD reads it as sent
      list[m + 1] = turn and ready_score(s_prio, turn) or s_score
      list[m + 2] = id
    else
      scheduled[#scheduled + 1] = ready_at
      scheduled[#scheduled + 1] = id
      queue_of[id] = queue
    end
    x = ready_at
  elseif flag ~= 3 then
    duplicates[#duplicates + 1] = n_out + 3
  end
  out[n_out + 1] = flag
  out[n_out + 2] = target
  out[n_out + 3] = x
  n_out = n_out + 3
end

-- The writes: records and indexes, each once per call (one command per
-- 1000 members).
call_in_slices('HSET', P .. 'jobs', records, 2)
turns_save(turns)
for k = 1, #uniques, 2 do
  redis.call('ZADD', P .. 'unique:' .. uniques[k], 0, uniques[k + 1])
end
if call_in_slices('SADD', P .. 'queues', queues, 1) > 0 then
  signal(P .. 'wake')
end
for queue, list in pairs(ready) do
  call_in_slices('ZADD', P .. 'ready:' .. queue, list, 2)
  signal(P .. 'wake:' .. queue)
end
if #scheduled > 0 then
  call_in_slices('ZADD', P .. 'scheduled', scheduled, 2)
  -- When one of these became the earliest scheduled job, idle workers are
  -- blocked with a timeout set for a later due time: wake one of them.
  local head = redis.call('ZRANGE', P .. 'scheduled', 0, 0)[1]
  if queue_of[head] then signal(P .. 'wake:' .. queue_of[head]) end
end
-- Duplicates are read after the writes, so one that names an earlier job
-- of this same batch sees it.
for _, at in ipairs(duplicates) do
  out[at] = redis.call('HGET', P .. 'jobs', out[at - 1])
end
-- WAIT counts the replicas that have every write of its own connection. A
-- repeat comes on a new connection when the first try's was cut, and finds
-- the jobs that try made: with nothing written, its WAIT would wait for
-- nothing, and could report replicas that never got them. One write (a
-- record set to what it is) carries the replication offset past them.
if repeated and #records == 0 and duplicates[1] and out[duplicates[1]] then
  redis.call('HSET', P .. 'jobs', out[duplicates[1] - 1], out[duplicates[1]])
end
return out
