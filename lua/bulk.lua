--[[ bulk: delete, patch, retry or cancel a batch of jobs that match a filter.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  action: 'delete', 'patch' (jobs that have not finished; finished
         ones are skipped) or 'retry' (dead jobs; others are skipped, and
         so is a dead job whose unique key a conflicting job holds, as
         retry.lua would refuse it: it stays dead) or 'cancel' (jobs
         that have not finished, as cancel.lua; finished ones are skipped)
ARGV[2]  filter JSON (see includes/filter.lua), checked again here on each
         job, so a job that changed since the client read it is left alone
ARGV[3]  index key the client is walking ('' for none): the reply says how
         many of the batch's jobs are no longer in it, so the walk can go on
         from the right rank
ARGV[4]  n: how many job ids follow (at most 1000: about 30 ms of work at most)
ARGV[5 .. 4+n]   job ids
ARGV[5+n ..]     patch only: pairs of (field, value) as in patch.lua
last     optional: a call id (see includes/memo.lua), told apart by the odd
         count of the arguments after the ids: a call sent again with the
         same id returns the first send's reply, so a batch whose reply was
         lost is counted once

The batch is atomic; a filter that spans several batches is not.

Returns {changed, left}: jobs deleted, patched, retried or cancelled (a skipped job
is not counted), and how many of the given ids are not in the index ARGV[3]
after the call.
Errors: "ZIZQ INVALID" (a bad action, filter, count, index or patch value;
nothing is changed).
]]
--@include "includes/lifecycle.lua"
--@include "includes/filter.lua"
--@include "includes/manage.lua"
--@include "includes/memo.lua"

local P = KEYS[1]
local action, index = ARGV[1], ARGV[3]
local f, err = parse_filter(ARGV[2])
if not f then return err end
if action ~= 'delete' and action ~= 'patch' and action ~= 'retry' and action ~= 'cancel' then
  return fail_with('INVALID', 'action ' .. tostring(action) .. ' is not delete, patch, retry or cancel')
end
if not natural(ARGV[4]) or tonumber(ARGV[4]) > 1000 then
  return fail_with('INVALID', 'id count ' .. tostring(ARGV[4]) .. ' is not in 0..1000: send more ids as several calls')
end
local n = tonumber(ARGV[4])
if #ARGV < 4 + n then
  return fail_with('INVALID', 'id count ' .. n .. ' is more than the ' .. (#ARGV - 4) .. ' ids given')
end
local last, call_id = #ARGV, nil
if (#ARGV - 4 - n) % 2 == 1 then last, call_id = #ARGV - 1, ARGV[#ARGV] end
local INDEXES = {[''] = true, scheduled = true, inflight = true, completed = true, dead = true}
if not INDEXES[index] and string.sub(index, 1, 6) ~= 'ready:' then
  return fail_with('INVALID', 'index ' .. tostring(index) .. ' is not ready:<queue>, scheduled, inflight, completed or dead')
end
local want = nil
if action == 'patch' then
  want, err = patch_wanted(5 + n, last)
  if not want then return err end
elseif last ~= 4 + n then
  return fail_with('INVALID', (last - 4) .. ' ids given for an id count of ' .. n)
end
local kept = memo_get(P, call_id)
if kept then return kept end

local now = now_ms()
local changed = 0
for i = 5, 4 + n do
  local id = ARGV[i]
  local job = visible_job(P, id, now)
  if job and job_matches(job, f) then
    if action == 'delete' then
      delete_job(P, id, job, now)
      changed = changed + 1
    elseif action == 'patch' and job.s ~= 'completed' and job.s ~= 'dead' then
      patch_apply(P, id, job, want, now)
      changed = changed + 1
    elseif action == 'retry' and job.s == 'dead' then
      if retry_dead(P, id, job, now) then changed = changed + 1 end
    elseif action == 'cancel' and job.s ~= 'completed' and job.s ~= 'dead' then
      cancel_job(P, id, job, now)
      changed = changed + 1
    end
  end
end
local left = 0
if index ~= '' then
  for i = 5, 4 + n do
    if not redis.call('ZSCORE', P .. index, ARGV[i]) then left = left + 1 end
  end
end
return memo_put(P, call_id, {changed, left})
