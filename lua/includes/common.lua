-- Shared helpers for every zizq script. The loader pastes this file in place
-- of an `--@include "includes/common.lua"` line, so these locals are visible
-- to the script that includes it.
--
-- P is always the namespace prefix, "{<namespace>}:", and every key below is
-- derived from it, so one script only ever touches one hash slot.

-- Redis server time in integer milliseconds since the epoch. Every due-time
-- and retention decision uses this clock, never a client's.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- A domain failure, in the one form the Python client maps to exceptions:
-- "ZIZQ <CODE> <message>".
local function fail_with(code, message)
  return redis.error_reply('ZIZQ ' .. code .. ' ' .. message)
end

-- Argument checks, so that nothing stored can break a later script.
-- A plain non-negative integer: digits only (ms values, counts, limits).
local function natural(v)
  return type(v) == 'string' and string.find(v, '^%d+$') ~= nil and #v <= 15
end

-- A backoff exponent: a decimal number in 0..16 ("4", "4.5", "1e-05").
local function exponent_ok(v)
  if not (string.find(v, '^%d+%.?%d*$') or string.find(v, '^%d+%.?%d*e[-+]?%d+$')) then return false end
  local e = tonumber(v)
  return e ~= nil and e >= 0 and e <= 16
end

-- "base_ms exponent jitter_ms".
local function backoff_ok(v)
  local parts = {}
  for part in string.gmatch(v, '%S+') do parts[#parts + 1] = part end
  return #parts == 3 and natural(parts[1]) and exponent_ok(parts[2]) and natural(parts[3])
end

-- A queue or type name: non-empty, none of , * ? [ ] { } \ or NUL.
local function name_ok(v)
  return v ~= '' and not string.find(v, '[,%*%?%[%]{}\\%z]')
end

-- Wake one idle worker that listens on `key`. A wake list holds at most one
-- token: a woken worker takes as much as it can and passes the token on when
-- work remains, so one event never wakes every worker at once.
local function signal(key)
  if redis.call('LLEN', key) == 0 then
    redis.call('RPUSH', key, '1')
  end
end

-- Job records. Every job is one MessagePack map in the hash "jobs" (field:
-- the job id), with one- or two-letter keys (see docs/protocol/keys.md). The
-- record is stored compact: the status is a small number, and a queue of
-- "default", a priority of 32768 and 0 attempts are left out. load_job puts
-- them back, so scripts always work with the whole job: numbers as numbers,
-- the status by name.
local STATUS_CODE = {ready = 1, scheduled = 2, in_flight = 3, completed = 4, dead = 5}
local STATUS_NAME = {'ready', 'scheduled', 'in_flight', 'completed', 'dead'}

-- The job as a table, or nil when there is none; and its record as stored.
-- A record that is not a MessagePack map with a known status (written by
-- hand, or by a broken client) counts as no job: it is logged in Redis's
-- log and left in "jobs" for an operator, and no script fails on it, so a
-- batch that meets it does not stop halfway.
local function decode_job(P, id, blob)
  if not blob then return nil end
  local ok, job = pcall(cmsgpack.unpack, blob)
  if not ok or type(job) ~= 'table' or not STATUS_NAME[job.s] then
    redis.log(redis.LOG_WARNING, 'zizq: the record of job ' .. id .. ' in ' .. P .. 'jobs cannot be read; skipped')
    return nil, blob
  end
  job.s = STATUS_NAME[job.s]
  job.q = job.q or 'default'
  job.p = job.p or 32768
  job.a = job.a or 0
  return job, blob
end

local function load_job(P, id)
  return decode_job(P, id, redis.call('HGET', P .. 'jobs', id))
end

-- The job table (as load_job returns it) in its stored form. Scripts reply
-- with this record wherever they return a job.
local function pack_job(job)
  local s, q, p, a = job.s, job.q, job.p, job.a
  job.s = STATUS_CODE[s]
  if q == 'default' then job.q = nil end
  if p == 32768 then job.p = nil end
  if a == 0 then job.a = nil end
  local blob = cmsgpack.pack(job)
  job.s, job.q, job.p, job.a = s, q, p, a
  return blob
end

-- Store the job table as the job's record; returns the record.
local function save_job(P, id, job)
  local blob = pack_job(job)
  redis.call('HSET', P .. 'jobs', id, blob)
  return blob
end

-- Run a variadic command over a long list in slices, so no call unpacks
-- more values than Lua's stack holds: call_in_slices('ZADD', key, {s1, m1,
-- s2, m2, ...}, 2) keeps score/member pairs together. Returns the sum of
-- the replies.
local SLICE = 1000
local function call_in_slices(command, key, values, width)
  local step, total = SLICE * width, 0
  for first = 1, #values, step do
    total = total + redis.call(command, key, unpack(values, first, math.min(first + step - 1, #values)))
  end
  return total
end

-- load_job of many ids, with one HMGET per SLICE of them: jobs[i] is the
-- job of ids[i], or nil.
local function load_jobs(P, ids)
  local jobs = {}
  for first = 1, #ids, SLICE do
    local last = math.min(first + SLICE - 1, #ids)
    local blobs = redis.call('HMGET', P .. 'jobs', unpack(ids, first, last))
    for i = first, last do
      jobs[i] = decode_job(P, ids[i], blobs[i - first + 1] or nil)
    end
  end
  return jobs
end

-- Whether a job is past its purge time and so invisible to every read.
local function expired(job, now)
  return job.pa ~= nil and job.pa <= now
end

-- Unique keys. "unique:<key>" is a sorted set of the jobs that hold the key
-- (several can: a job waiting for its retry and a later one waiting in line),
-- each scored by how far its hold reaches: 0 while scheduled or ready (any
-- scope), 1 while in flight (scope active or exists), its purge_at once
-- finished (scope exists). A job leaves the set as its hold ends (taken, for
-- queued; finished, for active; deleted or purged, for every scope).
-- A job wanting the key in a scope conflicts with a holder scored up to
-- UNIQUE_REACH[scope], and for exists also with one whose purge_at is ahead.
local UNIQUE_REACH = {queued = 0, active = 1, exists = 1}
local UNIQUE_PAGE = 10

-- A job other than `except` that holds `key` in a way that conflicts with a
-- job wanting it in `scope`: its id and the job (as load_job returns it), or
-- nil. An entry whose job is gone or expired is passed over. Cost: O(log H)
-- for H holders of the key, plus one page per 10 entries passed over.
local function unique_holder(P, key, scope, now, except)
  local k = P .. 'unique:' .. key
  local ranges = {{0, UNIQUE_REACH[scope]}}
  if scope == 'exists' then ranges[2] = {'(' .. now, '+inf'} end
  for _, range in ipairs(ranges) do
    local offset = 0
    repeat
      local ids = redis.call('ZRANGEBYSCORE', k, range[1], range[2], 'LIMIT', offset, UNIQUE_PAGE)
      for _, id in ipairs(ids) do
        if id ~= except then
          local job = load_job(P, id)
          if job and job.uk == key and not expired(job, now) then return id, job end
        end
      end
      offset = offset + UNIQUE_PAGE
    until #ids < UNIQUE_PAGE
  end
  return nil
end

-- Jobs deleted leave their id behind for a minute, in 10-second buckets of
-- Redis time ("done:<n>", hashes that expire: field the id, value 'f' when
-- the job was deleted as it completed, or 'x' as it went dead, with a
-- retention of 0, or 'd' when it was deleted later, by purge, or by hand),
-- so that an enqueue repeated
-- after its reply was lost does not create the job a second time.
local DONE_WINDOW_MS = 60000
local DONE_BUCKET_MS = 10000
local ID_SCALE = 36 ^ 15 / 2 ^ 80  -- the first 10 base-36 digits, scaled to the top 48 bits

-- The ms timestamp inside a SCRU128 id (to within 1 ms), or nil.
local function id_time(id)
  local head = tonumber(string.sub(id, 1, 10), 36)
  if not head or #id ~= 25 then return nil end
  return math.floor(head * ID_SCALE)
end

-- How a job with this id was deleted within the window (by Redis's clock:
-- the producer's, in the id, plays no part): 'f', 'x' or 'd' as above, or nil.
local function was_done(P, id, now)
  for bucket = math.floor((now - DONE_WINDOW_MS) / DONE_BUCKET_MS), math.floor(now / DONE_BUCKET_MS) do
    local how = redis.call('HGET', P .. 'done:' .. bucket, id)
    if how then return how end
  end
  return nil
end
