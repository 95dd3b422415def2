//! Distributed leases (after memcache's): one loader per key across processes, and no stale
//! sets.
//!
//! The first process to miss takes a short lease in Redis (`{<key>}:%lease`, `SET NX PX`, in
//! the key's own Cluster hash slot); the others poll for the value until the lease ends. A write or an invalidation deletes the
//! lease, and a populate only stores while its lease is intact: a reader that loaded data
//! older than a concurrent write cannot put it back.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use super::Cache;
use super::storage::Found;
use super::validity::Stamp;
use crate::entity::CacheKey;
use crate::error::CacheError;
use crate::script::Script;

/// How many lease times a process waits for another's renewed lease before loading itself: a
/// holder whose source hangs keeps renewing, and its waiters must not wait for ever (20 s with
/// the default 2 s lease).
pub(crate) const MAX_LEASE_WAITS: u32 = 10;

/// Moves a loaded value, written beside the key by a plain `SET PX`, under the key only while
/// the caller's lease is intact, then ends the lease. The value itself never enters Lua:
/// passing 1 KiB into a script costs Redis more than the script's own commands.
/// KEYS: the loaded value, the key, the lease. ARGV: token.
pub(crate) static PROMOTE: Script = Script::new(
    r"
if redis.call('GET', KEYS[3]) ~= ARGV[1] then redis.call('UNLINK', KEYS[1]) return 0 end
redis.call('DEL', KEYS[3])
if redis.pcall('RENAME', KEYS[1], KEYS[2])['err'] then return 0 end
return 1
",
);

/// Extends the lease while the caller still holds it. KEYS: lease. ARGV: token, ttl ms.
pub(crate) static RENEW: Script = Script::new(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0",
);

/// Ends the lease if the caller still holds it. KEYS: lease. ARGV: token.
pub(crate) static RELEASE: Script = Script::new(
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0",
);

/// A new lease token. It records what the load is valid under, for readers deciding to wait.
fn lease_token(stamp: &Stamp<'_>) -> String {
    let id_token = stamp.id_token.unwrap_or(0);
    format!("{:016x}:{}:{id_token}", rand::random::<u64>(), stamp.epoch)
}

/// How a lease attempt went.
pub(crate) enum Lease {
    /// This caller holds the lease; the token proves it at populate time.
    Acquired(String),
    /// Another process holds it.
    HeldElsewhere,
    /// Redis could not be asked; load without a lease.
    Unavailable,
}

impl Cache {
    /// Takes the lease of `key` for a load stamped `stamp`: a plain `SET NX GET PX`, which
    /// answers the holder's token when it is held. A load that is at least as recent as this
    /// one is waited for; one that started under marks below this load's floor (an entity or
    /// tag invalidation came after it) or under another id token (its id was invalidated)
    /// would only store an invalid value, so its lease is taken over (its populate is then
    /// refused). Taking over races only with other loads newer than the holder's; whichever
    /// sets the lease last stores, as each load starts after its own lease was set.
    pub(crate) async fn acquire_lease(&self, key: &CacheKey, stamp: &Stamp<'_>) -> Lease {
        let Some(lease_ttl) = self.inner.config.lease_ttl else {
            return Lease::Unavailable;
        };
        let token = lease_token(stamp);
        let ttl_ms = u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let held: Result<Option<String>, CacheError> = self
            .redis(
                key.entity(),
                redis::cmd("SET")
                    .arg(key.lease_key())
                    .arg(&token)
                    .arg("NX")
                    .arg("GET")
                    .arg("PX")
                    .arg(ttl_ms),
            )
            .await;
        match held {
            Ok(None) => Lease::Acquired(token),
            Ok(Some(held)) if holds_as_recent_a_load(&held, stamp) => Lease::HeldElsewhere,
            Ok(Some(_)) => self.seize_lease(key, stamp).await,
            Err(_) => Lease::Unavailable,
        }
    }

    /// Takes the lease of `key` whoever holds it (a forced refresh): the holder's populate is
    /// then refused, and an invalidation during this load voids this one's. A plain `SET PX`.
    pub(crate) async fn seize_lease(&self, key: &CacheKey, stamp: &Stamp<'_>) -> Lease {
        let Some(lease_ttl) = self.inner.config.lease_ttl else {
            return Lease::Unavailable;
        };
        let token = lease_token(stamp);
        let ttl_ms = u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX);
        let set: Result<(), CacheError> = self
            .redis(
                key.entity(),
                redis::cmd("SET")
                    .arg(key.lease_key())
                    .arg(&token)
                    .arg("PX")
                    .arg(ttl_ms),
            )
            .await;
        match set {
            Ok(()) => Lease::Acquired(token),
            Err(_) => Lease::Unavailable,
        }
    }

    /// Waits for the lease holder's value: the stored bytes, or `None` once the lease ended
    /// without a value (the holder failed, died, or its populate was voided), Redis failed, or
    /// [`MAX_LEASE_WAITS`] lease times went by. A holder renews its lease while its source is
    /// slow, so a live lease means a load still coming. The caller checks the bytes like any
    /// read (they may be invalid by now).
    pub(crate) async fn await_leased_value(&self, key: &CacheKey) -> Option<Found> {
        let lease_ttl = self.inner.config.lease_ttl?;
        let deadline = Instant::now() + lease_ttl.saturating_mul(MAX_LEASE_WAITS);
        let poll = (lease_ttl / 40).clamp(Duration::from_millis(2), Duration::from_millis(50));
        let lease_key = key.lease_key();
        let mut pipeline = redis::pipe();
        pipeline
            .cmd("PTTL")
            .arg(&lease_key)
            .cmd("GET")
            .arg(key.as_str());
        if let Some(token_key) = key.variants_token_key() {
            pipeline.cmd("GET").arg(token_key);
        }
        loop {
            tokio::time::sleep(poll).await;
            let (lease_left, bytes, id_token): (i64, Option<Vec<u8>>, Option<u64>) =
                if key.has_variant() {
                    self.redis(key.entity(), &pipeline).await.ok()?
                } else {
                    let (lease_left, bytes) = self.redis(key.entity(), &pipeline).await.ok()?;
                    (lease_left, bytes, None)
                };
            if bytes.is_some() {
                return Some(Found {
                    bytes,
                    id_token,
                    withheld: false,
                });
            }
            if lease_left < 0 || Instant::now() >= deadline {
                return None;
            }
        }
    }

    /// Keeps the caller's lease alive while its load runs, so that a source slower than the
    /// lease is still cached: every third of the lease time, the lease is extended if it is
    /// still the caller's. Ends (and stops renewing) once the lease is gone, taken over, or
    /// Redis does not answer; the populate then decides. Never returns: race it against the
    /// load. In a batch, each renewal takes a permit of `bound` (the batch's renewals in
    /// flight), so ten thousand leases are not renewed in one flood.
    pub(crate) async fn renew_lease(
        &self,
        key: &CacheKey,
        token: &str,
        bound: Option<&tokio::sync::Semaphore>,
    ) -> Infallible {
        let Some(lease_ttl) = self.inner.config.lease_ttl else {
            return std::future::pending::<Infallible>().await;
        };
        let ttl_ms = u64::try_from(lease_ttl.as_millis()).unwrap_or(u64::MAX);
        loop {
            tokio::time::sleep(lease_ttl / 3).await;
            // The semaphore is never closed: a permit is always had in the end.
            let _permit = match bound {
                Some(bound) => bound.acquire().await.ok(),
                None => None,
            };
            let renewed: Result<u8, CacheError> = self
                .redis(
                    key.entity(),
                    self.inner
                        .scripts
                        .cmd(&RENEW)
                        .arg(1)
                        .arg(key.lease_key())
                        .arg(token)
                        .arg(ttl_ms),
                )
                .await;
            if !matches!(renewed, Ok(1)) {
                return std::future::pending::<Infallible>().await;
            }
        }
    }

    /// Ends the caller's lease without storing anything (the loader failed or found nothing),
    /// so waiting processes stop waiting at once.
    pub(crate) async fn release_lease(&self, key: &CacheKey, token: &str) {
        let released: Result<u8, CacheError> = self
            .redis(
                key.entity(),
                self.inner
                    .scripts
                    .cmd(&RELEASE)
                    .arg(1)
                    .arg(key.lease_key())
                    .arg(token),
            )
            .await;
        if let Err(error) = released {
            tracing::debug!(key = key.as_str(), %error, "could not release a lease; it expires on its own");
        }
    }

    /// Adds to `pipeline` what stores a loaded value only under the caller's lease (the last
    /// reply: 1), or not at all when a write or invalidation voided it (0): the bytes beside
    /// the key under a name of the lease's own, then [`PROMOTE`].
    pub(crate) fn add_populate(
        &self,
        pipeline: &mut redis::Pipeline,
        key: &CacheKey,
        bytes: &[u8],
        ttl_ms: u64,
        token: &str,
    ) {
        let loaded = key.loaded_key(token);
        let keys = [key.as_str(), &key.lease_key()];
        self.add_beside_then(pipeline, &loaded, bytes, ttl_ms, &PROMOTE, &keys)
            .arg(token);
    }

    /// Adds to `pipeline` a plain `SET PX` of `bytes` under `beside` (a key in `key`'s slot),
    /// then `script` with `beside` as its first key and `keys` after it: a value moved onto its
    /// key by a script never enters Lua. Answers the pipeline for the script's arguments.
    pub(crate) fn add_beside_then<'p>(
        &self,
        pipeline: &'p mut redis::Pipeline,
        beside: &str,
        bytes: &[u8],
        ttl_ms: u64,
        script: &Script,
        keys: &[&str],
    ) -> &'p mut redis::Pipeline {
        pipeline
            .cmd("SET")
            .arg(beside)
            .arg(bytes)
            .arg("PX")
            .arg(ttl_ms)
            .ignore();
        self.inner
            .scripts
            .add(pipeline, script)
            .arg(1 + keys.len())
            .arg(beside)
            .arg(keys)
    }
}

/// Whether the lease token `held` records a load valid under at least `stamp`'s floor and
/// its id token: a token this process cannot read is treated as an older load's.
fn holds_as_recent_a_load(held: &str, stamp: &Stamp<'_>) -> bool {
    let mut parts = held.split(':').skip(1);
    let epoch = parts.next().and_then(|epoch| epoch.parse::<u64>().ok());
    let id_token = parts.next().and_then(|id| id.parse::<u64>().ok());
    epoch.is_some_and(|epoch| epoch >= stamp.floor) && id_token == Some(stamp.id_token.unwrap_or(0))
}
