//! `cachectl health`.

use std::process::ExitCode;

use cache_runtime::inspect::{self, Health, Severity};
use serde_json::json;

use crate::format::{bytes, duration};
use crate::output::out;
use crate::{Cli, Failure, connect_masters, connect_url, first_seed, node_url};

pub(crate) async fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    let masters = connect_masters(cli).await?;
    let mut nodes = Vec::new();
    for (address, mut conn) in masters.nodes {
        let health = inspect::health(&mut conn, cli.app.as_deref()).await?;
        let full_coverage = full_coverage(&mut conn).await;
        nodes.push((address, health, full_coverage));
    }
    let cluster_findings = match &masters.layout {
        Some(layout) => {
            let healths: Vec<_> = nodes.iter().map(|(_, h, _)| h.clone()).collect();
            let full = nodes.iter().find_map(|(_, _, full)| *full);
            inspect::cluster_findings(layout, &healths, full)
        }
        None => Vec::new(),
    };
    // Subscribers are counted per node, and the cache subscribes on replicas: every node's.
    let mut subscribers: u64 = nodes.iter().filter_map(|(_, h, _)| h.bus_subscribers).sum();
    if let (Some(layout), Some(app)) = (&masters.layout, cli.app.as_deref()) {
        for replica in layout.masters.iter().flat_map(|m| &m.replica_addresses) {
            let url = node_url(first_seed(&cli.url), replica)?;
            let mut conn = connect_url(&url).await?;
            let (_, n): (String, u64) = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg(inspect::invalidation_channel(app))
                .query_async(&mut conn)
                .await?;
            subscribers += n;
        }
    }
    let healthy = nodes.iter().all(|(_, h, _)| h.healthy())
        && cluster_findings
            .iter()
            .all(|f| f.severity != Severity::Problem);
    if cli.json {
        let out = match &masters.layout {
            None => node_json(&nodes[0].1),
            Some(layout) => json!({
                "healthy": healthy,
                "cluster": true,
                "uncovered_slots": layout.uncovered_slots,
                "nodes": nodes.iter().map(|(address, h, _)| {
                    let replicas = layout.masters.iter().find(|m| &m.address == address).map(|m| m.replicas);
                    json!({"address": address, "replicas": replicas, "health": node_json(h)})
                }).collect::<Vec<_>>(),
                "bus_subscribers": subscribers,
                "findings": findings_json(&cluster_findings),
            }),
        };
        out!("{out:#}");
    } else {
        let clustered = masters.layout.is_some();
        for (address, h, _) in &nodes {
            if clustered {
                out!("── master {address}");
            }
            print_node(h);
        }
        if let Some(layout) = &masters.layout {
            out!(
                "── cluster: {} masters, {} slots uncovered, {subscribers} bus subscribers on all nodes",
                layout.masters.len(),
                layout.uncovered_slots
            );
            for finding in &cluster_findings {
                out!("{}: {}", severity(finding.severity), finding.message);
            }
        }
        out!("{}", if healthy { "healthy" } else { "UNHEALTHY" });
    }
    Ok(if healthy {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `cluster-require-full-coverage` (`None`: not a cluster node, or not allowed to ask).
async fn full_coverage(conn: &mut redis::aio::MultiplexedConnection) -> Option<bool> {
    let (_, value): (String, String) = redis::cmd("CONFIG")
        .arg("GET")
        .arg("cluster-require-full-coverage")
        .query_async(conn)
        .await
        .ok()?;
    Some(value == "yes")
}

fn findings_json(findings: &[inspect::Finding]) -> Vec<serde_json::Value> {
    findings
        .iter()
        .map(|f| json!({"severity": severity(f.severity), "message": f.message}))
        .collect()
}

fn node_json(h: &Health) -> serde_json::Value {
    json!({
        "healthy": h.healthy(),
        "version": h.version,
        "role": h.role,
        "uptime_seconds": h.uptime_seconds,
        "used_memory": h.used_memory,
        "used_memory_peak": h.used_memory_peak,
        "maxmemory": h.maxmemory,
        "fragmentation_ratio": h.fragmentation_ratio,
        "maxmemory_policy": h.maxmemory_policy,
        "evicted_keys": h.evicted_keys,
        "expired_keys": h.expired_keys,
        "keyspace_hits": h.keyspace_hits,
        "keyspace_misses": h.keyspace_misses,
        "hit_ratio": h.hit_ratio(),
        // Redis counts lookups server-wide: --app does not narrow it.
        "hit_ratio_scope": "server",
        "connected_clients": h.connected_clients,
        "aof_enabled": h.aof_enabled,
        "rdb_save": h.rdb_save,
        "ping_us": h.ping.as_micros() as u64,
        "slowlog_len": h.slowlog_len,
        "bus_channel": h.bus_channel,
        "bus_subscribers": h.bus_subscribers,
        "findings": findings_json(&h.findings),
    })
}

fn print_node(h: &Health) {
    let hit_ratio = h.hit_ratio();
    let max = match h.maxmemory {
        0 => "no limit".to_owned(),
        n => bytes(n),
    };
    let persistence = match (&h.rdb_save, h.aof_enabled) {
        (_, true) => "AOF on".to_owned(),
        (Some(save), false) if !save.is_empty() => format!("RDB snapshots ({save})"),
        (Some(_), false) => "none".to_owned(),
        (None, false) => "AOF off; snapshots unknown (CONFIG GET not allowed)".to_owned(),
    };
    let lines = [
        (
            "server",
            format!(
                "Redis {} ({}), up {}",
                h.version,
                h.role,
                duration(std::time::Duration::from_secs(h.uptime_seconds))
            ),
        ),
        (
            "memory",
            format!(
                "{} used, {} peak, {max} max, fragmentation {:.2}",
                bytes(h.used_memory),
                bytes(h.used_memory_peak),
                h.fragmentation_ratio
            ),
        ),
        ("policy", h.maxmemory_policy.clone()),
        (
            "keys",
            format!(
                "{} evicted, {} expired since start",
                h.evicted_keys, h.expired_keys
            ),
        ),
        (
            "hit ratio",
            format!(
                "{}; the whole server's, every app's (per entity: the `cache stats` log lines, cache_hits_total)",
                hit_ratio.map_or("no reads yet".to_owned(), |r| {
                    format!(
                        "{:.1} % ({} hits, {} misses)",
                        r * 100.0,
                        h.keyspace_hits,
                        h.keyspace_misses
                    )
                })
            ),
        ),
        ("clients", h.connected_clients.to_string()),
        ("persistence", persistence),
        ("ping", duration(h.ping)),
        ("slowlog", format!("{} entries", h.slowlog_len)),
        (
            "bus",
            match (&h.bus_channel, h.bus_subscribers) {
                (Some(channel), Some(n)) => format!("{n} subscribers on {channel}"),
                _ => "give --app to count the instances subscribed to its invalidations".to_owned(),
            },
        ),
    ];
    for (label, value) in lines {
        out!("{label:<12} {value}");
    }
    for finding in &h.findings {
        out!("{}: {}", severity(finding.severity), finding.message);
    }
}

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Warning => "warning",
        Severity::Problem => "problem",
    }
}
