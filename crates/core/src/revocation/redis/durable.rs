//! One revocation write and what "acknowledged" means for it.
//!
//! Redis replicates asynchronously: a write the primary answered can be lost when the
//! primary dies before its replica received it, and Sentinel then promotes a replica that
//! never saw the revocation. With `revocation.redis.wait_replicas: N` the write script
//! and `WAIT N timeout` go out in one pipeline on one connection (WAIT counts the
//! replicas that reached *this connection's* last write; sent on another connection, or
//! after a reconnect, it would count nothing of ours and could confirm at once), and the
//! write is acknowledged only when N replicas confirmed it: otherwise the caller gets
//! 503 and retries. The write may still be on the primary then; a retry is idempotent.

use redis::aio::ConnectionLike;
use redis::{FromRedisValue, RedisError, RedisResult, Script, Value};

/// How many replicas must confirm a write, and for how long to wait for them.
#[derive(Debug, Clone, Copy)]
pub struct Durability {
    pub replicas: u32,
    pub timeout_ms: u64,
}

/// A write refused because too few replicas confirmed it in time.
fn too_few(confirmed: i64, wanted: u32) -> RedisError {
    RedisError::from((
        redis::ErrorKind::Io,
        "revocation not confirmed by enough replicas (WAIT)",
        format!("{confirmed} of {wanted} replicas confirmed in time"),
    ))
}

fn value<T: FromRedisValue>(v: Value) -> RedisResult<T> {
    match v {
        Value::ServerError(e) => Err(e.into()),
        v => Ok(redis::from_redis_value(v)?),
    }
}

impl Durability {
    /// Runs `script` on `key` with `args`, then (when replicas are required) `WAIT`, in
    /// one pipeline. Loads the script once when the server does not know it (a promoted
    /// replica, a restarted server).
    pub async fn write<T: FromRedisValue, C: ConnectionLike>(
        &self,
        conn: &mut C,
        script: &Script,
        key: &str,
        args: &[&[u8]],
    ) -> RedisResult<T> {
        let mut eval = redis::cmd("EVALSHA");
        eval.arg(script.get_hash()).arg(1).arg(key);
        for a in args {
            eval.arg(*a);
        }
        let mut pipe = redis::pipe();
        pipe.ignore_errors().add_command(eval);
        if self.replicas > 0 {
            pipe.cmd("WAIT").arg(self.replicas).arg(self.timeout_ms);
        }
        let mut loaded = false;
        loop {
            let mut replies: Vec<Value> = pipe.query_async(conn).await?;
            let first = match replies.first() {
                Some(Value::ServerError(e)) if e.code() == "NOSCRIPT" && !loaded => {
                    script.prepare_invoke().key(key).load_async(conn).await?;
                    loaded = true;
                    continue;
                }
                Some(_) => replies.remove(0),
                None => return Err((redis::ErrorKind::Parse, "empty pipeline reply").into()),
            };
            let written: T = value(first)?;
            if self.replicas > 0 {
                let confirmed: i64 = match replies.into_iter().next() {
                    Some(v) => value(v)?,
                    None => return Err((redis::ErrorKind::Parse, "no WAIT reply").into()),
                };
                if confirmed < i64::from(self.replicas) {
                    return Err(too_few(confirmed, self.replicas));
                }
            }
            return Ok(written);
        }
    }
}
