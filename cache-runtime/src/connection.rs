//! The connection pool: N lazily connected multiplexed connections, each replaced when it fails.
//!
//! A slot connects on first use, so building a cache never blocks or fails because Redis is
//! down. Callers send on a clone of the slot's `MultiplexedConnection` itself, which is what
//! hand-written redis-rs code does: a `ConnectionManager` would add, per command, a boxed
//! future, a shared-future poll and two reference-count round trips on state every core
//! shares, measurably slower on the hit path (BENCHMARKS.md). What the manager does on top,
//! reconnecting, happens here: a connection that reported an I/O error, timed out or had its
//! credentials refused is replaced by a fresh slot, which the next caller connects (one
//! attempt; callers are bounded by the operation timeout and the breaker decides when to try
//! again).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use tokio::sync::OnceCell;

struct Slot {
    /// Bumped on every replacement.
    generation: u64,
    /// Connected by the first caller that needs it; a failed attempt leaves it empty for the
    /// next caller to try.
    connection: OnceCell<MultiplexedConnection>,
}

impl Slot {
    fn new(generation: u64) -> Self {
        Self {
            generation,
            connection: OnceCell::new(),
        }
    }
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
    config: AsyncConnectionConfig,
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
    /// A pool of `size` connections to `url`, none connected yet.
    pub(crate) fn new(
        url: &str,
        tls: Option<&crate::tls::TlsPem>,
        size: usize,
        timeout: Duration,
    ) -> redis::RedisResult<Self> {
        let client = crate::tls::client(url, tls)?;
        // No response timeout: every call already runs under the operation timeout, and a
        // second timer per command costs throughput. A connection whose command timed out is
        // replaced instead (see `replace`), which is what the response timeout would trigger.
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(timeout.saturating_mul(2)))
            .set_response_timeout(None);
        let slots = (0..size.max(1))
            .map(|_| ArcSwap::from_pointee(Slot::new(0)))
            .collect();
        Ok(Self {
            client,
            config,
            slots,
            replacing: Mutex::new(()),
            next: AtomicUsize::new(0),
        })
    }

    /// The next connection in turn (connecting it if needed), with a ticket for
    /// [`Self::replace`] whether or not connecting worked.
    pub(crate) async fn connection(&self) -> (Ticket, redis::RedisResult<MultiplexedConnection>) {
        match self.next_connected() {
            Ok((ticket, connection)) => (ticket, Ok(connection)),
            Err(index) => self.connect_slot(index).await,
        }
    }

    /// The next connection in turn if it is connected (no future to build: the usual case),
    /// else the index of its slot, to connect.
    pub(crate) fn next_connected(&self) -> Result<(Ticket, MultiplexedConnection), usize> {
        // One slot (the default): no turn to take, and no counter for the cores to fight over.
        let index = match self.slots.len() {
            1 => 0,
            len => self.next.fetch_add(1, Ordering::Relaxed) % len,
        };
        let slot = self.slots[index].load();
        match slot.connection.get() {
            Some(connection) => {
                let ticket = Ticket {
                    index,
                    generation: slot.generation,
                };
                Ok((ticket, connection.clone()))
            }
            None => Err(index),
        }
    }

    /// Connects slot `index` (from [`Self::next_connected`]). On the heap: connecting is rare,
    /// and its future is most of a command's.
    pub(crate) async fn connect_slot(
        &self,
        index: usize,
    ) -> (Ticket, redis::RedisResult<MultiplexedConnection>) {
        Box::pin(self.connect(index)).await
    }

    /// Connects slot `index` (or waits for the caller connecting it).
    async fn connect(&self, index: usize) -> (Ticket, redis::RedisResult<MultiplexedConnection>) {
        let slot = self.slots[index].load_full();
        let ticket = Ticket {
            index,
            generation: slot.generation,
        };
        let connected = slot
            .connection
            .get_or_try_init(|| {
                self.client
                    .get_multiplexed_async_connection_with_config(&self.config)
            })
            .await;
        (ticket, connected.cloned())
    }

    /// Replaces the connection a ticket was issued for with a fresh unconnected one, unless
    /// another caller replaced it already (so a burst of failures replaces it once).
    ///
    /// Three failures call for this: an I/O error (the connection is gone: a Redis restart, a
    /// reset), a command that timed out (the connection may be hung with no I/O error ever
    /// coming), and rejected credentials (a fresh connection heals once the server is fixed).
    pub(crate) fn replace(&self, ticket: Ticket) {
        let _replacing = self
            .replacing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.slots[ticket.index].load();
        if current.generation == ticket.generation {
            self.slots[ticket.index].store(Arc::new(Slot::new(current.generation + 1)));
        }
    }
}

/// One Redis server as the cache talks to it: its connections and its circuit breaker. A plain
/// Redis is one node; a cluster is a node per master, each failing on its own.
pub(crate) struct Node {
    /// `host:port`, as the cluster names it.
    pub(crate) address: String,
    pub(crate) pool: Pool,
    /// One connection for invalidations followed by `WAIT`: `WAIT` blocks its connection, and
    /// counts only that connection's writes, so it must carry nothing else.
    pub(crate) confirmed: Pool,
    pub(crate) breaker: crate::breaker::Breaker,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("address", &self.address)
            .field("breaker", &self.breaker.state())
            .finish_non_exhaustive()
    }
}
