//! Sending invalidation events: applied to this instance's local tier at once, then published
//! for every other instance.

use super::Cache;
use crate::bus::Event;
use crate::entity::Entity;
use crate::error::CacheError;

impl Cache {
    pub(crate) async fn publish(&self, entity: &Entity, event: Event) {
        self.inner.apply_locally(&event);
        let payload = event.encode(self.inner.origin);
        let sent: Result<u64, CacheError> = self
            .redis(
                entity,
                redis::cmd("PUBLISH").arg(&self.inner.channel).arg(&payload),
            )
            .await;
        if let Err(error) = sent {
            tracing::warn!(%error, ?event, "could not publish an invalidation event");
        }
    }
}
