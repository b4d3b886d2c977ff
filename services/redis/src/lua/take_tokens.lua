-- Token bucket take, atomically. Mirrors hookline_domain::flow::TokenBucket::take.
-- KEYS[1]  the bucket (hash: tokens, at_us)
-- ARGV[1]  rate, tokens per second (float)
-- ARGV[2]  burst (bucket size)
-- ARGV[3]  tokens wanted
-- ARGV[4]  now in microseconds, or "" to use the Redis server clock (shared by every caller)
-- Returns {granted, wait_ms}: wait_ms (when nothing was granted) is the time until one token.
local rate = math.max(tonumber(ARGV[1]), 0.000001)
local burst = math.max(tonumber(ARGV[2]), 1)
local want = tonumber(ARGV[3])
local now
if ARGV[4] ~= nil and ARGV[4] ~= '' then
  now = tonumber(ARGV[4])
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
local granted = math.min(want, math.max(math.floor(tokens), 0))
local wait = 0
if granted > 0 then
  tokens = tokens - granted
else
  wait = math.max(math.ceil((1 - tokens) * 1000 / rate), 1)
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.17g', tokens), 'at_us', string.format('%d', at))
-- Idle buckets refill to full anyway: let them expire once they would be full.
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 60000)
return {granted, wait}
