//! The invalidation bus: every delete, write and invalidation is published on a channel under
//! the app prefix; every instance drops the matching entries of its local tier and raises the
//! invalidation marks it holds.
//!
//! The subscriber runs on its own connection. When that connection drops, events sent in the
//! meantime are lost, so the local tier is flushed and stays off, and marks are read from Redis
//! again, until the subscription is back.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;

/// What the subscriber needs from the cache it serves (a trait, so the bus does not depend on
/// the cache's internals).
pub(crate) trait Listener: Send + Sync + 'static {
    /// How long a connection attempt may take, as a multiple of this.
    fn operation_timeout(&self) -> Duration;
    /// The subscription started (`true`) or was lost.
    fn bus_connected(&self, connected: bool);
    /// An event arrived.
    fn apply_event(&self, payload: &str);
    /// Publishes an [`Event::Echo`] of this instance's (on a connection of the pool: a
    /// subscribed connection cannot publish).
    fn send_echo(self: Arc<Self>);
    /// The subscription's connection dropped: Redis may have restarted.
    fn subscription_lost(&self);
    /// The server to subscribe on next (on a cluster, the replicas in turn: a master's death
    /// then ends no subscription). Finds the topology first if no call has yet.
    fn subscription_client(
        self: Arc<Self>,
    ) -> impl std::future::Future<Output = Option<redis::Client>> + Send;
    /// Whether the subscription on the server at `url` should move: on a cluster, its node
    /// turned master while a replica could carry it (a master's death would end it).
    fn should_move_subscription(&self, url: &str) -> bool;
    /// The channels of the entities whose key events are wanted; with `all`, those already
    /// subscribed to as well.
    fn wanted_key_channels(&self, all: bool) -> Vec<String>;
    /// The subscription to these entities' channels is confirmed.
    fn key_channels_heard(&self, channels: &[String]);
    /// Whether `payload` is this instance's own echo.
    fn is_own_echo(&self, payload: &str) -> bool;
    /// Whether an outage is already known (a circuit breaker is not closed, and said so when
    /// it opened): what the bus suffers meanwhile is logged at DEBUG, not once more as a WARN.
    fn outage_known(&self) -> bool;
}

/// What an event tells other instances to drop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Event {
    /// One key.
    Key(String),
    /// An id's key with all its variants.
    Id(String),
    /// Every key under a prefix: an entity, or a whole version.
    Prefix(String),
    /// An entity's invalidation mark (by its key) was raised to this epoch.
    EntityMark(String, u64),
    /// A tag's invalidation mark was raised to this epoch.
    TagMark(String, u64),
    /// A subscriber's own probe of how far behind the bus it is (only its sender reads it).
    Echo,
}

impl Event {
    /// `{origin:016x} {kind} [{epoch}] {subject}`, the kind one letter (`k` key, `i` id, `p`
    /// prefix, `e` entity mark, `t` tag mark, `h` echo): small, and readable in
    /// `redis-cli SUBSCRIBE`. The `events_round_trip_and_garbage_is_ignored` test covers every kind.
    pub(crate) fn encode(&self, origin: u64) -> String {
        match self {
            Self::Key(key) => format!("{origin:016x} k {key}"),
            Self::Id(key) => format!("{origin:016x} i {key}"),
            Self::Prefix(prefix) => format!("{origin:016x} p {prefix}"),
            Self::EntityMark(key, epoch) => format!("{origin:016x} e {epoch} {key}"),
            Self::TagMark(tag, epoch) => format!("{origin:016x} t {epoch} {tag}"),
            Self::Echo => format!("{origin:016x} h -"),
        }
    }

    pub(crate) fn decode(payload: &str) -> Option<(u64, Self)> {
        let (origin, rest) = payload.split_once(' ')?;
        let (kind, subject) = rest.split_once(' ')?;
        let origin = u64::from_str_radix(origin, 16).ok()?;
        let mark = || {
            let (epoch, name) = subject.split_once(' ')?;
            Some((name.to_owned(), epoch.parse().ok()?))
        };
        let event = match kind {
            "k" => Self::Key(subject.to_owned()),
            "i" => Self::Id(subject.to_owned()),
            "p" => Self::Prefix(subject.to_owned()),
            "e" => mark().map(|(key, epoch)| Self::EntityMark(key, epoch))?,
            "t" => mark().map(|(tag, epoch)| Self::TagMark(tag, epoch))?,
            "h" => Self::Echo,
            _ => return None,
        };
        Some((origin, event))
    }
}

/// The channel of an app's invalidation events. `%` keeps it apart from every key.
pub(crate) fn channel(app: &str) -> String {
    format!("{app}:%invalidations")
}

/// The channel an instance's echoes go to: its own, so that an echo is delivered to its
/// sender only. On the app's channel, N instances would each receive the N echoes of every
/// heartbeat: N² deliveries a second.
pub(crate) fn echo_channel(app: &str, origin: u64) -> String {
    format!("{app}:%echo:{origin:016x}")
}

/// How often the subscriber checks that its connection still answers (and that its cache still
/// exists). A connection that silently stopped delivering (a host died, a network drops
/// packets without closing the socket) is noticed within this plus [`heartbeat_deadline`].
pub(crate) const HEARTBEAT_EVERY: Duration = Duration::from_secs(1);
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// How far behind the bus the subscriber may fall (its own echo not back yet) before the local
/// tier is turned off and marks are read from Redis, until it has caught up.
pub(crate) const MAX_LAG: Duration = Duration::from_secs(1);

/// How long a heartbeat `PING` may take before the subscription is taken for dead: twice the
/// operation timeout, at least 500 ms.
pub(crate) fn heartbeat_deadline(operation_timeout: Duration) -> Duration {
    operation_timeout
        .saturating_mul(2)
        .max(Duration::from_millis(500))
}

/// Why a subscription ended.
enum Ended {
    /// The cache was dropped: stop.
    CacheGone,
    /// The connection dropped or stopped answering: resubscribe.
    Lost,
}

/// Subscribes to `channels` (the app's events, the instance's own echoes) and to the key events
/// of the entities wanted (now, and whenever `wanted` wakes it), applies events, and
/// resubscribes after any disconnection, until the cache is dropped.
pub(crate) async fn subscribe<L: Listener>(
    cache: Weak<L>,
    channels: Vec<String>,
    wanted: Arc<tokio::sync::Notify>,
) {
    let mut backoff = Duration::from_millis(20);
    loop {
        let Some(timeout) = cache.upgrade().map(|c| c.operation_timeout()) else {
            return;
        };
        let Some(client) = (match cache.upgrade() {
            Some(inner) => inner.subscription_client().await,
            None => return,
        }) else {
            return;
        };
        let Some(key_channels) = cache.upgrade().map(|c| c.wanted_key_channels(true)) else {
            return;
        };
        let connected = tokio::time::timeout(timeout.saturating_mul(4), async {
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.subscribe(&channels).await?;
            if !key_channels.is_empty() {
                pubsub.subscribe(&key_channels).await?;
            }
            Ok::<_, redis::RedisError>(pubsub)
        })
        .await;
        match connected {
            Ok(Ok(pubsub)) => {
                backoff = Duration::from_millis(20);
                let Some(inner) = cache.upgrade() else { return };
                inner.key_channels_heard(&key_channels);
                inner.bus_connected(true);
                drop(inner);
                let (sink, stream) = pubsub.split();
                let url = client.get_connection_info().addr().to_string();
                let ended = listen(
                    &cache,
                    (sink, stream),
                    &wanted,
                    heartbeat_deadline(timeout),
                    &url,
                )
                .await;
                let Some(inner) = cache.upgrade() else { return };
                inner.subscription_lost();
                inner.bus_connected(false);
                if let Ended::CacheGone = ended {
                    return;
                }
            }
            Ok(Err(error)) => tracing::debug!(%error, "invalidation subscriber cannot connect"),
            Err(_) => tracing::debug!("invalidation subscriber: connection attempt timed out"),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Applies events as they come. Every [`HEARTBEAT_EVERY`] it sends a `PING` on the
/// subscription's own connection (unanswered in time: the subscription is lost) and publishes
/// an echo of its own: an echo not back within [`MAX_LAG`] means events wait in line longer than
/// that, so the instance serves nothing from events it has not applied yet (local tier off,
/// marks read from Redis) until the echo comes back.
async fn listen<L: Listener>(
    cache: &Weak<L>,
    (mut sink, mut messages): (redis::aio::PubSubSink, redis::aio::PubSubStream),
    wanted: &tokio::sync::Notify,
    deadline: Duration,
    address: &str,
) -> Ended {
    let mut heartbeat = tokio::time::interval(HEARTBEAT_EVERY);
    heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    heartbeat.tick().await;
    let mut echo_sent: Option<Instant> = None;
    let mut lagging = false;
    loop {
        tokio::select! {
            message = messages.next() => {
                let Some(message) = message else { return Ended::Lost };
                let Some(inner) = cache.upgrade() else { return Ended::CacheGone };
                let Ok(payload) = message.get_payload::<String>() else { continue };
                if !inner.is_own_echo(&payload) {
                    inner.apply_event(&payload);
                    continue;
                }
                echo_sent = None;
                if lagging {
                    lagging = false;
                    tracing::info!("invalidation events caught up: local tier back on");
                    inner.bus_connected(true);
                }
            }
            () = wanted.notified() => {
                let Some(inner) = cache.upgrade() else { return Ended::CacheGone };
                let channels = inner.wanted_key_channels(false);
                if channels.is_empty() {
                    continue;
                }
                let subscribed = tokio::time::timeout(deadline, sink.subscribe(&channels)).await;
                if !matches!(subscribed, Ok(Ok(()))) {
                    tracing::warn!("invalidation subscriber: could not subscribe to an entity's key events, reconnecting");
                    return Ended::Lost;
                }
                inner.key_channels_heard(&channels);
            }
            _ = heartbeat.tick() => {
                let Some(inner) = cache.upgrade() else { return Ended::CacheGone };
                // Any reply proves the connection alive: on a subscribed RESP2 connection PONG comes as
                // `["pong", ""]`, not a string.
                let answered = tokio::time::timeout(deadline, sink.ping::<redis::Value>()).await;
                if !matches!(answered, Ok(Ok(_))) {
                    tracing::warn!("invalidation subscriber: heartbeat unanswered, reconnecting");
                    return Ended::Lost;
                }
                if inner.should_move_subscription(address) {
                    tracing::info!(address, "invalidation subscriber: its node became a master, moving to a replica");
                    return Ended::Lost;
                }
                match echo_sent {
                    None => {
                        echo_sent = Some(Instant::now());
                        inner.send_echo();
                    }
                    Some(sent) => {
                        if !lagging && sent.elapsed() > MAX_LAG {
                            lagging = true;
                            let behind_ms = sent.elapsed().as_millis();
                            let message = "invalidation events arrive late: local tier off and marks read from Redis until they catch up";
                            match inner.outage_known() {
                                // The echo could not even be sent: the outage, not lateness.
                                true => tracing::debug!(behind_ms, "{message}"),
                                false => tracing::warn!(behind_ms, "{message}"),
                            }
                            inner.bus_connected(false);
                        }
                        // The echo may never have gone out (its publish failed while Redis
                        // stalled or the breaker was open): one more each heartbeat, or the
                        // tier would stay off for good.
                        if lagging {
                            inner.send_echo();
                        }
                    }
                }
            }
        }
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
            Event::EntityMark("shop:v1:product:%mark".to_owned(), 1_700_000_000_000_001),
            Event::TagMark("category: 7".to_owned(), 42),
            Event::Echo,
        ] {
            let encoded = event.encode(0xabc);
            assert_eq!(Event::decode(&encoded), Some((0xabc, event)));
        }
        assert_eq!(Event::decode("nonsense"), None);
        assert_eq!(Event::decode("zz k key"), None);
        assert_eq!(Event::decode("0000000000000001 x key"), None);
        assert_eq!(Event::decode("0000000000000001 e nan key"), None);
    }
}
