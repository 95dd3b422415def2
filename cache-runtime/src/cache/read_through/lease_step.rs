//! Across processes: one loader per key through a lease in Redis.

use std::sync::Arc;

use super::{Fallback, Guard, Leased, Member};
use crate::cache::Cache;
use crate::cache::lease::Lease;
use crate::cache::loaded::Loaded;
use crate::cache::policy::Policy;
use crate::cache::validity::Stamp;
use crate::entity::CacheKey;
use crate::flight::{Leader, Outcome};
use crate::metrics::bump;

impl Cache {
    /// Across processes: one loader per key through a lease in Redis. Never stores without a
    /// guard: if the lease cannot be had, the value is loaded and not stored.
    pub(super) async fn lease<L: Loaded>(
        &self,
        key: &CacheKey,
        policy: &Policy<'_>,
        stamp: &Stamp<'_>,
        leader: &mut Option<Leader<'_>>,
        fallback: &mut Option<Fallback<L>>,
        member: Option<&Member<'_>>,
    ) -> Leased<L> {
        if policy.refresh {
            return Leased::Load(match policy.lease {
                Some(token) => Guard::Lease(token.to_owned()),
                // A forced refresh takes the lease over, whoever holds it: its store must be
                // refused like any other if an invalidation comes in while it loads.
                None if self.inner.config.lease_ttl.is_some() => {
                    match Member::throttled(member, self.seize_lease(key, stamp)).await {
                        Lease::Acquired(token) => Guard::Lease(token),
                        Lease::HeldElsewhere | Lease::Unavailable => Guard::NoStore,
                    }
                }
                None => Guard::Overwrite,
            });
        }
        if self.inner.config.lease_ttl.is_none() {
            return Leased::Load(Guard::Unguarded);
        }
        let counters = key.entity().counters();
        for _ in 0..2 {
            match Member::throttled(member, self.acquire_lease(key, stamp)).await {
                Lease::Acquired(token) => return Leased::Load(Guard::Lease(token)),
                Lease::Unavailable => return Leased::Load(Guard::NoStore),
                Lease::HeldElsewhere => {
                    // Another process is refreshing: serve the old value rather than wait.
                    if let Some(fallback) = fallback.take() {
                        if let Some(leader) = leader.take() {
                            leader.finish(Outcome::Failed);
                        }
                        return Leased::Served(fallback.serve(counters, false));
                    }
                    let leased = Member::waits(member, self.leased_value::<L>(key, leader));
                    if let Some(value) = leased.await {
                        bump(&counters.coalesced);
                        return Leased::Served(value);
                    }
                    // The holder ended without a valid value: try to take the lease ourselves.
                }
            }
        }
        Leased::Load(Guard::NoStore)
    }

    /// The value another process's lease holder stored, if it is valid; handed to this
    /// process's waiting callers too.
    pub(super) async fn leased_value<L: Loaded>(
        &self,
        key: &CacheKey,
        leader: &mut Option<Leader<'_>>,
    ) -> Option<L> {
        let found = self.await_leased_value(key).await?;
        if !self.is_valid(key, &found).await.unwrap_or(false) {
            return None;
        }
        let outcome = Outcome::Value(Arc::from(found.bytes?));
        let loaded = self.shared::<L>(outcome.clone())?;
        if let Some(leader) = leader.take() {
            leader.finish(outcome);
        }
        Some(loaded)
    }
}
