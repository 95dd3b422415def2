//! The connection pool: N lazily connected, auto-reconnecting multiplexed connections.
//!
//! Each slot holds a redis `ConnectionManager` created lazily, so building a cache never
//! blocks or fails because Redis is down. The manager's own retry series is cut to one attempt:
//! callers are bounded by the operation timeout and the breaker decides when to try again.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

struct Slot {
    /// Bumped on every replacement.
    generation: u64,
    manager: ConnectionManager,
}

/// Which connection a caller got, and which incarnation of it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ticket {
    index: usize,
    generation: u64,
}

/// Round-robin pool of connections; one type whatever the topology behind it.
pub(crate) struct Pool {
    client: redis::Client,
    manager_config: ConnectionManagerConfig,
    /// Read on every call without a lock (arc-swap); replaced rarely, under `replacing`.
    slots: Box<[ArcSwap<Slot>]>,
    replacing: Mutex<()>,
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
        // No response timeout: every call already runs under the operation timeout, and a
        // second timer per command costs throughput. A connection whose command timed out is
        // replaced instead (see `replace`), which is what the response timeout would trigger.
        let manager_config = ConnectionManagerConfig::new()
            .set_number_of_retries(0)
            .set_connection_timeout(Some(timeout.saturating_mul(2)))
            .set_response_timeout(None);
        let slots = (0..size.max(1))
            .map(|_| {
                ConnectionManager::new_lazy_with_config(client.clone(), manager_config.clone()).map(
                    |manager| {
                        ArcSwap::from_pointee(Slot {
                            generation: 0,
                            manager,
                        })
                    },
                )
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            client,
            manager_config,
            slots,
            replacing: Mutex::new(()),
            next: AtomicUsize::new(0),
        })
    }

    /// The next connection in turn, with a ticket for [`Self::replace`].
    pub(crate) fn connection(&self) -> (Ticket, ConnectionManager) {
        // One slot (the default): no turn to take, and no counter for the cores to fight over.
        let index = match self.slots.len() {
            1 => 0,
            len => self.next.fetch_add(1, Ordering::Relaxed) % len,
        };
        let slot = self.slots[index].load();
        let ticket = Ticket {
            index,
            generation: slot.generation,
        };
        (ticket, slot.manager.clone())
    }

    /// Replaces the connection a ticket was issued for with a fresh lazy one, unless another
    /// caller replaced it already (so a burst of failures replaces it once).
    ///
    /// Two failures call for this: a command that timed out (the connection may be hung with
    /// no I/O error ever coming), and rejected credentials (a manager whose connection attempt
    /// failed that way repeats the error forever; a fresh one heals once the server is fixed).
    pub(crate) fn replace(&self, ticket: Ticket) {
        let _replacing = self
            .replacing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.slots[ticket.index].load();
        if current.generation != ticket.generation {
            return;
        }
        match ConnectionManager::new_lazy_with_config(
            self.client.clone(),
            self.manager_config.clone(),
        ) {
            Ok(manager) => {
                self.slots[ticket.index].store(Arc::new(Slot {
                    generation: current.generation + 1,
                    manager,
                }));
            }
            Err(error) => tracing::warn!(%error, "could not recreate a Redis connection"),
        }
    }
}
