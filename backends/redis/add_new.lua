-- SeenSet.add_new for one batch, atomically: claim each key (HSETNX key -> claimer), say
-- which were new to this claimer.
-- KEYS[1]  the execution's set
-- KEYS[2]  this call's receipt: the answer, kept a short while, so that a call the client
--          sends twice (a retry after a lost reply) gets the first answer again instead of
--          being told its own keys were already there
-- ARGV[1]  the set's TTL in ms (refreshed on every write)
-- ARGV[2]  the receipt's TTL in ms
-- ARGV[3]  the claimer ('' for none)
-- ARGV[4..] the keys, in the caller's order
-- Returns one character per key: '1' added by this call or earlier by the same claimer,
-- '0' claimed by someone else (or earlier in this call).
local earlier = redis.call('GET', KEYS[2])
if earlier then
  return earlier
end
local claimer = ARGV[3]
local flags = {}
local this_call = {}
for i = 4, #ARGV do
  local key = ARGV[i]
  local new = redis.call('HSETNX', KEYS[1], key, claimer) == 1
  if not new and claimer ~= '' and not this_call[key] then
    new = redis.call('HGET', KEYS[1], key) == claimer
  end
  this_call[key] = true
  flags[i - 3] = new and '1' or '0'
end
local answer = table.concat(flags)
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], answer, 'PX', ARGV[2])
return answer
