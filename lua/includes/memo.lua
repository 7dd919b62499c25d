-- Replies kept for a minute under a call id the client makes, so that a
-- management call sent again after its reply was lost (the Python client
-- repeats a call after a connection error) answers as its first send did,
-- instead of answering for a state its first send already changed.
--
-- The call id is an optional last argument; a call without one is neither
-- looked up nor kept. Only successful replies are kept: an error reply
-- wrote nothing, so a repeat judges afresh. Key: reply:<call id>, a string
-- (the reply as MessagePack) with a 60 s expiry (docs/protocol/keys.md).

local MEMO_MS = 60000

-- The reply kept for this call id, or nil.
local function memo_get(P, call_id)
  if call_id == nil or call_id == '' then return nil end
  local saved = redis.call('GET', P .. 'reply:' .. call_id)
  if saved then return cmsgpack.unpack(saved) end
  return nil
end

-- Keep `reply` for this call id (when one is given); returns `reply`.
local function memo_put(P, call_id, reply)
  if call_id ~= nil and call_id ~= '' then
    redis.call('SET', P .. 'reply:' .. call_id, cmsgpack.pack(reply), 'PX', MEMO_MS)
  end
  return reply
end
