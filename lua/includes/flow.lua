-- Workflows: jobs that wait for other jobs (dependencies), and batches whose
-- callbacks fire exactly once. Every script that finishes, deletes or
-- retries jobs includes this file after lifecycle.lua: it sets lifecycle's
-- hooks flow_end and flow_retried, which finish, delete_job and retry_dead
-- call only for a job with dependents ("dn"), waiting for others ("dp") or
-- in a batch ("bt"); any other job pays one field test. See
-- docs/protocol/keys.md §2.26 to §2.28.
--@include "includes/create.lua"

-- Dependents released in one script call. A finish that releases more
-- leaves the rest in "flow:release", which workers drain (flow_drain.lua)
-- in bounded steps; each dependent is taken off its list as it is
-- released, so none is released twice or lost.
local FLOW_INLINE = 200
local flow_budget = FLOW_INLINE
local flow_drain, flow_wire, batch_settle  -- set by flow_build

-- Every helper below is made on first use (flow_build): a script call that
-- meets no job of a workflow pays for none of them, only for this one.
local function flow_build()
  if flow_drain then return end
  local flow_busy = false
  local OUTCOME = {c = 'completed', d = 'dead', x = 'deleted', n = 'cancelled'}
  local ENDED = {dead = 'ended dead', deleted = 'was deleted', cancelled = 'was cancelled'}
  local BATCH_KEEP_MS = 604800000  -- a finished batch is readable for 7 days

  -- A waiting job one of whose dependencies ended dead (or was deleted, or
  -- cancelled) dies too, with an error record naming the cause; its own
  -- dependents and batch follow through finish.
  local function flow_kill(P, id, job, cause, how, now)
    job.dp, job.fa = nil, now
    redis.call('ZREM', P .. 'waiting', id)
    redis.call('ZREM', P .. 'ready:' .. job.q, id)
    redis.call('ZREM', P .. 'scheduled', id)
    local keep = config(P, 'error_history')
    if keep > 0 then
      local errors = P .. 'errors:' .. id
      redis.call('RPUSH', errors, cjson.encode({
        attempt = job.a, message = 'job ' .. cause .. ' it depends on ' .. (ENDED[how] or how),
        error_type = 'zizq.DependencyFailed', backtrace = '', failed_at = now,
      }))
      redis.call('LTRIM', errors, -keep, -1)
    end
    finish(P, id, job, 'dead', now, job.rd or config(P, 'dead_ms'))
  end

  -- One dependency of the waiting job `id` ended (outcome completed, dead or
  -- deleted). The last one to end makes it ready (or scheduled, when its
  -- ready_at is ahead) in its place in line: (priority, id).
  local function flow_release_one(P, id, outcome, cause, now)
    local job = load_job(P, id)
    if not job or job.s ~= 'waiting' then return end  -- deleted, or dead already
    if outcome ~= 'completed' and not job.df then
      flow_kill(P, id, job, cause, outcome, now)
      return
    end
    job.dp = (job.dp or 1) - 1
    if job.dp > 0 then
      save_job(P, id, job)
      return
    end
    job.dp = nil
    redis.call('ZREM', P .. 'waiting', id)
    if job.r > now then
      job.s = 'scheduled'
      save_job(P, id, job)
      schedule(P, id, job.q, job.r)
    else
      job.s = 'ready'
      save_job(P, id, job)
      make_ready(P, id, job.q, job.p)
    end
  end

  -- Release queued dependents, oldest finish first, until the call's budget
  -- is spent. Returns how many finished jobs still have dependents to release.
  flow_drain = function(P, now)
    local queue = P .. 'flow:release'
    if flow_busy then return 0 end  -- a release inside a release: the outer loop goes on
    flow_busy = true
    while flow_budget > 0 do
      local entry = redis.call('LINDEX', queue, 0)
      if not entry then break end
      local outcome, parent = OUTCOME[string.sub(entry, 1, 1)] or 'dead', string.sub(entry, 3)
      local key = P .. 'deps:' .. parent
      local ids = redis.call('LRANGE', key, 0, flow_budget - 1)
      redis.call('LTRIM', key, #ids, -1)
      flow_budget = flow_budget - math.max(#ids, 1)
      for _, id in ipairs(ids) do flow_release_one(P, id, outcome, parent, now) end
      if redis.call('EXISTS', key) == 0 then redis.call('LPOP', queue) end
    end
    flow_busy = false
    return redis.call('LLEN', queue)
  end

  -- Batches. "batch:<id>" is a hash of counters (total, completed, dead),
  -- closed, created_at, finished_at, parent, and the callbacks: enqueue rows
  -- (14 values, id included, MessagePack) under on_success, on_complete and
  -- on_dead, each fired at most once (fired_<name> = when).
  local function batch_fire(P, key, which, now)
    local row = redis.call('HGET', key, which)
    if not row or redis.call('HSETNX', key, 'fired_' .. which, now) == 0 then return end
    local ok, J = pcall(cmsgpack.unpack, row)
    if not ok or job_row_error(J) then
      redis.log(redis.LOG_WARNING, 'zizq: the ' .. which .. ' callback of ' .. key .. ' cannot be read; skipped')
      return
    end
    if redis.call('HEXISTS', P .. 'jobs', J[1]) == 1 or was_done(P, J[1], now) then return end
    create_job(P, J, now)
  end

  local batch_count
  -- When a closed batch has every member finished: on_complete, and
  -- on_success if none died; the parent batch counts it as one member.
  batch_settle = function(P, key, now)
    local v = redis.call('HMGET', key, 'total', 'completed', 'dead', 'closed', 'finished_at', 'parent')
    local total, completed, dead = tonumber(v[1]) or 0, tonumber(v[2]) or 0, tonumber(v[3]) or 0
    if v[4] ~= '1' or v[5] or completed + dead < total then return end
    redis.call('HSET', key, 'finished_at', now)
    redis.call('PEXPIRE', key, BATCH_KEEP_MS)
    batch_fire(P, key, 'on_complete', now)
    if dead == 0 then batch_fire(P, key, 'on_success', now) end
    if v[6] then batch_count(P, v[6], dead == 0 and 'completed' or 'dead', 1, now) end
  end

  -- A member of batch `bid` finished (field completed or dead, delta 1), or a
  -- dead one was retried (dead, -1): the batch is then not finished again.
  batch_count = function(P, bid, field, delta, now)
    local key = P .. 'batch:' .. bid
    if redis.call('EXISTS', key) == 0 then return end  -- expired: nothing to count
    local n = redis.call('HINCRBY', key, field, delta)
    if field == 'dead' and delta > 0 and n == 1 then batch_fire(P, key, 'on_dead', now) end
    if delta < 0 then
      if redis.call('HDEL', key, 'finished_at') == 1 then
        redis.call('PERSIST', key)
        local parent = redis.call('HGET', key, 'parent')
        if parent then batch_count(P, parent, 'dead', -1, now) end
      end
      return
    end
    batch_settle(P, key, now)
  end

  -- lifecycle's hook: the job ends (completed, dead, or deleted before it
  -- finished). Its dependents are queued for release, its batch counts it.
  flow_end = function(P, id, job, status, now)
    if job.dp then redis.call('ZREM', P .. 'waiting', id) end
    if job.bt then batch_count(P, job.bt, status == 'completed' and 'completed' or 'dead', 1, now) end
    if job.dn then
      job.dn = nil
      local how = status == 'completed' and 'c:' or status == 'deleted' and 'x:' or job.cx and 'n:' or 'd:'
      redis.call('RPUSH', P .. 'flow:release', how .. id)
      flow_drain(P, now)
    end
  end

  flow_retried = function(P, id, job, now)
    batch_count(P, job.bt, 'dead', -1, now)
  end

  -- Wire a job create_job just made to its workflow: `after` the ids it
  -- depends on (spaces between; an id in `alias` was a duplicate in this
  -- call, and stands for its holder), `mode` 'run' to run even if one ends
  -- dead, `batch` its batch ('' for none). Finished dependencies count at once: completed (or deleted as
  -- it completed, within the done window) satisfied; dead fails it.
  flow_wire = function(P, id, after, mode, batch, alias, now)
    local job = load_job(P, id)
    if batch ~= '' then
      job.bt = batch
      redis.call('HINCRBY', P .. 'batch:' .. batch, 'total', 1)
    end
    if mode == 'run' then job.df = 1 end
    local deps, pending, failed = {}, 0, nil
    for dep in string.gmatch(after, '%S+') do
      dep = alias[dep] or dep
      deps[#deps + 1] = dep
      local d = load_job(P, dep)
      if d and d.s ~= 'completed' and d.s ~= 'dead' then
        pending = pending + 1
        redis.call('RPUSH', P .. 'deps:' .. dep, id)
        if not d.dn then
          d.dn = 1
          save_job(P, dep, d)
        end
      elseif d and d.s == 'dead' or not d and was_done(P, dep, now) == 'x' then
        failed = failed or dep
      end
    end
    if #deps > 0 then job.dl = table.concat(deps, ' ') end
    if failed and not job.df then
      flow_kill(P, id, job, failed, 'dead', now)
    elseif pending > 0 then
      redis.call('ZREM', P .. 'ready:' .. job.q, id)
      redis.call('ZREM', P .. 'scheduled', id)
      job.s, job.dp = 'waiting', pending
      redis.call('ZADD', P .. 'waiting', now, id)
      save_job(P, id, job)
    else
      save_job(P, id, job)
    end
  end
end

flow_end = function(...)
  flow_build()
  return flow_end(...)
end

flow_retried = function(...)
  flow_build()
  return flow_retried(...)
end
