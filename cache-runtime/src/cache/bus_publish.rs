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
        self.publish_remote(Some(entity), event).await;
    }

    pub(crate) async fn publish_remote(&self, entity: Option<&Entity>, event: Event) {
        if self.try_publish(entity, &event).await.is_err() {
            self.inner
                .replay
                .push(Pending::Publish(entity.cloned(), event));
        }
    }

    pub(crate) async fn try_publish(
        &self,
        entity: Option<&Entity>,
        event: &Event,
    ) -> Result<(), CacheError> {
        let payload = event.encode(self.inner.origin);
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(&self.inner.channel).arg(&payload);
        let _receivers: u64 = match entity {
            Some(entity) => self.redis(entity, &publish).await?,
            None => self.call((&publish).into()).await?,
        };
        Ok(())
    }
}
