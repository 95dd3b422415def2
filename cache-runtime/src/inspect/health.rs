//! `cachectl health`: the server's state, and what about it does not suit a cache.

use std::time::{Duration, Instant};

use redis::RedisResult;
use redis::aio::ConnectionLike;

/// How serious a [`Finding`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Severity {
    /// Worth a look; the cache works.
    Warning,
    /// The cache will misbehave (fail writes, or grow until the host kills Redis).
    Problem,
}

/// One thing about the server that an operator should know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// How serious it is.
    pub severity: Severity,
    /// What it is, why it matters, and what to do.
    pub message: String,
}

/// The server's state as a cache sees it.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Health {
    /// `redis_version`.
    pub version: String,
    /// `master` or `slave`.
    pub role: String,
    /// Seconds since the server started.
    pub uptime_seconds: u64,
    /// Bytes in use.
    pub used_memory: u64,
    /// The most bytes ever in use.
    pub used_memory_peak: u64,
    /// The configured limit (0: none).
    pub maxmemory: u64,
    /// Resident memory over used memory.
    pub fragmentation_ratio: f64,
    /// What Redis does when `maxmemory` is reached.
    pub maxmemory_policy: String,
    /// Keys evicted for memory since the server started.
    pub evicted_keys: u64,
    /// Keys expired since the server started.
    pub expired_keys: u64,
    /// Reads that found their key, since the server started.
    pub keyspace_hits: u64,
    /// Reads that did not.
    pub keyspace_misses: u64,
    /// Client connections.
    pub connected_clients: u64,
    /// Whether the append-only file is on.
    pub aof_enabled: bool,
    /// The `save` schedule (`None` when `CONFIG GET` is not allowed); empty: no snapshots.
    pub rdb_save: Option<String>,
    /// One `PING`'s round trip.
    pub ping: Duration,
    /// Entries in the slow log.
    pub slowlog_len: u64,
    /// The invalidation channel the app's instances subscribe to, when an app was given.
    pub bus_channel: Option<String>,
    /// Its subscribers: the instances whose bus is up.
    pub bus_subscribers: Option<u64>,
    /// What does not suit a cache, worst first.
    pub findings: Vec<Finding>,
}

impl Health {
    /// Hits over reads since the server started (`None` before the first read).
    pub fn hit_ratio(&self) -> Option<f64> {
        let reads = self.keyspace_hits + self.keyspace_misses;
        (reads > 0).then(|| self.keyspace_hits as f64 / reads as f64)
    }

    /// No finding is a [`Severity::Problem`].
    pub fn healthy(&self) -> bool {
        self.findings.iter().all(|f| f.severity < Severity::Problem)
    }
}

/// Reads the server's state over `conn`; `app`, when given, names the invalidation channel
/// whose subscribers are counted.
pub async fn health<C: ConnectionLike>(conn: &mut C, app: Option<&str>) -> RedisResult<Health> {
    let started = Instant::now();
    let _: String = redis::cmd("PING").query_async(conn).await?;
    let ping = started.elapsed();
    let info: redis::InfoDict = redis::cmd("INFO").arg("all").query_async(conn).await?;
    let slowlog_len: u64 = redis::cmd("SLOWLOG").arg("LEN").query_async(conn).await?;
    let bus_channel = app.map(crate::bus::channel);
    let bus_subscribers = match &bus_channel {
        Some(channel) => {
            let numsub: Vec<redis::Value> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(channel)
                .query_async(conn)
                .await?;
            match numsub.get(1) {
                Some(redis::Value::Int(n)) => Some(u64::try_from(*n).unwrap_or(0)),
                _ => Some(0),
            }
        }
        None => None,
    };
    // Not every user may read the configuration; the rest of the report stands without it.
    let rdb_save = redis::cmd("CONFIG")
        .arg("GET")
        .arg("save")
        .query_async::<Vec<String>>(conn)
        .await
        .ok()
        .and_then(|pair| pair.get(1).cloned());
    let number = |field: &str| info.get::<u64>(field).unwrap_or(0);
    let text = |field: &str| info.get::<String>(field).unwrap_or_default();
    let mut health = Health {
        version: text("redis_version"),
        role: text("role"),
        uptime_seconds: number("uptime_in_seconds"),
        used_memory: number("used_memory"),
        used_memory_peak: number("used_memory_peak"),
        maxmemory: number("maxmemory"),
        fragmentation_ratio: info.get::<f64>("mem_fragmentation_ratio").unwrap_or(0.0),
        maxmemory_policy: text("maxmemory_policy"),
        evicted_keys: number("evicted_keys"),
        expired_keys: number("expired_keys"),
        keyspace_hits: number("keyspace_hits"),
        keyspace_misses: number("keyspace_misses"),
        connected_clients: number("connected_clients"),
        aof_enabled: number("aof_enabled") == 1,
        rdb_save,
        ping,
        slowlog_len,
        bus_channel,
        bus_subscribers,
        findings: Vec::new(),
    };
    health.findings = findings(&health);
    Ok(health)
}

/// What about the server does not suit a cache, worst first.
fn findings(h: &Health) -> Vec<Finding> {
    let mut out = Vec::new();
    let mut add = |severity, message: String| out.push(Finding { severity, message });
    match h.maxmemory_policy.as_str() {
        "noeviction" => add(
            Severity::Problem,
            "maxmemory-policy is noeviction: once memory is full every write fails with OOM and \
             nothing new is cached; a cache should evict (allkeys-lfu, docs/eviction.md)"
                .to_owned(),
        ),
        policy if policy.starts_with("volatile-") => add(
            Severity::Warning,
            format!(
                "maxmemory-policy is {policy}: only keys with a TTL are evicted (every cached \
                 value has one); right when this server also holds data without a TTL, otherwise \
                 prefer allkeys-lfu (docs/eviction.md)"
            ),
        ),
        _ => {}
    }
    if h.maxmemory == 0 {
        add(
            Severity::Problem,
            "maxmemory is not set: Redis grows until the host runs out of memory instead of \
             evicting; set maxmemory (redis.conf)"
                .to_owned(),
        );
    } else if h.used_memory.saturating_mul(10) >= h.maxmemory.saturating_mul(9) {
        add(
            Severity::Warning,
            format!(
                "memory is {:.0} % of maxmemory: keys are being evicted to make room",
                h.used_memory as f64 * 100.0 / h.maxmemory as f64
            ),
        );
    }
    if h.fragmentation_ratio > 1.5 && h.used_memory > 64 << 20 {
        add(
            Severity::Warning,
            format!(
                "memory fragmentation ratio {:.2}: Redis holds far more memory than its data \
                 (consider activedefrag yes)",
                h.fragmentation_ratio
            ),
        );
    }
    if let (Some(channel), Some(0)) = (&h.bus_channel, h.bus_subscribers) {
        add(
            Severity::Warning,
            format!(
                "no subscriber on {channel}: no instance of this app is running, or none has \
                 its invalidation bus up"
            ),
        );
    }
    if h.slowlog_len > 0 {
        add(
            Severity::Warning,
            format!(
                "{} entries in the slow log (SLOWLOG GET shows which commands)",
                h.slowlog_len
            ),
        );
    }
    out.sort_by_key(|finding| std::cmp::Reverse(finding.severity));
    out
}
