//! The store's Lua scripts: each operation is one script, so it is atomic on the Redis
//! side and costs one round trip. Every script first sweeps a batch of expired entries.

use std::sync::LazyLock;

use redis::Script;

/// Helpers every script starts with. `ARGV[1]` is the key prefix, `ARGV[2]` the sweep
/// batch.
macro_rules! lua_prelude {
    () => {
        r#"
local P = ARGV[1]
local t = redis.call('TIME')
local now_us = tonumber(t[1]) * 1000000 + tonumber(t[2])
local now = math.floor(now_us / 1000)
-- Integers as Redis arguments, without Lua's exponent notation.
local function int(x) return string.format('%.0f', x) end
-- Removes the registration (peer, ns) from every key, and its bytes from the total.
local function drop(peer, ns)
  local member = peer .. ':' .. ns
  local size = tonumber(redis.call('HGET', P .. 'size', member))
  if size then
    redis.call('HDEL', P .. 'size', member)
    if redis.call('DECRBY', P .. 'bytes', int(size)) <= 0 then redis.call('DEL', P .. 'bytes') end
  end
  redis.call('DEL', P .. 'reg:' .. member)
  redis.call('ZREM', P .. 'all', member)
  redis.call('ZREM', P .. 'ns:' .. ns, peer)
  redis.call('SREM', P .. 'peer:' .. peer, ns)
  redis.call('ZREM', P .. 'exp', member)
end
-- The expiry and record size of (peer, ns) if it is live, without reading the record;
-- otherwise drops its leftovers.
local function alive(peer, ns)
  local member = peer .. ':' .. ns
  local expires = redis.call('ZSCORE', P .. 'exp', member)
  if expires and tonumber(expires) > now then
    local key = P .. 'reg:' .. member
    local size = redis.call('STRLEN', key)
    -- (STRLEN is 0 for a missing key too; an empty record is live.)
    if size > 0 or redis.call('EXISTS', key) == 1 then return tonumber(expires), size end
  end
  drop(peer, ns)
  return nil
end
-- Drops up to n expired registrations, the oldest first; returns how many it found.
local function sweep(n)
  local dead = redis.call('ZRANGEBYSCORE', P .. 'exp', '-inf', int(now), 'LIMIT', 0, n)
  for _, member in ipairs(dead) do
    local i = string.find(member, ':', 1, true)
    if i then
      drop(string.sub(member, 1, i - 1), string.sub(member, i + 1))
    else
      redis.call('ZREM', P .. 'exp', member)
    end
  end
  return #dead
end
local sweep_batch = tonumber(ARGV[2])
sweep(sweep_batch)
"#
    };
}

/// ARGV: prefix, sweep, namespace, peer, record, ttl ms, per-peer cap, total cap,
/// per-peer byte cap, total byte cap.
/// Returns 0 registered, 1 peer full, 2 store full, 3 peer bytes full, 4 store bytes full.
pub(super) static REGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_prelude!(),
        r#"
local ns, peer, record = ARGV[3], ARGV[4], ARGV[5]
local ttl, per_peer, total = tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8])
local per_peer_bytes, total_bytes = tonumber(ARGV[9]), tonumber(ARGV[10])
local member = peer .. ':' .. ns
local size = #record
-- The peer's other live registrations (at most per_peer of them): count and bytes.
local held, held_bytes = 0, 0
for _, other in ipairs(redis.call('SMEMBERS', P .. 'peer:' .. peer)) do
  if other ~= ns then
    local expires, bytes = alive(peer, other)
    if expires then
      held = held + 1
      held_bytes = held_bytes + bytes
    end
  end
end
-- A re-registration always fits the counts; a new one must fit both.
if not alive(peer, ns) then
  if held >= per_peer then return 1 end
  if redis.call('ZCOUNT', P .. 'exp', '(' .. int(now), '+inf') >= total then return 2 end
end
-- Bytes: the new record counts in place of the old one.
if held_bytes + size > per_peer_bytes then return 3 end
local function others()
  return (tonumber(redis.call('GET', P .. 'bytes')) or 0)
    - (tonumber(redis.call('HGET', P .. 'size', member)) or 0)
end
-- The total still counts expired records no sweep has dropped: sweep more first.
local swept = 0
while others() + size > total_bytes do
  if swept >= 10 * sweep_batch then return 4 end
  local n = sweep(sweep_batch)
  if n == 0 then return 4 end
  swept = swept + n
end
drop(peer, ns)
-- The time in microseconds, or one more than the last number if that is larger.
local seq = redis.call('INCR', P .. 'seq')
if seq < now_us then
  seq = now_us
  redis.call('SET', P .. 'seq', int(seq))
end
-- A zero TTL takes a number and is expired at once, as in the memory store.
if ttl > 0 then
  redis.call('SET', P .. 'reg:' .. member, record, 'PX', int(ttl))
  redis.call('HSET', P .. 'size', member, int(size))
  redis.call('INCRBY', P .. 'bytes', int(size))
  redis.call('ZADD', P .. 'all', int(seq), member)
  redis.call('ZADD', P .. 'exp', int(now + ttl), member)
  local index = P .. 'ns:' .. ns
  local namespaces = P .. 'peer:' .. peer
  redis.call('ZADD', index, int(seq), peer)
  redis.call('SADD', namespaces, ns)
  for _, key in ipairs({index, namespaces}) do
    if redis.call('PTTL', key) < ttl then redis.call('PEXPIRE', key, int(ttl)) end
  end
end
return 0
"#
    ))
});

/// ARGV: prefix, sweep, namespace, peer.
pub(super) static UNREGISTER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_prelude!(),
        r#"
drop(ARGV[4], ARGV[3])
return 0
"#
    ))
});

/// ARGV: prefix, sweep, after, limit, byte budget, bytes per entry besides namespace and
/// record[, namespace].
/// Returns `{peer, namespace, seq, ttl ms, record}` per registration, in seq order,
/// stopping before the first registration that would pass the budget (never before the
/// first): records past it are not even read.
pub(super) static DISCOVER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_prelude!(),
        r#"
local cursor, limit, ns = ARGV[3], tonumber(ARGV[4]), ARGV[7]
local budget, overhead = tonumber(ARGV[5]), tonumber(ARGV[6])
local index = ns and (P .. 'ns:' .. ns) or (P .. 'all')
local page = {}
local used, full = 0, false
-- Dead members met on the way are dropped and the read goes on, so the page fills.
while not full and #page < limit do
  local batch = redis.call('ZRANGEBYSCORE', index, '(' .. cursor, '+inf',
    'WITHSCORES', 'LIMIT', 0, limit - #page)
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    local peer, namespace = batch[i], ns
    cursor = batch[i + 1]
    if not ns then
      local at = string.find(peer, ':', 1, true)
      if at then
        peer, namespace = string.sub(batch[i], 1, at - 1), string.sub(batch[i], at + 1)
      else
        redis.call('ZREM', index, peer)
      end
    end
    if namespace then
      local expires, size = alive(peer, namespace)
      if expires then
        local cost = #namespace + size + overhead
        if #page > 0 and used + cost > budget then
          full = true
          break
        end
        local record = redis.call('GET', P .. 'reg:' .. peer .. ':' .. namespace)
        if record then
          used = used + cost
          page[#page + 1] = {peer, namespace, tonumber(cursor), expires - now, record}
        end
      end
    end
  end
end
return page
"#
    ))
});

/// ARGV: prefix, sweep. Returns the number of live registrations.
pub(super) static COUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(concat!(
        lua_prelude!(),
        r#"
return redis.call('ZCOUNT', P .. 'exp', '(' .. int(now), '+inf')
"#
    ))
});
