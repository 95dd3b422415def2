//! The invalidation bus: every delete, write and invalidation is published on a channel under
//! the app prefix; every instance drops the matching entries of its local tier.
//!
//! The subscriber runs on its own connection. When that connection drops, events sent in the
//! meantime are lost, so the local tier is flushed and stays off until the subscription is back.

use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;

use crate::cache::Inner;

/// What an event tells other instances to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// One key.
    Key(String),
    /// An id's key with all its variants.
    Id(String),
    /// Every key under a prefix: an entity, or a whole version.
    Prefix(String),
    /// Several keys (those of a tag); keys never contain a newline, so it separates them.
    Keys(Vec<String>),
}

impl Event {
    /// `{origin:016x} {k|i|p} {subject}`: small, and readable in `redis-cli SUBSCRIBE`.
    pub(crate) fn encode(&self, origin: u64) -> String {
        match self {
            Self::Key(key) => format!("{origin:016x} k {key}"),
            Self::Id(key) => format!("{origin:016x} i {key}"),
            Self::Prefix(prefix) => format!("{origin:016x} p {prefix}"),
            Self::Keys(keys) => format!("{origin:016x} m {}", keys.join("\n")),
        }
    }

    pub(crate) fn decode(payload: &str) -> Option<(u64, Self)> {
        let (origin, rest) = payload.split_once(' ')?;
        let (kind, subject) = rest.split_once(' ')?;
        let origin = u64::from_str_radix(origin, 16).ok()?;
        let subject = subject.to_owned();
        let event = match kind {
            "k" => Self::Key(subject),
            "i" => Self::Id(subject),
            "p" => Self::Prefix(subject),
            "m" => Self::Keys(subject.split('\n').map(str::to_owned).collect()),
            _ => return None,
        };
        Some((origin, event))
    }
}

/// The channel of an app's invalidation events. `%` keeps it apart from every key.
pub(crate) fn channel(app: &str) -> String {
    format!("{app}:%invalidations")
}

/// How often an idle subscriber checks whether its cache still exists.
const LIVENESS_CHECK: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Subscribes, applies events to the local tier, and resubscribes after any disconnection,
/// until the cache is dropped.
pub(crate) async fn subscribe(cache: Weak<Inner>, client: redis::Client, channel: String) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let Some(timeout) = cache.upgrade().map(|c| c.operation_timeout()) else {
            return;
        };
        let connected = tokio::time::timeout(timeout.saturating_mul(4), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channel).await?;
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(20);
                let Some(inner) = cache.upgrade() else { return };
                inner.bus_connected(true);
                drop(inner);
                let mut messages = pubsub.into_on_message();
                loop {
                    match tokio::time::timeout(LIVENESS_CHECK, messages.next()).await {
                        Ok(Some(message)) => {
                            let Some(inner) = cache.upgrade() else { return };
                            if let Ok(payload) = message.get_payload::<String>() {
                                inner.apply_event(&payload);
                            }
                        }
                        // The connection dropped.
                        Ok(None) => break,
                        Err(_) if cache.strong_count() == 0 => return,
                        Err(_) => {}
                    }
                }
                let Some(inner) = cache.upgrade() else { return };
                inner.bus_connected(false);
            }
            Ok(Err(error)) => tracing::debug!(%error, "invalidation subscriber cannot connect"),
            Err(_) => tracing::debug!("invalidation subscriber: connection attempt timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_round_trip_and_garbage_is_ignored() {
        for event in [
            Event::Key("shop:v1:product:4 2".to_owned()),
            Event::Id("shop:v1:product:42".to_owned()),
            Event::Prefix("shop:v1:product:".to_owned()),
            Event::Keys(vec!["shop:v1:a:1".to_owned(), "shop:v1:b:2:p1".to_owned()]),
        ] {
            let encoded = event.encode(0xabc);
            assert_eq!(Event::decode(&encoded), Some((0xabc, event)));
        }
        assert_eq!(Event::decode("nonsense"), None);
        assert_eq!(Event::decode("zz k key"), None);
        assert_eq!(Event::decode("0000000000000001 x key"), None);
    }
}
