//! The layout of a Redis Cluster as an operator needs it: which masters hold keys (every
//! keyspace scan visits each), and what about the cluster does not suit a cache.

use redis::RedisResult;
use redis::aio::ConnectionLike;

use super::health::{Finding, Health, Severity};
use crate::cluster::slot::SLOTS;
use crate::cluster::table::parse_slots;

/// One master: its address and how many replicas follow it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterMaster {
    /// `host:port`.
    pub address: String,
    /// Replicas that are not failed.
    pub replicas: usize,
    /// Their `host:port` (the bus of the cache subscribes on replicas).
    pub replica_addresses: Vec<String>,
}

/// The masters of a cluster and how much of the keyspace they cover.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterLayout {
    /// Every master that owns slots.
    pub masters: Vec<ClusterMaster>,
    /// Slots no master owns: their keys cannot be read or written.
    pub uncovered_slots: usize,
}

/// The layout of the cluster `conn`'s server belongs to, or `None` for a plain Redis.
pub async fn cluster_layout<C: ConnectionLike>(conn: &mut C) -> RedisResult<Option<ClusterLayout>> {
    let info: redis::InfoDict = redis::cmd("INFO").arg("cluster").query_async(conn).await?;
    if info.get::<u8>("cluster_enabled") != Some(1) {
        return Ok(None);
    }
    let answer: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let ranges = parse_slots(&answer, "127.0.0.1").ok_or_else(|| {
        redis::RedisError::from((redis::ErrorKind::Parse, "unexpected CLUSTER SLOTS answer"))
    })?;
    let mut masters: Vec<ClusterMaster> = Vec::new();
    let mut covered = 0usize;
    for range in &ranges {
        covered += usize::from(range.last.saturating_sub(range.first)) + 1;
        match masters.iter_mut().find(|m| m.address == range.master) {
            Some(master) => {
                for replica in &range.replicas {
                    if !master.replica_addresses.contains(replica) {
                        master.replica_addresses.push(replica.clone());
                    }
                }
                master.replicas = master.replica_addresses.len();
            }
            None => masters.push(ClusterMaster {
                address: range.master.clone(),
                replicas: range.replicas.len(),
                replica_addresses: range.replicas.clone(),
            }),
        }
    }
    masters.sort_by(|a, b| a.address.cmp(&b.address));
    Ok(Some(ClusterLayout {
        masters,
        uncovered_slots: SLOTS.saturating_sub(covered),
    }))
}

/// What about the cluster as a whole does not suit a cache, from its layout, each master's
/// health, and whether it requires full coverage (`None`: not allowed to ask).
pub fn cluster_findings(
    layout: &ClusterLayout,
    masters: &[Health],
    full_coverage: Option<bool>,
) -> Vec<Finding> {
    let mut findings = Vec::new();
    if layout.uncovered_slots > 0 {
        findings.push(Finding {
            severity: Severity::Problem,
            message: format!(
                "{} slots have no master: their keys go to the source until a node takes them",
                layout.uncovered_slots
            ),
        });
    }
    for master in layout.masters.iter().filter(|m| m.replicas == 0) {
        findings.push(Finding {
            severity: Severity::Warning,
            message: format!(
                "master {} has no online replica: its loss takes its keys (and marks) with it, and invalidations on it are not confirmed",
                master.address
            ),
        });
    }
    let mut policies: Vec<&str> = masters
        .iter()
        .map(|h| h.maxmemory_policy.as_str())
        .collect();
    policies.sort_unstable();
    policies.dedup();
    if policies.len() > 1 {
        findings.push(Finding {
            severity: Severity::Warning,
            message: format!(
                "masters differ in maxmemory-policy ({}): set the same on every node",
                policies.join(", ")
            ),
        });
    }
    if full_coverage == Some(true) {
        findings.push(Finding {
            severity: Severity::Warning,
            message: "cluster-require-full-coverage is yes: while one master fails over, every master refuses every key (CLUSTERDOWN); `no` keeps the others serving (redis.conf)".to_owned(),
        });
    }
    findings
}
