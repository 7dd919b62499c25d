--[[ errors: read a job's error history, oldest first.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  job id

Returns the list of JSON error records (attempt, message, error_type,
backtrace, dequeued_at, failed_at); at most the namespace's error_history
(100) newest are kept.
Errors: "ZIZQ NOT_FOUND" (no such job, or past purge_at).
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
local id = ARGV[1]
if not visible_job(P, id, now_ms()) then return fail_with('NOT_FOUND', 'no job with id ' .. id) end
return redis.call('LRANGE', P .. 'errors:' .. id, 0, -1)
