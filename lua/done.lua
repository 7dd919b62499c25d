--[[ done: whether jobs finished and were deleted at once, within the last minute.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1..] job ids

Reads the done:<n> hashes (see DONE_WINDOW_MS in includes/common.lua): a job
that completed or went dead with a retention of 0 leaves its id there for a
minute (by Redis's clock), marked 'f' (completed) or 'x' (dead). Used to
tell such a job from an id that
never existed when a read finds nothing. Ids of jobs purged or deleted later
are there too, marked 'd'; they count as 0 here.

Returns one integer per id, in order: 1 when the id is in the window as a
job deleted as it finished, else 0.
Errors: none. The script only reads.
]]
--@include "includes/common.lua"

local P = KEYS[1]
local now = now_ms()
local out = {}
for i = 1, #ARGV do
  local how = was_done(P, ARGV[i], now)
  out[i] = (how == 'f' or how == 'x') and 1 or 0
end
return out
