-- Circuit breaker: record outcomes and apply transitions, atomically.
-- Mirrors hookline_domain::flow::Breaker::report (and ::tick).
-- KEYS[1]  the breaker (hash: state, open_until, open_since, cooldown, probes_left, disabled,
--          and per window bucket n the fields s<n> / f<n> with its successes / failures)
-- ARGV     successes, failures, window_ms, min_requests, failure_ratio, cooldown_ms,
--          max_cooldown_ms, probes, disable_after_ms, now_ms ("" = the Redis server clock)
-- Returns {state, open_until, open_since (-1 = none), transition, ratio_ppm, window_requests,
--          disable}: transition 0 none, 1 opened, 2 closed; disable 1 when the endpoint must be
--          disabled now (returned once).
local BUCKETS = 10
local succ, fail = tonumber(ARGV[1]), tonumber(ARGV[2])
local window, min_req, ratio_at = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local cooldown0, max_cooldown, probes = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local disable_after = tonumber(ARGV[9])
local now
if ARGV[10] ~= nil and ARGV[10] ~= '' then
  now = tonumber(ARGV[10])
else
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local k = KEYS[1]
local h = redis.call('HGETALL', k)
local f = {}
for i = 1, #h, 2 do f[h[i]] = h[i + 1] end
local state = f['state'] or 'closed'
local open_until = tonumber(f['open_until'] or '0')
local open_since = tonumber(f['open_since'] or '-1')
local cooldown = tonumber(f['cooldown'] or '0')
local disabled = f['disabled'] == '1'
local transition, ratio_ppm, requests = 0, 0, 0

local function clear_buckets()
  for name, _ in pairs(f) do
    if string.match(name, '^[sf]%-?%d+$') then redis.call('HDEL', k, name) end
  end
end
local function open(cd)
  state = 'open'
  clear_buckets()
  cooldown = cd
  open_until = now + cd
  if open_since < 0 then open_since = now end
  redis.call('HSET', k, 'state', 'open', 'open_until', open_until, 'open_since', open_since,
    'cooldown', cooldown, 'probes_left', 0)
  transition = 1
end

-- tick: open -> half-open after the cool-down
if state == 'open' and now >= open_until then
  state = 'half_open'
  redis.call('HSET', k, 'state', 'half_open', 'probes_left', probes)
end

if state == 'closed' then
  local bucket_ms = math.max(math.floor(window / BUCKETS), 1)
  local n = math.floor(now / bucket_ms)
  local s_total, f_total = 0, 0
  for name, v in pairs(f) do
    local kind, num = string.match(name, '^([sf])(%-?%d+)$')
    if kind then
      if tonumber(num) <= n - BUCKETS then
        redis.call('HDEL', k, name)
      elseif kind == 's' then
        s_total = s_total + tonumber(v)
      else
        f_total = f_total + tonumber(v)
      end
    end
  end
  if succ > 0 then redis.call('HINCRBY', k, 's' .. n, succ) end
  if fail > 0 then redis.call('HINCRBY', k, 'f' .. n, fail) end
  s_total, f_total = s_total + succ, f_total + fail
  requests = s_total + f_total
  local ratio = 0
  if requests > 0 then ratio = f_total / requests end
  ratio_ppm = math.floor(ratio * 1000000 + 0.5)
  if fail > 0 and requests >= min_req and ratio >= ratio_at then
    open(cooldown0)
  end
elseif state == 'half_open' and fail > 0 then
  requests = succ + fail
  ratio_ppm = 1000000
  open(math.max(math.min(cooldown * 2, max_cooldown), cooldown0))
elseif state == 'half_open' and succ > 0 then
  local since = open_since
  if since < 0 then since = now end
  redis.call('DEL', k)
  state, open_until, cooldown, disabled = 'closed', 0, 0, false
  open_since = since
  transition = 2
end

local disable = 0
if state ~= 'closed' and not disabled and open_since >= 0 and now - open_since >= disable_after then
  redis.call('HSET', k, 'disabled', '1')
  disable = 1
end
if state == 'closed' and transition == 2 then
  -- report the streak that just ended; the key is gone
  return {state, 0, open_since, transition, ratio_ppm, requests, 0}
end
-- State lives as long as the window or the open streak could matter.
redis.call('PEXPIRE', k, math.max(window * 2, disable_after + max_cooldown * 2))
return {state, open_until, open_since, transition, ratio_ppm, requests, disable}
