--[[ config: change the namespace's defaults.

KEYS[1]  namespace prefix "{<namespace>}:"
ARGV[1..] pairs of (name, value); '' as a value restores the built-in default.
  retry_limit        25
  backoff_base_ms    15000
  backoff_exponent   4
  backoff_jitter_ms  30000
  completed_ms       0          (completed jobs deleted at once)
  dead_ms            604800000  (7 days)
  error_history      100        (error records kept per job)
  max_recoveries     3          (lost-worker recoveries before a job fails)

Jobs without their own value use these at the time they fail or finish.
Returns the settings in force after the change, as a flat name/value list.
Errors: "ZIZQ INVALID" for an unknown name or a bad value (each is a
non-negative integer; backoff_exponent a number in 0..16); nothing changes
then.
]]
--@include "includes/lifecycle.lua"

local P = KEYS[1]
for i = 1, #ARGV, 2 do
  local name, value = ARGV[i], ARGV[i + 1]
  if DEFAULTS[name] == nil then
    return fail_with('INVALID', 'unknown setting ' .. name)
  end
  local ok = natural(value)
  if name == 'backoff_exponent' then ok = exponent_ok(value) end
  if value ~= '' and not ok then
    return fail_with('INVALID', name .. ' ' .. value .. ' is not a non-negative integer (the exponent: 0..16)')
  end
end
for i = 1, #ARGV, 2 do
  if ARGV[i + 1] == '' then
    redis.call('HDEL', P .. 'config', ARGV[i])
  else
    redis.call('HSET', P .. 'config', ARGV[i], ARGV[i + 1])
  end
end
local out = {}
for name, _ in pairs(DEFAULTS) do
  out[#out + 1] = name
  out[#out + 1] = tostring(config(P, name))
end
return out
