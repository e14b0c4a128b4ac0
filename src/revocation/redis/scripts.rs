//! Lua scripts: each is one round trip, and each write stores its value and publishes its
//! event atomically, so no replica can see a write without its event being on the wire.

use std::sync::LazyLock;

use redis::Script;

/// Reads everything one check needs. KEYS: jti, user, tenant, family (an empty name
/// means "the token has no such claim"). Returns
/// `{jti_exists, user_ver, user_before, tenant_ver, tenant_before, family_exists}`
/// with `false` (nil) for absent hash fields.
pub static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local function exists(k)
  if k == '' then return 0 end
  return redis.call('EXISTS', k)
end
local function subject(k)
  if k == '' then return {false, false} end
  return redis.call('HMGET', k, 'ver', 'before')
end
local u = subject(KEYS[2])
local t = subject(KEYS[3])
return {exists(KEYS[1]), u[1], u[2], t[1], t[2], exists(KEYS[4])}
"#,
    )
});

/// Marks a `jti` or family revoked. KEYS: the key. ARGV: record JSON, TTL seconds,
/// channel, event JSON. A `jti` revoked twice keeps the longer TTL.
pub static MARK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ttl = tonumber(ARGV[2])
local left = redis.call('TTL', KEYS[1])
if left > ttl then ttl = left end
redis.call('SET', KEYS[1], ARGV[1], 'EX', ttl)
redis.call('PUBLISH', ARGV[3], ARGV[4])
return 1
"#,
    )
});

/// Bumps a user's or tenant's version and moves its cut-off (strictly forward).
/// KEYS: the hash. ARGV: now in unix ms, TTL seconds (0 = none), channel, the event
/// JSON without its closing `,"ver":…,"before":…}`. Returns `{ver, before}`.
pub static BUMP: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ver = redis.call('HINCRBY', KEYS[1], 'ver', 1)
local before = tonumber(ARGV[1])
local old = tonumber(redis.call('HGET', KEYS[1], 'before') or '0')
if before <= old then before = old + 1 end
redis.call('HSET', KEYS[1], 'before', string.format('%d', before))
local ttl = tonumber(ARGV[2])
if ttl > 0 then redis.call('EXPIRE', KEYS[1], ttl) end
redis.call('PUBLISH', ARGV[3], ARGV[4] .. string.format(',"ver":%d,"before":%d}', ver, before))
return {ver, before}
"#,
    )
});
