//! The connection pool: N lazily connected, auto-reconnecting multiplexed connections.
//!
//! Each slot holds a redis `ConnectionManager` created lazily, so building a cache never
//! blocks or fails because Redis is down. The manager's own retry series is cut to one attempt:
//! callers are bounded by the operation timeout and the breaker decides when to try again.

use std::sync::RwLock;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

/// Round-robin pool of connections; one type whatever the topology behind it.
pub(crate) struct Pool {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    slots: Box<[RwLock<ConnectionManager>]>,
    next: AtomicUsize,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("size", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Pool {
    /// A pool of `size` connections to `url`. Must run inside a Tokio runtime.
    pub(crate) fn new(url: &str, size: usize, timeout: Duration) -> redis::RedisResult<Self> {
        let client = redis::Client::open(url)?;
        // The caller's own deadline (the operation timeout) fires first; these only stop a
        // connection attempt or a response from lingering after every caller gave up.
        let backstop = timeout.saturating_mul(2);
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(backstop))
            .set_response_timeout(Some(backstop));
        let slots = (0..size.max(1))
            .map(|_| {
                ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone())
                    .map(RwLock::new)
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            client,
            manager_config,
            slots,
            next: AtomicUsize::new(0),
        })
    }

    /// The next connection in turn, with its slot number for [`Self::replace`].
    pub(crate) fn connection(&self) -> (usize, ConnectionManager) {
        let slot = self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len();
        let manager = self.slots[slot]
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        (slot, manager)
    }

    /// Replaces the manager in `slot` with a fresh lazy one.
    ///
    /// A manager whose connection attempt failed with a non-I/O error (wrong password) keeps
    /// returning that error forever; a fresh one connects again, so fixing the credentials on
    /// the server heals the pool.
    pub(crate) fn replace(&self, slot: usize) {
        let fresh = ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        );
        match fresh {
            Ok(manager) => {
                *self.slots[slot]
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner) = manager;
            }
            Err(error) => tracing::warn!(%error, "could not recreate a Redis connection"),
        }
    }
}
