-- signalbox rate limits: every rule of one request, checked and charged atomically, in one
-- round trip. The algorithms are those of the `limits` crate (docs/limits.md), in microseconds.
--
-- KEYS: two per check: the rule key's state, and its log (sliding_window_log only; unused
-- otherwise, passed so every key is declared, as Redis Cluster requires).
-- ARGV[1]: now in microseconds; 0 = Redis's own clock (TIME), so replicas share one clock.
-- ARGV[2]: the number of checks n; then six per check: algorithm (1 fixed_window,
-- 2 sliding_window_log, 3 sliding_window, 4 token_bucket, 5 leaky_bucket), limit, window (us),
-- capacity, cost, shadow (1 or 0). The window algorithms (1-3) admit `capacity` = limit + burst
-- per window (seed 002's `requests_per_window + burst_allowance`); the buckets (4, 5) hold
-- `capacity` and refill `limit` per window.
-- Returns one {allowed, remaining, reset_after_us, retry_after_us} per check decided, in order,
-- stopping after the first refusal of an enforcing rule (later rules are not charged).
-- retry_after_us is -1 when the cost exceeds the capacity (never admitted).
--
-- Lua numbers are doubles: every value here is an integer below 2^53 (the server refuses rules
-- whose limit x window or capacity x window in microseconds exceed 2^52), so +, -, * are exact;
-- division goes through fdiv, which corrects the rounding of the double quotient.

local function fdiv(a, b)
  local q = math.floor(a / b)
  while q * b > a do q = q - 1 end
  while (q + 1) * b <= a do q = q + 1 end
  return q
end

local function cdiv(a, b)
  local q = fdiv(a, b)
  if q * b < a then q = q + 1 end
  return q
end

-- Key lifetime in milliseconds for a state that matters for `us` more microseconds.
local function ttl_ms(us)
  return cdiv(math.max(us, 0), 1000) + 1
end

local NEVER = -1

local now = tonumber(ARGV[1])
if now == 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local n = tonumber(ARGV[2])
local out = {}

for i = 1, n do
  local a = 2 + (i - 1) * 6
  local kind = tonumber(ARGV[a + 1])
  local limit = tonumber(ARGV[a + 2])
  local w = tonumber(ARGV[a + 3])
  local cap = tonumber(ARGV[a + 4])
  local cost = tonumber(ARGV[a + 5])
  local shadow = ARGV[a + 6] == '1'
  local key = KEYS[2 * i - 1]
  local logkey = KEYS[2 * i]
  local allowed, remaining, reset, retry

  if kind == 1 then
    -- Fixed window: aligned windows [k*w, (k+1)*w), each admits `cap`.
    local st = redis.call('HMGET', key, 'w', 'u')
    local sw = tonumber(st[1]) or 0
    local used = tonumber(st[2]) or 0
    local win = fdiv(now, w)
    if win > sw then
      sw = win
      used = 0
    end
    local until_end = math.max((sw + 1) * w - now, 0)
    allowed = cost <= cap - used
    if allowed then
      used = used + cost
      redis.call('HSET', key, 'w', sw, 'u', used)
      redis.call('PEXPIRE', key, ttl_ms(until_end))
    end
    if allowed then retry = 0 elseif cost > cap then retry = NEVER else retry = until_end end
    remaining = cap - used
    if used == 0 then reset = 0 else reset = until_end end

  elseif kind == 2 then
    -- Sliding window log: admitted (time, cost) in a sorted set; admitted iff the cost logged
    -- in (t - w, t] plus its own fits.
    local st = redis.call('HMGET', key, 's', 'l', 'q')
    local sum = tonumber(st[1]) or 0
    local latest = tonumber(st[2]) or 0
    local seq = tonumber(st[3]) or 0
    local t = math.max(now, latest)
    local old = redis.call('ZRANGEBYSCORE', logkey, '-inf', t - w)
    if #old > 0 then
      for _, m in ipairs(old) do
        sum = sum - tonumber(string.match(m, ':(%d+)$'))
      end
      redis.call('ZREMRANGEBYSCORE', logkey, '-inf', t - w)
    end
    allowed = cost <= cap - sum
    retry = 0
    if allowed then
      if cost > 0 then
        seq = seq + 1
        redis.call('ZADD', logkey, t, seq .. ':' .. cost)
        sum = sum + cost
      end
    elseif cost > cap then
      retry = NEVER
    else
      local left = sum
      local entries = redis.call('ZRANGE', logkey, 0, -1, 'WITHSCORES')
      for j = 1, #entries, 2 do
        left = left - tonumber(string.match(entries[j], ':(%d+)$'))
        if left + cost <= cap then
          retry = math.max(tonumber(entries[j + 1]) + w - t, 0)
          break
        end
      end
    end
    local last = redis.call('ZRANGE', logkey, -1, -1, 'WITHSCORES')
    if #last == 2 then reset = math.max(tonumber(last[2]) + w - t, 0) else reset = 0 end
    remaining = cap - sum
    redis.call('HSET', key, 's', sum, 'l', t, 'q', seq)
    redis.call('PEXPIRE', key, ttl_ms(w))
    if sum > 0 then redis.call('PEXPIRE', logkey, ttl_ms(w)) end

  elseif kind == 3 then
    -- Sliding window counter: prev*(w - e) + cur*w + cost*w <= cap*w.
    local st = redis.call('HMGET', key, 'w', 'c', 'p')
    local sw = tonumber(st[1]) or 0
    local cur = tonumber(st[2]) or 0
    local prev = tonumber(st[3]) or 0
    local win = fdiv(now, w)
    if win == sw + 1 then
      prev = cur
      cur = 0
      sw = win
    elseif win > sw then
      prev = 0
      cur = 0
      sw = win
    end
    local ws = sw * w
    local elapsed = math.min(math.max(now - ws, 0), w)
    local budget = cap * w
    allowed = cost <= cap and prev * (w - elapsed) + cur * w + cost * w <= budget
    if allowed then cur = cur + cost end
    local t = ws + elapsed
    if allowed then
      retry = 0
    elseif cost > cap then
      retry = NEVER
    elseif cost > cap - cur then
      local e = 0
      if cur > 0 then e = math.max(w - fdiv((cap - cost) * w, cur), 0) end
      retry = ws + w + e - t
    else
      local spare = (cap - cur - cost) * w
      local e = w - math.min(fdiv(spare, prev), w)
      retry = math.max(ws + e - t, 0)
    end
    remaining = fdiv(math.max(budget - (prev * (w - elapsed) + cur * w), 0), w)
    if cur > 0 then reset = ws + 2 * w - t elseif prev > 0 then reset = ws + w - t else reset = 0 end
    redis.call('HSET', key, 'w', sw, 'c', cur, 'p', prev)
    redis.call('PEXPIRE', key, ttl_ms(2 * w))

  elseif kind == 4 then
    -- Token bucket of `cap`, refilled by `limit` per `w`; tokens kept scaled by w.
    local st = redis.call('HMGET', key, 'm', 'l')
    local missing = tonumber(st[1]) or 0
    local latest = tonumber(st[2]) or 0
    if now > latest then
      -- Inexact only when the product passes 2^53, far above `missing` (<= 2^52): still 0.
      missing = math.max(missing - (now - latest) * limit, 0)
      latest = now
    end
    local full = cap * w
    local needed = missing + cost * w
    allowed = needed <= full
    if allowed then
      missing = needed
      retry = 0
    elseif cost > cap then
      retry = NEVER
    else
      retry = cdiv(needed - full, limit)
    end
    remaining = fdiv(full - missing, w)
    reset = cdiv(missing, limit)
    redis.call('HSET', key, 'm', missing, 'l', latest)
    redis.call('PEXPIRE', key, ttl_ms(reset))

  else
    -- Leaky bucket as GCRA: emission interval ceil(w / limit), tolerance cap intervals.
    local emission = cdiv(w, limit)
    local tolerance = cap * emission
    local tat = tonumber(redis.call('GET', key)) or 0
    local new_tat = math.max(tat, now) + cost * emission
    allowed = new_tat - now <= tolerance
    if allowed then
      tat = new_tat
      retry = 0
      redis.call('SET', key, tat, 'PX', ttl_ms(tat - now))
    elseif cost > cap then
      retry = NEVER
    else
      retry = new_tat - now - tolerance
    end
    local backlog = math.max(tat - now, 0)
    remaining = fdiv(tolerance - math.min(backlog, tolerance), emission)
    reset = backlog
  end

  if allowed then out[i] = {1, remaining, reset, retry} else out[i] = {0, remaining, reset, retry} end
  if not allowed and not shadow then break end
end

return out
