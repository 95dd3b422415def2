//! Sending an invalidation event to the other instances on its own (most events travel in the
//! same pipeline as the write or removal they announce).

use super::Cache;
use crate::bus::Event;
use crate::entity::Entity;
use crate::error::CacheError;

impl Cache {
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
