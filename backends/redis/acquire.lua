-- RateLimiter.acquire for one key, atomically: GCRA rate + burst, minimum interval,
-- concurrency leases. The same arithmetic as backends/memory/ratelimit.py, line for line.
-- KEYS[1]  hash: tat (GCRA theoretical arrival time), last (time of the last grant)
-- KEYS[2]  sorted set: lease id -> expiry time
-- ARGV[1]  now in seconds, or '' to read the server's clock (TIME)
-- ARGV[2]  interval_s = 1 / rate_per_s     ARGV[3] burst
-- ARGV[4]  min_interval_s                  ARGV[5] max_concurrency
-- ARGV[6]  lease_ttl_s                     ARGV[7] lease id (chosen by the caller)
-- ARGV[8]  ms both keys outlive what they must remember
-- Returns {1, '0'} granted, or {0, retry_after_s}; times go out as strings, because Redis
-- would truncate a Lua number to an integer.
local EPSILON_S = 1e-9   -- a caller back after exactly retry_after_s is not refused by rounding
local MIN_POLL_S = 0.05  -- a caller refused for concurrency polls no faster than this

local function str(x)
  return string.format('%.17g', x)
end

local now
if ARGV[1] == '' then
  local time = redis.call('TIME')
  now = tonumber(time[1]) + tonumber(time[2]) / 1000000
else
  now = tonumber(ARGV[1])
end
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local min_interval = tonumber(ARGV[4])
local max_concurrency = tonumber(ARGV[5])
local lease_ttl = tonumber(ARGV[6])
local lease_id = ARGV[7]

-- The same call sent twice (a client retry after a lost reply) was granted the first time.
if redis.call('ZSCORE', KEYS[2], lease_id) then
  return {1, '0'}
end

redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', str(now))  -- expired leases: dead workers'
local state = redis.call('HMGET', KEYS[1], 'tat', 'last')
local tat = math.max(tonumber(state[1]) or now, now)
local wait = tat - now - (burst - 1) * interval
local last = tonumber(state[2])
if last then
  wait = math.max(wait, last + min_interval - now)
end
if wait > EPSILON_S then
  return {0, str(wait)}
end

local held = redis.call('ZCARD', KEYS[2])
if held >= max_concurrency then
  -- Nobody tells us when a slot is released; poll at the pace the rate allows, and no
  -- later than the first lease expires.
  local hint = math.max(interval, min_interval, MIN_POLL_S)
  local soonest = tonumber(redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')[2]) - now
  return {0, str(math.max(math.min(hint, soonest), EPSILON_S))}
end

tat = tat + interval
redis.call('HSET', KEYS[1], 'tat', str(tat), 'last', str(now))
redis.call('ZADD', KEYS[2], str(now + lease_ttl), lease_id)
-- Keep both keys while they constrain anything (the rate, the interval, a live lease).
local latest_lease = tonumber(redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')[2])
local until_s = math.max(tat, now + min_interval, latest_lease)
local keep_ms = math.ceil((until_s - now) * 1000) + tonumber(ARGV[8])
redis.call('PEXPIRE', KEYS[1], keep_ms)
redis.call('PEXPIRE', KEYS[2], keep_ms)
return {1, '0'}
