//! The in-process tier step of a read.

use std::sync::Arc;

use crate::cache::loaded::Loaded;
use crate::cache::policy::Policy;
use crate::cache::storage::Lookup;
use crate::cache::{Cache, key_events};
use crate::entity::{CacheKey, Entity};
use crate::envelope::Header;
use crate::local::LocalTier;
use crate::metrics::bump;

impl Cache {
    /// The local tier, if `policy` uses it and this instance hears `entity`'s key events.
    pub(crate) fn local_tier(&self, policy: &Policy<'_>, entity: &Entity) -> Option<&LocalTier> {
        self.inner
            .local
            .as_ref()
            .filter(|_| self.wants_local(policy) && key_events::hears(entity))
    }

    /// Whether `policy` uses the local tier (one is configured).
    pub(crate) fn wants_local(&self, policy: &Policy<'_>) -> bool {
        self.inner.local.is_some() && (policy.options.local || self.inner.config.local_tier_for_all)
    }

    /// Keeps `bytes` (checked, or written here) under `key` in the local tier until
    /// `fresh_until_ms`, unless a removal started since `seen` (see [`LocalTier::insert`]).
    pub(crate) fn keep_locally(
        &self,
        local: &LocalTier,
        key: &CacheKey,
        bytes: Vec<u8>,
        fresh_until_ms: u64,
        seen: u64,
    ) {
        let now_ms = self.now_ms();
        local.insert(key.as_str(), Arc::from(bytes), fresh_until_ms, seen, now_ms);
    }

    /// A fresh, still valid value from the in-process tier (never during a forced refresh).
    pub(crate) fn local_hit<L: Loaded>(
        &self,
        local: &LocalTier,
        key: &CacheKey,
        policy: &Policy<'_>,
    ) -> Option<L> {
        if policy.refresh {
            return None;
        }
        let (id, variant) = key.id_and_variant();
        let bytes = local.get_member(id, variant, self.now_ms())?;
        // Checked when it came from Redis, or written by this process.
        let envelope = Header::unwrap_verified(&bytes).ok()?;
        if !self.still_valid_locally(key.entity(), &envelope.header, envelope.tags) {
            local.remove(key.as_str());
            return None;
        }
        let loaded = match self.decode_envelope::<L::Value>(&envelope) {
            Ok(Lookup::Hit(value, _)) => L::from_value(value),
            Ok(Lookup::Absent(_)) => L::absent().filter(|_| policy.negative_ttl.is_some())?,
            Ok(Lookup::Miss) | Err(_) => return None,
        };
        let counters = key.entity().counters();
        bump(&counters.local_hits);
        Some(loaded)
    }
}
