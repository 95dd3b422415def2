//! Redis Cluster: the cache's own slot table over a node per master, each with its pool and
//! circuit breaker, so the hit path computes the slot and sends on that master's multiplexed
//! connection, as on a single Redis. Reads go to masters only: a lagging replica would serve
//! what was just invalidated.

pub(crate) mod route;
pub(crate) mod slot;
pub(crate) mod table;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;

use crate::breaker::{Breaker, BreakerState};
use crate::clock::Clock;
use crate::connection::{Node, Pool};
use table::{SlotTable, parse_slots};

/// How often the slot table is read again while every master answers.
pub(crate) const REFRESH_EVERY: Duration = Duration::from_secs(5);
/// How often while a master is unreachable or a slot uncovered: a promoted replica gets its
/// slots, and a fresh breaker, within this.
pub(crate) const REFRESH_WHILE_DEGRADED: Duration = Duration::from_millis(250);

/// The seeds of a `redis_url`: comma-separated, each a URL or a bare `host:port` that takes
/// the first URL's scheme and credentials.
pub(crate) fn seed_urls(url: &str) -> Vec<String> {
    let mut parts = url.split(',').map(str::trim).filter(|p| !p.is_empty());
    let Some(first) = parts.next() else {
        return vec![url.to_owned()];
    };
    let mut seeds = vec![first.to_owned()];
    for part in parts {
        if part.contains("://") {
            seeds.push(part.to_owned());
        } else if let Ok(mut template) = url::Url::parse(first) {
            let (host, port) = part.rsplit_once(':').unwrap_or((part, "6379"));
            let port = port.parse().ok();
            if template.set_host(Some(host)).is_ok() && template.set_port(port).is_ok() {
                seeds.push(template.to_string());
            }
        }
    }
    seeds
}

/// How a node of the cluster is built (the pool and breaker settings every node shares).
pub(crate) struct NodeSettings {
    pub(crate) pool_size: usize,
    pub(crate) timeout: Duration,
    pub(crate) breaker_threshold: u32,
    pub(crate) breaker_cooldown: Duration,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) tls: Option<Arc<crate::tls::TlsPem>>,
}

impl NodeSettings {
    /// A node at `url` known as `address`.
    pub(crate) fn node(&self, url: &str, address: String) -> redis::RedisResult<Node> {
        Ok(Node {
            address,
            pool: Pool::new(url, self.tls.as_deref(), self.pool_size, self.timeout)?,
            confirmed: Pool::new(url, self.tls.as_deref(), 1, self.timeout)?,
            breaker: Breaker::new(
                self.breaker_threshold,
                self.breaker_cooldown,
                self.clock.clone(),
            ),
        })
    }
}

/// The cluster as this instance knows it.
pub(crate) struct Cluster {
    /// The configured seeds' `host:port`, tried when no known master answers.
    seeds: Vec<String>,
    /// The first seed's URL: scheme and credentials for every node.
    template: url::Url,
    settings: NodeSettings,
    table: ArcSwap<SlotTable>,
    /// Every node met so far, by `host:port`: a master that comes back keeps its breaker.
    nodes: Mutex<HashMap<String, Arc<Node>>>,
    /// One refresh at a time; its generation tells waiters a refresh happened meanwhile.
    refreshing: tokio::sync::Mutex<()>,
    generation: AtomicU64,
    /// The slot keyless commands go to when nothing else decides: the app mark's, whose node
    /// also answers the fence's `INFO`.
    home: u16,
    /// Which replica the bus subscribes on next.
    bus_turn: AtomicUsize,
    /// Which master the next echo goes through.
    echo_turn: AtomicUsize,
    /// A refresh asked for by a redirection is under way.
    refresh_claimed: AtomicBool,
}

impl std::fmt::Debug for Cluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cluster")
            .field("seeds", &self.seeds)
            .field("masters", &self.table.load().masters())
            .finish_non_exhaustive()
    }
}

impl Cluster {
    /// A cluster reached through `seeds` (URLs), its table empty until [`Self::refresh`].
    pub(crate) fn new(
        seeds: &[String],
        settings: NodeSettings,
        home_key: &str,
    ) -> redis::RedisResult<Self> {
        let template = seeds
            .first()
            .and_then(|s| url::Url::parse(s).ok())
            .ok_or_else(|| {
                redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no seed URL"))
            })?;
        let seeds = seeds
            .iter()
            .filter_map(|s| url::Url::parse(s).ok())
            .filter_map(|u| Some(format!("{}:{}", u.host_str()?, u.port().unwrap_or(6379))))
            .collect();
        Ok(Self {
            seeds,
            template,
            settings,
            table: ArcSwap::from_pointee(SlotTable::empty()),
            nodes: Mutex::new(HashMap::new()),
            refreshing: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
            home: slot::slot(home_key.as_bytes()),
            bus_turn: AtomicUsize::new(0),
            echo_turn: AtomicUsize::new(0),
            refresh_claimed: AtomicBool::new(false),
        })
    }

    /// The URL of the node at `address`: the first seed's with another host and port.
    pub(crate) fn url_of(&self, address: &str) -> String {
        let mut url = self.template.clone();
        if let Some((host, port)) = address.rsplit_once(':') {
            let _ = url.set_host(Some(host.trim_start_matches('[').trim_end_matches(']')));
            let _ = url.set_port(port.parse().ok());
        }
        url.to_string()
    }

    /// The node at `address`, made on first sight.
    pub(crate) fn node(&self, address: &str) -> Option<Arc<Node>> {
        let mut nodes = self
            .nodes
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(node) = nodes.get(address) {
            return Some(node.clone());
        }
        let node = Arc::new(
            self.settings
                .node(&self.url_of(address), address.to_owned())
                .ok()?,
        );
        nodes.insert(address.to_owned(), node.clone());
        Some(node)
    }

    /// The master that owns `slot` now.
    #[inline]
    pub(crate) fn master(&self, slot: u16) -> Option<Arc<Node>> {
        self.table.load().master(slot).cloned()
    }

    /// How many replicas the master of `slot` has (`CLUSTER SLOTS` lists those not failed).
    pub(crate) fn replicas_of(&self, slot: u16) -> usize {
        self.table.load().replicas_of(slot)
    }

    /// The home slot.
    pub(crate) fn home_slot(&self) -> u16 {
        self.home
    }

    /// Every master, in the table's order.
    pub(crate) fn masters(&self) -> Vec<Arc<Node>> {
        self.table.load().masters().to_vec()
    }

    /// The table's generation: bumped by every refresh.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the table should be read again soon: a slot is uncovered or a master's breaker
    /// is not closed (its replica may have taken over).
    pub(crate) fn degraded(&self) -> bool {
        let table = self.table.load();
        table.masters().is_empty()
            || table.uncovered() > 0
            || table
                .masters()
                .iter()
                .any(|m| m.breaker.state() != BreakerState::Closed)
    }

    /// Where the bus subscribes next: the replicas in turn (a master's death ends no
    /// subscription on a replica), else a master, else the first seed.
    pub(crate) fn subscription_url(&self) -> String {
        let table = self.table.load();
        let turn = self.bus_turn.fetch_add(1, Ordering::Relaxed);
        let address = match (table.replicas(), table.masters()) {
            ([], []) => self.seeds.first().cloned(),
            ([], masters) => Some(masters[turn % masters.len()].address.clone()),
            (replicas, _) => Some(replicas[turn % replicas.len()].clone()),
        };
        address.map_or_else(|| self.template.to_string(), |a| self.url_of(&a))
    }

    /// Whether the node at `address` is a master now while some replica exists: a subscription
    /// there should move.
    pub(crate) fn is_master_with_replicas_elsewhere(&self, address: &str) -> bool {
        let table = self.table.load();
        !table.replicas().is_empty() && table.masters().iter().any(|m| m.address == address)
    }

    /// Claims the one refresh a redirection may start; `false` if one is under way.
    pub(crate) fn claim_refresh(&self) -> bool {
        !self.refresh_claimed.swap(true, Ordering::AcqRel)
    }

    pub(crate) fn release_refresh(&self) {
        self.refresh_claimed.store(false, Ordering::Release);
    }

    /// Which master the next echo goes through (an ever-growing turn).
    pub(crate) fn next_echo_turn(&self) -> usize {
        self.echo_turn.fetch_add(1, Ordering::Relaxed)
    }

    /// Reads the slot table again, from a known master or else a seed, unless a refresh
    /// finished after the caller saw generation `seen`. An error if no node answered.
    pub(crate) async fn refresh(&self, seen: u64) -> redis::RedisResult<()> {
        let _one_at_a_time = self.refreshing.lock().await;
        if self.generation() != seen {
            return Ok(());
        }
        let mut candidates: Vec<String> =
            self.masters().iter().map(|m| m.address.clone()).collect();
        candidates.extend(self.seeds.iter().cloned());
        candidates.dedup();
        let mut last_error = None;
        for address in candidates {
            let Some(node) = self.node(&address) else {
                continue;
            };
            match self.read_slots(&node).await {
                Ok(ranges) => {
                    let table = SlotTable::new(&ranges, |master| {
                        self.node(master).unwrap_or_else(|| node.clone())
                    });
                    self.table.store(Arc::new(table));
                    self.generation.fetch_add(1, Ordering::AcqRel);
                    return Ok(());
                }
                // Not a cluster node: no other seed will say otherwise.
                Err(error) if is_not_cluster(&error) => return Err(error),
                Err(error) => last_error = Some(error),
            }
        }
        Err(last_error.unwrap_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Io, "no cluster node answered"))
        }))
    }

    async fn read_slots(&self, node: &Node) -> redis::RedisResult<Vec<table::Range>> {
        let attempt = async {
            let (ticket, conn) = node.pool.connection().await;
            let mut conn = conn?;
            let answer = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query_async::<redis::Value>(&mut conn)
                .await;
            if answer.as_ref().is_err_and(|e| e.is_io_error()) {
                node.pool.replace(ticket);
            }
            answer
        };
        let answer = tokio::time::timeout(self.settings.timeout.saturating_mul(2), attempt)
            .await
            .map_err(|_| {
                redis::RedisError::from((redis::ErrorKind::Io, "CLUSTER SLOTS timed out"))
            })??;
        let host = node
            .address
            .rsplit_once(':')
            .map_or("127.0.0.1", |(h, _)| h);
        let ranges = parse_slots(&answer, host).ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::Parse, "unexpected CLUSTER SLOTS answer"))
        })?;
        if ranges.is_empty() {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the cluster has no slots assigned yet",
            )));
        }
        Ok(ranges)
    }
}

/// The server has cluster support disabled: a plain Redis.
pub(crate) fn is_not_cluster(error: &redis::RedisError) -> bool {
    error.to_string().contains("cluster support disabled")
}

#[cfg(test)]
mod tests {
    use super::seed_urls;

    #[test]
    fn seeds_are_urls_or_host_ports_after_the_first() {
        assert_eq!(seed_urls("redis://h:1"), vec!["redis://h:1"]);
        assert_eq!(
            seed_urls("redis://:pw@h:1, redis://h:2,h3:3"),
            vec!["redis://:pw@h:1", "redis://h:2", "redis://:pw@h3:3"]
        );
    }
}
