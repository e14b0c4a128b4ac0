//! Lua scripts: each is one round trip, and each write stores its value and publishes its
//! event atomically, so no replica can see a write without its event being on the wire.

use std::sync::LazyLock;

use redis::aio::ConnectionLike;
use redis::Script;

/// Loads the scripts a request path runs into a server just connected to (a promoted
/// replica or a restarted server has none): otherwise the first write after a failover
/// pays a NOSCRIPT round trip, and with `wait_replicas` a `WAIT` too, inside its store
/// deadline. Best effort: a refusal (an ACL without `script|load`) leaves the usual
/// load-on-NOSCRIPT.
pub async fn preload<C: ConnectionLike>(conn: &mut C) {
    for script in [&*CHECK, &*MARK, &*BUMP] {
        if let Err(e) = script.prepare_invoke().load_async(conn).await {
            tracing::debug!(error = %e, "cannot preload a script");
        }
    }
}

/// Reads everything one check needs. KEYS: jti, user, tenant, family, then the legacy
/// keys of the same four, then the session (which has no legacy layout). ARGV[1]: the
/// name that stands for "no such key" (the token has no such claim, or no legacy read):
/// the bare key prefix, which no key of ours is, and which an ACL user limited to
/// `~prefix*` may name (Redis checks every declared key against the user's patterns).
/// Returns `{jti_exists, user_ver, user_before, legacy_user_ver, legacy_user_before,
/// tenant_ver, tenant_before, legacy_tenant_ver, legacy_tenant_before, family_exists,
/// session_exists}` with `false` (nil) for absent hash fields; a marker exists when
/// either of its two keys does (one EXISTS for both).
pub static CHECK: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local none = ARGV[1]
local function exists(a, b)
  if a == none and b == none then return 0 end
  if b == none then return redis.call('EXISTS', a) end
  if a == none then return redis.call('EXISTS', b) end
  return redis.call('EXISTS', a, b)
end
local function subject(k)
  if k == none then return {false, false} end
  return redis.call('HMGET', k, 'ver', 'before')
end
local u = subject(KEYS[2])
local lu = subject(KEYS[6])
local t = subject(KEYS[3])
local lt = subject(KEYS[7])
return {exists(KEYS[1], KEYS[5]), u[1], u[2], lu[1], lu[2], t[1], t[2], lt[1], lt[2],
        exists(KEYS[4], KEYS[8]), exists(KEYS[9], none)}
"#,
    )
});

/// Marks a `jti`, family or session revoked. KEYS: the key. ARGV: record JSON, TTL seconds,
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

/// `tokengate migrate`: merges a legacy `jti` or family marker into its current key.
/// KEYS: the current key. ARGV: record JSON, TTL in ms (-1: none), channel, event JSON.
/// An existing current marker keeps its record (it is the newer write) and gets the
/// longer of the two lifetimes. Returns 1 when the key was created, 0 when merged.
pub static MERGE_MARKER: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local ttl = tonumber(ARGV[2])
local created = 0
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('SET', KEYS[1], ARGV[1])
  created = 1
  if ttl > 0 then redis.call('PEXPIRE', KEYS[1], ttl) end
else
  local left = redis.call('PTTL', KEYS[1])
  if ttl < 0 then
    redis.call('PERSIST', KEYS[1])
  elseif left >= 0 and ttl > left then
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
end
redis.call('PUBLISH', ARGV[3], ARGV[4])
return created
"#,
    )
});

/// `tokengate migrate`: merges a legacy user or tenant into its current hash: the higher
/// version and the later cut-off win, so the merge can only revoke more. KEYS: the
/// current hash. ARGV: legacy ver, legacy before, TTL in ms (-1: none), channel, the
/// event JSON without its closing `,"ver":…,"before":…}`. Returns `{created, ver,
/// before}`.
pub static MERGE_SUBJECT: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local created = 1 - redis.call('EXISTS', KEYS[1])
local ttl = tonumber(ARGV[3])
local ver = math.max(tonumber(redis.call('HGET', KEYS[1], 'ver') or '0'), tonumber(ARGV[1]))
local before = math.max(tonumber(redis.call('HGET', KEYS[1], 'before') or '0'), tonumber(ARGV[2]))
local left = redis.call('PTTL', KEYS[1])
redis.call('HSET', KEYS[1], 'ver', string.format('%d', ver), 'before', string.format('%d', before))
if ttl < 0 or (created == 0 and left < 0) then
  redis.call('PERSIST', KEYS[1])
elseif ttl > left then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
redis.call('PUBLISH', ARGV[4], ARGV[5] .. string.format(',"ver":%d,"before":%d}', ver, before))
return {created, ver, before}
"#,
    )
});

/// `tokengate migrate`: deletes a legacy key only if it still holds what was copied
/// (an old replica may have written it again meanwhile; then it is copied once more).
/// KEYS: the legacy key. ARGV: `marker` and the value, or `subject`, ver and before.
/// Returns 1 when deleted.
pub static DELETE_IF_SAME: LazyLock<Script> = LazyLock::new(|| {
    Script::new(
        r#"
local same
if ARGV[1] == 'marker' then
  same = redis.call('GET', KEYS[1]) == ARGV[2]
else
  local v = redis.call('HMGET', KEYS[1], 'ver', 'before')
  same = tonumber(v[1] or '0') == tonumber(ARGV[2]) and tonumber(v[2] or '0') == tonumber(ARGV[3])
end
if same then return redis.call('DEL', KEYS[1]) end
return 0
"#,
    )
});
