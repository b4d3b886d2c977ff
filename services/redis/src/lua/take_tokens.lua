-- Token bucket take, atomically. Mirrors hookline_domain::flow::TokenBucket::take.
-- KEYS[1]  the bucket (hash: tokens, at_us)
-- ARGV[1]  rate, tokens per second (float)
-- ARGV[2]  burst (bucket size)
-- ARGV[3]  tokens wanted
-- ARGV[4]  longest acceptable wait in ms: below one token, `want` tokens are reserved ahead
--          (the bucket goes into debt) when they are due within it
-- ARGV[5]  now in microseconds, or "" to use the Redis server clock (shared by every caller)
-- Returns {granted, wait_ms}: tokens granted, usable after wait_ms; with none granted, wait_ms
-- is the time until one token.
local rate = math.max(tonumber(ARGV[1]), 0.000001)
local burst = math.max(tonumber(ARGV[2]), 1)
local want = math.max(tonumber(ARGV[3]), 1)
local max_wait = tonumber(ARGV[4])
local now
if ARGV[5] ~= nil and ARGV[5] ~= '' then
  now = tonumber(ARGV[5])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at_us')
local tokens = tonumber(b[1])
local at = tonumber(b[2])
if tokens == nil or at == nil then
  tokens = burst
  at = now
elseif now > at then
  tokens = math.min(burst, tokens + (now - at) * rate / 1000000)
  at = now
end
local granted, wait = 0, 0
if tokens >= 1 then
  granted = math.min(want, math.floor(tokens))
  tokens = tokens - granted
else
  local reserve = math.max(math.ceil((want - tokens) * 1000 / rate), 1)
  if reserve <= max_wait then
    granted = want
    wait = reserve
    tokens = tokens - want
  else
    wait = math.max(math.ceil((1 - tokens) * 1000 / rate), 1)
  end
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at_us', string.format('%d', at))
-- Idle buckets refill to full anyway: let them expire once they would be full.
redis.call('PEXPIRE', KEYS[1], math.ceil((burst - math.min(tokens, 0)) * 1000 / rate) + 60000)
return {granted, wait}
