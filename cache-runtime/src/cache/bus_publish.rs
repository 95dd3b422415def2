//! Sending invalidation events: applied to this instance's local tier at once, then published
//! for every other instance; an event that cannot be published is kept for replay.

use super::Cache;
use super::replay::Pending;
use crate::bus::Event;
use crate::entity::Entity;
use crate::error::CacheError;

impl Cache {
    pub(crate) async fn publish(&self, entity: &Entity, event: Event) {
        self.inner.apply_locally(&event);
        self.publish_remote(entity, event).await;
    }

    pub(crate) async fn publish_remote(&self, entity: &Entity, event: Event) {
        if self.try_publish(entity, &event).await.is_err() {
            self.inner
                .replay
                .push(Pending::Publish(entity.clone(), event));
        }
    }

    pub(crate) async fn try_publish(
        &self,
        entity: &Entity,
        event: &Event,
    ) -> Result<(), CacheError> {
        let payload = event.encode(self.inner.origin);
        let _receivers: u64 = self
            .redis(
                entity,
                redis::cmd("PUBLISH").arg(&self.inner.channel).arg(&payload),
            )
            .await?;
        Ok(())
    }
}
