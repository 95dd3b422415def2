//! Read-only inspection of a live Redis for operators: server health, keys and memory per
//! namespace, TTL distribution, and what one stored key holds and whether it would be served.
//!
//! `cachectl` is a thin command line over this module, so a service can expose the same answers
//! (an admin endpoint, a health check). Everything here reads: the commands are those the
//! `cacheops` user of `redis.conf` may run. Work against Redis is done in bounded steps
//! (`SCAN` batches, pipelines of per-key commands), never one call that grows with the keyspace.

mod cluster;
mod health;
mod key_report;
mod keyspace;
mod names;

pub use cluster::{ClusterLayout, ClusterMaster, cluster_findings, cluster_layout};
pub use health::{Finding, Health, Severity, health};
pub use key_report::{KeyReport, Validity, inspect_key};
pub use keyspace::{
    KeySpace, Namespace, ScanOptions, TTL_BUCKETS, TtlHistogram, scan_keyspace, scan_keyspace_nodes,
};
pub use names::{
    entity_mark_key, invalidation_channel, is_bookkeeping, tag_mark_key, variants_token_key,
};
