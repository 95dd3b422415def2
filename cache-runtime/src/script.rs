//! The runtime's Lua scripts, sent by digest (`EVALSHA`) rather than whole (`EVAL`): Redis
//! hashes an `EVAL`'s source on every call, which cost an ordered write about 14 % of its
//! throughput on Redis (redis-benchmark: 224–231k `EVAL` against 260k `EVALSHA` calls/s).
//!
//! A server that does not hold a script (after a restart or `SCRIPT FLUSH`) answers
//! `NOSCRIPT`; the request is sent again once every script is loaded (`redis_call`). A user
//! that may run `EVAL` but not `EVALSHA` or `SCRIPT LOAD` (an ACL written for an older
//! `redis.conf`) has scripts sent whole from then on.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use redis::aio::MultiplexedConnection;
use redis::{Cmd, Pipeline, RedisError, RedisResult};

/// One Lua script and its SHA-1 digest (computed on first use).
#[derive(Debug)]
pub(crate) struct Script {
    source: &'static str,
    digest: OnceLock<String>,
}

impl Script {
    pub(crate) const fn new(source: &'static str) -> Self {
        Self {
            source,
            digest: OnceLock::new(),
        }
    }

    #[cfg(all(test, feature = "testing"))]
    pub(crate) fn source(&self) -> &'static str {
        self.source
    }

    pub(crate) fn digest(&self) -> &str {
        self.digest
            .get_or_init(|| sha1_smol::Sha1::from(self.source).digest().to_string())
    }
}

/// Every script the runtime sends: what is loaded when a server answers `NOSCRIPT`.
pub(crate) fn all() -> [&'static Script; 9] {
    use crate::cache::{fence, lease, ordered};
    [
        &fence::FENCE,
        &lease::PROMOTE,
        &lease::RENEW,
        &lease::RELEASE,
        &ordered::WRITE_ORDERED,
        &ordered::REMOVE_KEY,
        &crate::marks::BUMP_EPOCH,
        &crate::marks::RAISE_MARK,
        &crate::rate_limit::GCRA,
    ]
}

/// How this cache sends scripts.
#[derive(Debug)]
pub(crate) struct Scripts {
    /// By digest until the server refuses `EVALSHA` or `SCRIPT LOAD` to this user.
    by_digest: AtomicBool,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            by_digest: AtomicBool::new(true),
        }
    }
}

impl Scripts {
    /// A command running `script`; the caller adds the key count, the keys and the arguments.
    pub(crate) fn cmd(&self, script: &Script) -> Cmd {
        let mut cmd = Cmd::new();
        match self.by_digest.load(Ordering::Relaxed) {
            true => cmd.arg("EVALSHA").arg(script.digest()),
            false => cmd.arg("EVAL").arg(script.source),
        };
        cmd
    }

    /// `pipeline` with a command running `script` appended; the caller adds the key count, the
    /// keys and the arguments.
    pub(crate) fn add<'p>(&self, pipeline: &'p mut Pipeline, script: &Script) -> &'p mut Pipeline {
        match self.by_digest.load(Ordering::Relaxed) {
            true => pipeline.cmd("EVALSHA").arg(script.digest()),
            false => pipeline.cmd("EVAL").arg(script.source),
        }
    }

    /// After `error`: sends scripts whole from now on if it says this user may not send them
    /// by digest.
    pub(crate) fn after_error(&self, error: &RedisError) {
        let refused = error.code() == Some("NOPERM") && {
            let text = error.to_string().to_lowercase();
            text.contains("evalsha") || text.contains("script")
        };
        if refused && self.by_digest.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                %error,
                "this Redis user may not run EVALSHA or SCRIPT LOAD (see redis.conf): Lua scripts are sent whole"
            );
        }
    }
}

/// The server does not hold a script the request ran by digest.
pub(crate) fn is_missing(error: &RedisError) -> bool {
    error.code() == Some("NOSCRIPT")
}

/// Loads every script into the server behind `connection`, checking that it names each by the
/// digest the requests use.
pub(crate) async fn load_all(connection: &mut MultiplexedConnection) -> RedisResult<()> {
    let digests: Vec<String> = load_all_pipeline().query_async(connection).await?;
    check_loaded(&digests)
}

/// The pipeline that loads every script; its answer goes to [`check_loaded`].
pub(crate) fn load_all_pipeline() -> Pipeline {
    let mut pipeline = redis::pipe();
    for script in all() {
        pipeline.cmd("SCRIPT").arg("LOAD").arg(script.source);
    }
    pipeline
}

/// Whether a server named every script by the digest the requests use.
pub(crate) fn check_loaded(digests: &[String]) -> RedisResult<()> {
    let scripts = all();
    for (script, digest) in scripts.iter().zip(digests) {
        if digest != script.digest() {
            return Err(RedisError::from((
                redis::ErrorKind::Client,
                "Redis names a script by another digest",
                format!(
                    "{digest} for a script this client names {}",
                    script.digest()
                ),
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_sha1_of_the_source() {
        let script = Script::new("return 1");
        // As `SCRIPT LOAD` names it (and `sha1sum`).
        assert_eq!(script.digest(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
    }
}
