--[[ flow_drain: release the dependents that finished jobs left queued.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1]  the most dependents to release in this call: 1..1000

A job with many dependents releases up to 200 of them in the call that
finishes it (ack, fail, delete, ...); the rest wait in "flow:release"
(entries "<c|d|n|x>:<job id>": completed, dead, cancelled, deleted), each dependent in
"deps:<job id>". Workers call this script in the background, again while
it returns more than 0. A dependent is taken off its list in the step that
releases it, so none is released twice or lost.

Returns how many finished jobs still have dependents to release.
Errors: "ZIZQ INVALID" for a count outside 1..1000.
]]
--@include "includes/lifecycle.lua"
--@include "includes/flow.lua"

local P = KEYS[1]
if not natural(ARGV[1]) or tonumber(ARGV[1]) < 1 or tonumber(ARGV[1]) > 1000 then
  return fail_with('INVALID', 'count ' .. tostring(ARGV[1]) .. ' is not in 1..1000: release more with several calls')
end
flow_build()
flow_budget = tonumber(ARGV[1])
return flow_drain(P, now_ms())
