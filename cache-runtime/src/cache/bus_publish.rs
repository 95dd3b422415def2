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
        let channel = match event {
            Event::Echo => &self.inner.echo_channel,
            _ => &self.inner.channel,
        };
        let mut publish = redis::cmd("PUBLISH");
        publish.arg(channel).arg(&payload);
        let _receivers: u64 = match entity {
            Some(entity) => self.redis(entity, &publish).await?,
            None => self.call((&publish).into()).await?,
        };
        Ok(())
    }

    /// Publishes this instance's echo. On a cluster through each master in turn (a broken
    /// link between nodes then shows as lag), the next one if a master does not answer: one
    /// master's death must not turn every instance's local tier off.
    pub(crate) async fn publish_echo(&self) -> Result<(), CacheError> {
        let Some(cluster) = self.inner.redis.found_cluster() else {
            return self.try_publish(None, &Event::Echo).await;
        };
        let masters = cluster.masters();
        let turn = cluster.next_echo_turn();
        let mut publish = redis::cmd("PUBLISH");
        publish
            .arg(&self.inner.echo_channel)
            .arg(Event::Echo.encode(self.inner.origin));
        let mut last = Err(CacheError::BreakerOpen);
        for offset in 0..masters.len() {
            let node = &masters[(turn + offset) % masters.len()];
            last = self
                .call_node::<u64>(None, node, (&publish).into())
                .await
                .map(drop);
            if last.is_ok() {
                break;
            }
        }
        last
    }
}
