//! The Lua scripts that make each change to an entry atomic. Every script touches the keys of
//! one entry only (one hash tag, so one cluster slot): `KEYS[1]` is the index hash, and the
//! chunk keys are built from the chunk base passed in `ARGV`.

use std::sync::LazyLock;

use redis::Script;

/// Helpers shared by the entry scripts. `base` is the chunk key base, `grace` the TTL (ms)
/// given to the chunks of a replaced or removed write.
const PRELUDE: &str = r#"
local function chunk_count(rec)
  return tonumber(string.sub(rec, 17, 24), 16) or 0
end
-- The chunks of a write that is no longer published expire after the grace period (a reader
-- may be streaming them), unless they expire sooner anyway.
local function retire(rec, base, grace)
  local wid = string.sub(rec, 1, 16)
  for i = 0, chunk_count(rec) - 1 do
    local k = base .. wid .. ':' .. i
    local t = redis.call('PTTL', k)
    if t == -1 or t > grace then
      redis.call('PEXPIRE', k, grace)
    end
  end
end
-- The bytes an entry takes: its records plus its chunked bodies (0 when not asked for).
local function entry_size(idx, wanted)
  if wanted ~= '1' then
    return 0
  end
  local total = 0
  for _, rec in ipairs(redis.call('HVALS', idx)) do
    total = total + #rec
    if chunk_count(rec) > 0 then
      total = total + (tonumber(string.sub(rec, 25, 40), 16) or 0)
    end
  end
  return total
end
local function extend_index(idx, ttl)
  local t = redis.call('PTTL', idx)
  if t >= 0 and t < ttl then
    redis.call('PEXPIRE', idx, ttl)
  elseif t == -1 then
    redis.call('PEXPIRE', idx, ttl)
  end
end
"#;

/// Publishes a write. ARGV: field (variant), record, ttl ms, chunk base, write id, chunk
/// count, last chunk, grace ms, size wanted ('1'/'0'). Returns the entry's size, or -1 when a
/// staged chunk has expired (nothing is published then).
pub(super) static COMMIT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}{}",
        r#"
local idx, field, rec = KEYS[1], ARGV[1], ARGV[2]
local ttl, base, wid, n = tonumber(ARGV[3]), ARGV[4], ARGV[5], tonumber(ARGV[6])
local grace = tonumber(ARGV[8])
if n > 0 then
  for i = 0, n - 2 do
    if redis.call('EXISTS', base .. wid .. ':' .. i) == 0 then
      return -1
    end
  end
  redis.call('SET', base .. wid .. ':' .. (n - 1), ARGV[7], 'PX', ttl)
  for i = 0, n - 2 do
    redis.call('PEXPIRE', base .. wid .. ':' .. i, ttl)
  end
end
local old = redis.call('HGET', idx, field)
if old then
  retire(old, base, grace)
end
redis.call('HSET', idx, field, rec)
extend_index(idx, ttl)
return entry_size(idx, ARGV[9])
"#
    ))
});

/// Replaces a record's header if the record is still exactly what the caller read
/// (check-and-set), and resets the entry's TTLs. ARGV: field, expected record, new record,
/// ttl ms, chunk base, size wanted. Returns the entry's size, or -1 when the record changed.
pub(super) static UPDATE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}{}",
        r#"
local idx, field = KEYS[1], ARGV[1]
local ttl, base = tonumber(ARGV[4]), ARGV[5]
local cur = redis.call('HGET', idx, field)
if not cur or cur ~= ARGV[2] then
  return -1
end
redis.call('HSET', idx, field, ARGV[3])
local wid = string.sub(cur, 1, 16)
for i = 0, chunk_count(cur) - 1 do
  redis.call('PEXPIRE', base .. wid .. ':' .. i, ttl)
end
extend_index(idx, ttl)
return entry_size(idx, ARGV[6])
"#
    ))
});

/// Removes records. ARGV: mode, chunk base, grace ms, size wanted, field, expected prefix.
/// Mode `all` removes every variant, `one` the variant `field`, `if` the variant `field` only
/// while its record starts with the expected prefix (its write id, or the whole damaged
/// record). Returns the entry's size afterwards.
pub(super) static REMOVE: LazyLock<Script> = LazyLock::new(|| {
    Script::new(&format!(
        "{PRELUDE}{}",
        r#"
local idx, mode, base, grace = KEYS[1], ARGV[1], ARGV[2], tonumber(ARGV[3])
if mode == 'all' then
  for _, rec in ipairs(redis.call('HVALS', idx)) do
    retire(rec, base, grace)
  end
  redis.call('DEL', idx)
  return 0
end
local field = ARGV[5]
local cur = redis.call('HGET', idx, field)
if cur and (mode == 'one' or string.sub(cur, 1, #ARGV[6]) == ARGV[6]) then
  retire(cur, base, grace)
  redis.call('HDEL', idx, field)
end
return entry_size(idx, ARGV[4])
"#
    ))
});

/// Records an entry's size and access for the size bound and names the least recently used
/// entries to evict when the total is over it. KEYS: order, sizes, total. ARGV: primary key,
/// size (0: forget it), bound, access tick. Returns the primary keys to evict.
pub(super) static ACCOUNT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local order, sizes, totalk = KEYS[1], KEYS[2], KEYS[3]
local key, size, bound = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local old = tonumber(redis.call('HGET', sizes, key) or '0') or 0
if size > 0 then
  redis.call('HSET', sizes, key, size)
  redis.call('ZADD', order, ARGV[4], key)
else
  redis.call('HDEL', sizes, key)
  redis.call('ZREM', order, key)
end
local total = redis.call('INCRBY', totalk, size - old)
local victims = {}
if size > 0 and total > bound then
  local over = total - bound
  for _, c in ipairs(redis.call('ZRANGE', order, 0, 127)) do
    if c ~= key then
      table.insert(victims, c)
      over = over - (tonumber(redis.call('HGET', sizes, c) or '0') or 0)
      if over <= 0 then
        break
      end
    end
  end
end
return victims
"#,
    )
});
