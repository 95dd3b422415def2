//! The Redis identity fence. A Redis that restarted from a snapshot, or a replica promoted
//! without the last writes, holds older data than what was served before it: keys that were
//! deleted are back, marks that were raised are lower again. Nothing is read from a Redis
//! process (its `run_id`) until the app's fence names that process.
//!
//! The first instance to reach a new Redis process raises the app's mark above every epoch
//! handed out before (and above the epoch it knows), records the process's `run_id` under
//! `{<app>:%mark}:%fence`, and tells the others: every value written before is then invalid, whatever
//! the snapshot holds and whoever invalidated it (also a process that died since). The other
//! instances find the fence set and learn the new mark. The cost: after a restart or failover
//! the cache starts cold, once.
//!
//! An instance checks the fence before its first read, after its subscription dropped (a
//! restart always drops it), and compares `run_id` every heartbeat (a failover behind a
//! proxy).

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use super::Cache;
use crate::bus::Event;
use crate::error::CacheError;
use crate::key::{app_mark_key, epoch_key, fence_key};
use crate::marks::MARK_TTL;
use crate::script::Script;

/// Fences the app against a new Redis process. KEYS: fence, epoch, app mark. ARGV: run_id,
/// the caller's known epoch, mark ttl ms. Answers `{0, app mark}` if the fence already named
/// this process, else raises the mark: `{1, new mark}` if the fence named another process,
/// `{2, new mark}` if there was none (a new app, or a Redis that kept nothing: no value of an
/// earlier process is there to be made invalid).
pub(crate) static FENCE: Script = Script::new(
    r"
local held = redis.call('GET', KEYS[1])
if held == ARGV[1] then
  return {0, redis.call('GET', KEYS[3]) or '0'}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local current = tonumber(redis.call('GET', KEYS[2]) or '0') or 0
local floor = tonumber(ARGV[2]) or 0
local next = string.format('%.0f', math.max(current + 1, now, floor + 1))
redis.call('SET', KEYS[2], next)
redis.call('SET', KEYS[3], next, 'PX', ARGV[3])
redis.call('SET', KEYS[1], ARGV[1])
if held then return {1, next} end
return {2, next}
",
);

/// What this instance knows of the Redis process it reads from.
#[derive(Debug, Default)]
pub(crate) struct Fence {
    /// The fence was checked for the process reads go to now.
    verified: AtomicBool,
    /// That process's `run_id`.
    run_id: Mutex<Option<String>>,
    /// One check at a time.
    checking: tokio::sync::Mutex<()>,
    /// Whether a refused `INFO` was logged.
    refusal_logged: AtomicBool,
}

impl Fence {
    #[inline]
    pub(crate) fn verified(&self) -> bool {
        self.verified.load(Ordering::Acquire)
    }

    /// The connection to Redis dropped: the process on the other side may be a new one.
    pub(crate) fn unverify(&self) {
        self.verified.store(false, Ordering::Release);
    }

    fn known_run_id(&self) -> Option<String> {
        self.run_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn set_run_id(&self, run_id: String) {
        *self
            .run_id
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(run_id);
    }
}

/// The `run_id` line of `INFO server`.
fn run_id(info: &str) -> Option<&str> {
    info.lines()
        .find_map(|line| line.strip_prefix("run_id:"))
        .map(str::trim)
}

impl Cache {
    /// Makes sure the Redis reads go to has been fenced (see the module docs); an error means
    /// it could not be checked, and nothing may be read from it.
    pub(crate) async fn check_fence(&self) -> Result<(), CacheError> {
        let fence = &self.inner.fence;
        let _one = fence.checking.lock().await;
        if fence.verified() {
            return Ok(());
        }
        let Some(run_id) = self.server_run_id().await? else {
            fence.verified.store(true, Ordering::Release);
            return Ok(());
        };
        let prefix = &self.inner.config.app_prefix;
        let marks = &self.inner.marks;
        let mut fence_cmd = self.inner.scripts.cmd(&FENCE);
        fence_cmd
            .arg(3)
            .arg(fence_key(prefix))
            .arg(epoch_key(prefix))
            .arg(app_mark_key(prefix))
            .arg(&run_id)
            .arg(marks.known())
            .arg(u64::try_from(MARK_TTL.as_millis()).unwrap_or(u64::MAX));
        let (raised, mark): (u8, u64) = self.call((&fence_cmd).into()).await?;
        marks.saw(mark);
        self.inner.app_mark.raise(mark);
        if raised != 0 {
            match raised {
                1 => tracing::warn!(
                    run_id,
                    "a new Redis process (restarted or failed over): every value cached before it is invalid"
                ),
                _ => tracing::debug!(run_id, "the app's first fence on this Redis process"),
            }
            let event = Event::EntityMark(app_mark_key(prefix), mark);
            if let Err(error) = self.try_publish(None, &event).await {
                tracing::debug!(%error, "could not announce the fence; instances check it themselves");
            }
        }
        fence.set_run_id(run_id);
        fence.verified.store(true, Ordering::Release);
        Ok(())
    }

    /// The `run_id` of the Redis process reads go to; `None` where the server does not say
    /// (a proxy) or the user may not ask (no `INFO` in its ACL): the fence is then off.
    async fn server_run_id(&self) -> Result<Option<String>, CacheError> {
        let mut info = redis::cmd("INFO");
        info.arg("server");
        match self.call::<String>((&info).into()).await {
            Ok(info) => Ok(run_id(&info).map(str::to_owned)),
            Err(error) if !error.is_connection_class() => {
                if !self
                    .inner
                    .fence
                    .refusal_logged
                    .swap(true, Ordering::Relaxed)
                {
                    tracing::warn!(
                        %error,
                        "cannot read the Redis run_id: a Redis restarted from older data would not be noticed (grant INFO, see redis.conf)"
                    );
                }
                Ok(None)
            }
            Err(error) => Err(error),
        }
    }

    /// The heartbeat's check: a `run_id` other than the one fenced means reads went to a new
    /// process without the connection dropping (a failover behind a proxy).
    pub(crate) async fn recheck_fence(&self) -> Result<(), CacheError> {
        let fence = &self.inner.fence;
        if !fence.verified() {
            return self.check_fence().await;
        }
        let now = self.server_run_id().await?;
        if now.is_some() && now != fence.known_run_id() {
            fence.unverify();
            return self.check_fence().await;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_run_id_is_read_from_info_server() {
        let info = "# Server\r\nredis_version:7.0.15\r\nrun_id:abc123\r\ntcp_port:6379\r\n";
        assert_eq!(super::run_id(info), Some("abc123"));
        assert_eq!(super::run_id("# Server\r\n"), None);
    }
}
