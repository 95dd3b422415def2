//! Storing a loaded value: handing it to waiting callers, writing it under its guard, keeping
//! it in the local tier.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use super::Guard;
use crate::cache::Cache;
use crate::cache::loaded::Loaded;
use crate::cache::policy::Policy;
use crate::cache::storage::{Stored, Write};
use crate::cache::validity::Stamp;
use crate::entity::CacheKey;
use crate::error::CacheError;
use crate::flight::{Leader, Outcome};
use crate::metrics::bump;

/// A loaded value as stored and as handed to this process's waiting callers.
pub(super) struct Encoded {
    /// For Redis (`None`: nothing to store).
    bytes: Option<Result<Vec<u8>, CacheError>>,
    /// How long it is fresh for.
    ttl: Duration,
    /// What the flight's waiters are told.
    outcome: Outcome,
}

impl Cache {
    /// Encodes the loaded value for Redis and for this process's waiting callers (if
    /// `followers`); answers the bytes (if any), the TTL they are fresh for, and what the
    /// flight's waiters are to be told. Synchronous, so no borrow of the loaded value is held
    /// across an await.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn encode_loaded<L: Loaded>(
        &self,
        policy: &Policy<'_>,
        loaded: &L,
        followers: bool,
        guard: &Guard,
        stamp: Stamp<'_>,
        ttl: Duration,
        cost: Duration,
    ) -> Encoded {
        let (stored, ttl) = match (loaded.value(), policy.negative_ttl) {
            (Some(value), _) => (Some(Stored::Value(value)), ttl),
            (None, Some(negative)) => (Some(Stored::Absent), self.jittered(negative)),
            (None, None) => (None, ttl),
        };
        // Encoded for Redis, and for callers waiting on this flight; with neither, not at all
        // (the open-breaker path stays cheap).
        let wanted = !matches!(guard, Guard::NoStore) || followers;
        let encoded = stored
            .filter(|_| wanted)
            .map(|stored| self.encode(stored, ttl, cost, &stamp));
        let outcome = match &encoded {
            Some(Ok(bytes)) => Outcome::Value(Arc::from(bytes.as_slice())),
            // A caller that joined after the check above loads for itself.
            None if !wanted => Outcome::Failed,
            None => Outcome::Absent,
            Some(Err(_)) => Outcome::Failed,
        };
        Encoded {
            bytes: encoded,
            ttl,
            outcome,
        }
    }

    /// Hands the loaded value to this process's waiting callers: a value loaded under a lease
    /// once it is stored under that lease, any other at once. Another instance's write or key
    /// invalidation is not announced to instances that do not hear the entity's key events
    /// (see [`crate::cache::key_events`]); it deletes the lease, so a value stored under its
    /// lease was not overtaken by one.
    pub(super) async fn hand_over_and_store(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        leader: Option<Leader<'_>>,
        encoded: Encoded,
        guard: Guard,
        seen: u64,
    ) {
        let Encoded {
            bytes,
            ttl,
            outcome,
        } = encoded;
        let needs_proof = matches!(guard, Guard::Lease(_)) && matches!(outcome, Outcome::Value(_));
        let deferred = match (leader, needs_proof) {
            (Some(leader), true) => Some((leader, outcome)),
            (Some(leader), false) => {
                leader.finish(outcome);
                None
            }
            (None, _) => None,
        };
        let stored = self
            .store_loaded(key, policy, bytes, guard, ttl, seen)
            .await;
        if let Some((leader, outcome)) = deferred {
            leader.finish(if stored { outcome } else { Outcome::Failed });
        }
    }

    /// Stores the encoded value under its guard and keeps it in the local tier; nothing to
    /// store (`None`) ends the lease so that waiting processes load for themselves.
    pub(super) async fn store_loaded(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        encoded: Option<Result<Vec<u8>, CacheError>>,
        guard: Guard,
        ttl: Duration,
        seen: u64,
    ) -> bool {
        let write = match &guard {
            Guard::NoStore => return false,
            // A refresh replaces a value other instances may hold in process: announced.
            Guard::Lease(token) if policy.refresh => Write::Replace(token),
            Guard::Lease(token) => Write::Populate(token),
            Guard::Overwrite => Write::Overwrite,
            Guard::Unguarded => Write::Unguarded,
        };
        let physical_ttl = ttl + policy.options.stale.unwrap_or_default();
        let result = match encoded {
            Some(Ok(bytes)) => {
                let stored = self.store_encoded(key, &bytes, physical_ttl, write).await;
                if let (Ok(true), Some(local)) = (&stored, self.local_tier(policy, key.entity())) {
                    let fresh_until = self
                        .now_ms()
                        .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
                    self.keep_locally(local, key, bytes, fresh_until, seen);
                }
                stored
            }
            Some(Err(error)) => Err(error),
            None => {
                if let Guard::Lease(token) = &guard {
                    self.release_lease(key, token).await;
                }
                return false;
            }
        };
        if let (Err(_), Guard::Lease(token)) = (&result, &guard) {
            // Nothing was stored (too large, not encodable): let waiting processes go.
            self.release_lease(key, token).await;
        }
        let stored = matches!(result, Ok(true));
        self.note_store_result(key, result);
        stored
    }

    /// `ttl` resolved against the configured classes, with jitter.
    pub(crate) fn jittered(&self, ttl: crate::ttl::Ttl) -> Duration {
        self.inner.jitter.apply(self.inner.config.ttl.resolve(ttl))
    }

    /// Counts and logs a write of a loaded value that did not happen; it is never an error to
    /// the caller.
    pub(super) fn note_store_result(&self, key: &CacheKey, result: Result<bool, CacheError>) {
        let counters = key.entity().counters();
        match result {
            Ok(true) => {}
            Ok(false) => {
                bump(&counters.stale_sets_prevented);
                tracing::debug!(
                    key = key.as_str(),
                    "a write or invalidation happened during the load: its result is not stored"
                );
            }
            Err(CacheError::TooLarge { size, limit }) => {
                bump(&counters.oversize_skips);
                if !key.entity().oversize_logged().swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        entity = key.entity().name(),
                        size,
                        limit,
                        "value too large to cache; returned uncached (logged once per entity)"
                    );
                }
            }
            Err(error) => {
                tracing::debug!(key = key.as_str(), %error, "could not store loaded value")
            }
        }
    }
}
