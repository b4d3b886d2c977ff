-- Circuit breaker: may a delivery go now? Mirrors hookline_domain::flow::Breaker::admit.
-- KEYS[1]  the breaker hash (see breaker_report.lua)
-- ARGV     probes, now_ms ("" = the Redis server clock)
-- Returns {admitted (0/1), state, open_until}.
local probes = tonumber(ARGV[1])
local now
if ARGV[2] ~= nil and ARGV[2] ~= '' then
  now = tonumber(ARGV[2])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local k = KEYS[1]
local v = redis.call('HMGET', k, 'state', 'open_until', 'probes_left')
local state = v[1] or 'closed'
local open_until = tonumber(v[2] or '0')
local left = tonumber(v[3] or '0')
if state == 'open' and now >= open_until then
  state = 'half_open'
  left = probes
  redis.call('HSET', k, 'state', 'half_open', 'probes_left', left)
end
if state == 'closed' then return {1, state, open_until} end
if state == 'half_open' and left > 0 then
  redis.call('HSET', k, 'probes_left', left - 1)
  return {1, state, open_until}
end
return {0, state, open_until}
