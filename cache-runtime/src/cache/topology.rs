//! What `redis_url` names, found at the first call: one Redis, or a Redis Cluster reached
//! through its seeds. Until a call has found out, every call asks (one at a time).

use std::sync::Arc;

use super::Cache;
use crate::breaker::BreakerState;
use crate::cluster::{Cluster, NodeSettings, is_not_cluster, seed_urls};
use crate::config::{CacheConfig, RedisMode};
use crate::connection::Node;
use crate::error::CacheError;
use crate::key::app_mark_key;

/// The servers behind the cache.
#[derive(Debug)]
pub(crate) struct Redis {
    /// The first seed: the one server in node mode, where the topology is asked for.
    pub(crate) seed: Arc<Node>,
    /// Every master, once the seed turned out to be a cluster node (absent in node mode).
    pub(crate) cluster: Option<Cluster>,
    found: tokio::sync::OnceCell<Topology>,
}

/// What the first call found.
#[derive(Debug)]
pub(crate) enum Topology {
    Node,
    Cluster,
    /// The configuration does not match the server: every call fails with this.
    Refused(String),
}

impl Redis {
    pub(crate) fn new(
        config: &CacheConfig,
        clock: Arc<dyn crate::clock::Clock>,
    ) -> redis::RedisResult<Self> {
        let seeds = seed_urls(&config.redis_url);
        let settings = NodeSettings {
            pool_size: config.pool_size,
            timeout: config.operation_timeout,
            breaker_threshold: config.breaker_threshold,
            breaker_cooldown: config.breaker_cooldown,
            clock,
            tls: config.tls.clone(),
        };
        let first = seeds
            .first()
            .map_or(config.redis_url.as_str(), String::as_str);
        let seed = Arc::new(settings.node(first, first.to_owned())?);
        let cluster = match config.redis_mode {
            RedisMode::Node => None,
            RedisMode::Auto | RedisMode::Cluster => Some(Cluster::new(
                &seeds,
                settings,
                &app_mark_key(&config.app_prefix),
            )?),
        };
        Ok(Self {
            seed,
            cluster,
            found: tokio::sync::OnceCell::new(),
        })
    }

    /// What the first call found, if one did.
    #[inline]
    pub(crate) fn topology(&self) -> Option<&Topology> {
        self.found.get()
    }

    /// The cluster, once found.
    pub(crate) fn found_cluster(&self) -> Option<&Cluster> {
        match self.topology() {
            Some(Topology::Cluster) => self.cluster.as_ref(),
            _ => None,
        }
    }

    /// The nodes that hold keys: the seed, or every master.
    pub(crate) fn masters(&self) -> Vec<Arc<Node>> {
        match self.found_cluster() {
            Some(cluster) => cluster.masters(),
            None => vec![self.seed.clone()],
        }
    }

    /// The worst breaker state of the nodes keys live on.
    pub(crate) fn breaker_state(&self) -> BreakerState {
        let rank = |state: &BreakerState| match state {
            BreakerState::Closed => 0,
            BreakerState::HalfOpen => 1,
            BreakerState::Open => 2,
        };
        self.masters()
            .iter()
            .map(|node| node.breaker.state())
            .max_by_key(rank)
            .unwrap_or(BreakerState::Closed)
    }

    /// State changes of every breaker (the seed's, and every cluster node's).
    pub(crate) fn breaker_transitions(&self) -> u64 {
        let cluster = self.found_cluster().map_or(0, |c| {
            c.masters().iter().map(|n| n.breaker.transitions()).sum()
        });
        self.seed.breaker.transitions() + cluster
    }

    /// Lets every open breaker probe at once (invalidations wait for replay).
    pub(crate) fn expedite(&self) {
        self.seed.breaker.expedite();
        for node in self.masters() {
            node.breaker.expedite();
        }
    }

    /// The URL the bus subscribes on next.
    pub(crate) fn subscription_url(&self, config: &CacheConfig) -> String {
        match self.found_cluster() {
            Some(cluster) => cluster.subscription_url(),
            None => seed_urls(&config.redis_url)
                .into_iter()
                .next()
                .unwrap_or_else(|| config.redis_url.clone()),
        }
    }
}

impl Cache {
    /// The nodes that hold keys (the one Redis, or every master), the topology found first if
    /// no call has yet: what a `SCAN` of the whole keyspace visits.
    pub(crate) async fn key_nodes(&self) -> Result<Vec<Arc<Node>>, CacheError> {
        self.topology().await?;
        Ok(self.inner.redis.masters())
    }

    /// The topology, found now if no call has yet.
    pub(crate) async fn topology(&self) -> Result<&Topology, CacheError> {
        let redis = &self.inner.redis;
        if let Some(found) = redis.found.get() {
            return Ok(found);
        }
        // While Redis is known down, fail without queueing for the finding.
        if redis.seed.breaker.refuses() {
            return Err(CacheError::BreakerOpen);
        }
        redis.found.get_or_try_init(|| self.find_topology()).await
    }

    async fn find_topology(&self) -> Result<Topology, CacheError> {
        let redis = &self.inner.redis;
        let config = &self.inner.config;
        let seeds = seed_urls(&config.redis_url).len();
        let mode = config.redis_mode;
        if mode == RedisMode::Node || (mode == RedisMode::Auto && seeds == 1) {
            let mut info = redis::cmd("INFO");
            info.arg("cluster");
            let enabled = match self
                .call_node::<String>(None, &redis.seed, (&info).into())
                .await
            {
                Ok(info) => info.contains("cluster_enabled:1"),
                // `INFO` not granted: only a plain Redis can be assumed.
                Err(error) if !error.is_connection_class() => false,
                Err(error) => return Err(error),
            };
            match (enabled, mode) {
                (false, _) => return Ok(Topology::Node),
                (true, RedisMode::Node) => {
                    return Ok(refused(format!(
                        "{} is a Redis Cluster node but CACHE_REDIS_MODE (redis_mode) is `node`: set it to `cluster` or `auto`",
                        config.redacted_redis_url()
                    )));
                }
                (true, _) => {}
            }
        }
        let Some(cluster) = &redis.cluster else {
            return Ok(Topology::Node);
        };
        // The discovery counts against the first seed's breaker: with no seed answering, the
        // cache behaves as with a Redis that is down.
        let seed = &redis.seed;
        let Some(permit) = seed.breaker.permit() else {
            return Err(CacheError::BreakerOpen);
        };
        // Bounded: seeds that do not answer (dropped packets) must not hold the first call,
        // and every call queued behind it, for a timeout per seed.
        let limit = config.operation_timeout.saturating_mul(4);
        let found = tokio::time::timeout(limit, cluster.refresh(cluster.generation()))
            .await
            .unwrap_or_else(|_| {
                Err(redis::RedisError::from((
                    redis::ErrorKind::Io,
                    "no cluster seed answered in time",
                )))
            });
        match found {
            Ok(()) => {
                seed.breaker.record(permit, Ok(()));
                tracing::info!(masters = cluster.masters().len(), "Redis Cluster found");
                Ok(Topology::Cluster)
            }
            Err(error) if is_not_cluster(&error) => {
                seed.breaker.record(permit, Ok(()));
                Ok(refused(format!(
                    "{} is a plain Redis, not a cluster node, but CACHE_REDIS_MODE (redis_mode) is `cluster` or several seeds are given: use one URL and mode `node` or `auto`",
                    config.redacted_redis_url()
                )))
            }
            Err(error) => {
                let error = CacheError::from_redis(error);
                seed.breaker
                    .record(permit, Err(&error as &dyn std::fmt::Display));
                Err(error)
            }
        }
    }
}

fn refused(why: String) -> Topology {
    tracing::error!("{why}");
    Topology::Refused(why)
}
