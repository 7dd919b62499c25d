--[[ flow_enqueue: create jobs that wait for other jobs, or that join a batch.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  N, the number of jobs: 0..1000
ARGV[2]  the jobs: a MessagePack array of N arrays of 17 strings: three
         workflow values, then the 14 of enqueue.lua (id, type, queue,
         priority, payload, ready_at, delay_ms, retry_limit, backoff,
         completed_ms, dead_ms, unique_key, unique_while, timeout_ms; a job
         with a limit or a group cannot have a workflow yet):
  depends_on             the ids of the jobs it waits for, separated by
                         spaces (at most 100), or ''. Each is a job of this
                         namespace, or an earlier job of this call
  on_dependency_failure  'run' to run it even when a dependency ends dead
                         or is deleted, or '' (it dies then, error type
                         "zizq.DependencyFailed")
  batch                  the id of an open batch it joins (batch_open.lua),
                         or ''
ARGV[3]  optional: '1' when this call repeats one that may have been applied
         (as enqueue.lua's; a repeat that creates nothing writes one record
         it found again, unchanged, for a WAIT after it)

Each job is made as enqueue.lua makes it (create_job), then wired: a job
with unfinished dependencies is "waiting" (status 6, in the sorted set
"waiting") and each dependency lists it in "deps:<dependency id>"; one
whose dependency is dead already dies at once (unless 'run'); a batch
member is counted in its batch's total.

Returns {now, flag1, id1, x1, ...} as enqueue.lua, with flag 4 in place of
flag 0: created, x = its record (its status may be waiting or dead).
Errors, all before any write: "ZIZQ INVALID" (a malformed job, a job that
depends on itself, more than 100 dependencies, N above 1000),
"ZIZQ NOT_FOUND" (a dependency that is no job of this namespace, nor an
earlier job of this call), "ZIZQ BATCH_NOT_FOUND" (a batch that does not
exist), "ZIZQ BATCH_CLOSED" (a batch that is closed).
]]
--@include "includes/lifecycle.lua"
--@include "includes/flow.lua"

local P = KEYS[1]
local n = tonumber(ARGV[1])
local WIDTH = 17
local MAX_DEPS = 100
local ok, jobs = pcall(cmsgpack.unpack, ARGV[2] or '')
local repeated = ARGV[3] == '1'
if not ok or type(jobs) ~= 'table' or not n or #jobs ~= n or not (#ARGV == 2 or repeated and #ARGV == 3) then
  return fail_with('INVALID', 'the arguments are not N and a MessagePack array of N jobs')
end
if n > 1000 then
  return fail_with('INVALID', 'N ' .. n .. ' jobs is not in 0..1000: send a bigger batch as several calls')
end
local now = now_ms()
local earlier, batches = {}, {}
for i = 1, n do
  local J = jobs[i]
  if type(J) ~= 'table' or #J ~= WIDTH then
    return fail_with('INVALID', 'job ' .. (i - 1) .. ' is not an array of ' .. WIDTH .. ' values')
  end
  local err = nil
  for k = 1, 3 do
    if type(J[k]) ~= 'string' then err = 'value ' .. k .. ' is not a string' end
  end
  err = err or job_row_error({unpack(J, 4, WIDTH)})
  if not err and J[2] ~= '' and J[2] ~= 'run' then
    err = 'on_dependency_failure ' .. J[2] .. " is not 'run' or ''"
  end
  if err then return fail_with('INVALID', 'job ' .. (i - 1) .. ': ' .. err) end
  local id, count = J[4], 0
  for dep in string.gmatch(J[1], '%S+') do
    count = count + 1
    if dep == id then return fail_with('INVALID', 'job ' .. (i - 1) .. ' (' .. dep .. ') depends on itself') end
    if count > MAX_DEPS then
      return fail_with('INVALID', 'job ' .. (i - 1) .. ' depends on more than ' .. MAX_DEPS .. ' jobs')
    end
    if not earlier[dep] and redis.call('HEXISTS', P .. 'jobs', dep) == 0 then
      local how = was_done(P, dep, now)
      if how ~= 'f' and how ~= 'x' then
        return fail_with('NOT_FOUND', 'job ' .. (i - 1) .. ' depends on job ' .. dep
          .. ', which is not a job of this namespace nor an earlier job of this call')
      end
    end
  end
  local bid = J[3]
  if bid ~= '' and not batches[bid] then
    local closed = redis.call('HGET', P .. 'batch:' .. bid, 'closed')
    if not closed then return fail_with('BATCH_NOT_FOUND', 'no batch with id ' .. bid) end
    if closed == '1' then
      return fail_with('BATCH_CLOSED', 'batch ' .. bid .. ' is closed; members can be added only until it is closed')
    end
    batches[bid] = true
  end
  earlier[id] = true
end

flow_build()
local out = {now}
local alias = {}  -- id of a duplicate in this call -> the holder it stands for
local created, found = 0, nil
for i = 1, n do
  local J = jobs[i]
  local id = J[4]
  local flag, target, x = 4, id, false
  if redis.call('HEXISTS', P .. 'jobs', id) == 1 then
    flag = 2
  elseif repeated and was_done(P, id, now) then
    flag, x = 3, id_time(id) or now
  else
    local made, holder = create_job(P, {unpack(J, 4, WIDTH)}, now)
    if made == 1 then
      flag, target, alias[id] = 1, holder, holder
    else
      flow_wire(P, id, J[1], J[2], J[3], alias, now)
      created = created + 1
    end
  end
  if flag ~= 3 then
    x = redis.call('HGET', P .. 'jobs', target)
    if not x then flag, x = 3, now end  -- made dead at once, with a dead retention of 0
    if flag ~= 3 and flag ~= 4 then found = found or {target, x} end
  end
  out[#out + 1] = flag
  out[#out + 1] = target
  out[#out + 1] = x
end
-- As enqueue.lua: WAIT counts the writes of its own connection, and a
-- repeat comes on a new one, so it writes one record (unchanged) to wait for.
if repeated and created == 0 and found then redis.call('HSET', P .. 'jobs', found[1], found[2]) end
return out
