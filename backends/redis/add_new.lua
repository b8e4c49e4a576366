-- SeenSet.add_new for one batch, atomically: claim each key (HSETNX key -> claimer), say
-- which were new to this claimer, and who holds the others.
-- KEYS[1]  the execution's set
-- KEYS[2]  this call's receipt: the answer, kept a short while, so that a call the client
--          sends twice (a retry after a lost reply) gets the first answer again instead of
--          being told its own keys were already there
-- ARGV[1]  the set's TTL in ms (refreshed on every write)
-- ARGV[2]  the receipt's TTL in ms
-- ARGV[3]  the claimer ('' for none)
-- ARGV[4..] the keys, in the caller's order
-- Returns one line of one character per key: '1' added by this call or earlier by the same
-- claimer, '0' claimed by someone else (or earlier in this call); then, one line each, the
-- claimer holding each '0' key, in order (the caller remembers who holds what).
local earlier = redis.call('GET', KEYS[2])
if earlier then
  return earlier
end
local claimer = ARGV[3]
local flags = {}
local holders = {}
local this_call = {}
for i = 4, #ARGV do
  local key = ARGV[i]
  local new = redis.call('HSETNX', KEYS[1], key, claimer) == 1
  if not new then
    local holder = redis.call('HGET', KEYS[1], key)
    if claimer ~= '' and not this_call[key] then
      new = holder == claimer
    end
    if not new then
      holders[#holders + 1] = holder
    end
  end
  this_call[key] = true
  flags[i - 3] = new and '1' or '0'
end
local answer = table.concat(flags)
if #holders > 0 then
  answer = answer .. '\n' .. table.concat(holders, '\n')
end
redis.call('PEXPIRE', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], answer, 'PX', ARGV[2])
return answer
