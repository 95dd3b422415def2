//! `cachectl health`.

use std::process::ExitCode;

use cache_runtime::inspect::{self, Severity};
use serde_json::json;

use crate::format::{bytes, duration};
use crate::{Cli, Failure, connect};

pub(crate) async fn run(cli: &Cli) -> Result<ExitCode, Failure> {
    let mut conn = connect(cli).await?;
    let h = inspect::health(&mut conn, cli.app.as_deref()).await?;
    let hit_ratio = h.hit_ratio();
    if cli.json {
        let findings: Vec<_> = h
            .findings
            .iter()
            .map(|f| json!({"severity": severity(f.severity), "message": f.message}))
            .collect();
        let out = json!({
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
            "hit_ratio": hit_ratio,
            "connected_clients": h.connected_clients,
            "aof_enabled": h.aof_enabled,
            "rdb_save": h.rdb_save,
            "ping_us": h.ping.as_micros() as u64,
            "slowlog_len": h.slowlog_len,
            "bus_channel": h.bus_channel,
            "bus_subscribers": h.bus_subscribers,
            "findings": findings,
        });
        println!("{out:#}");
    } else {
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
                hit_ratio.map_or("no reads yet".to_owned(), |r| {
                    format!(
                        "{:.1} % ({} hits, {} misses)",
                        r * 100.0,
                        h.keyspace_hits,
                        h.keyspace_misses
                    )
                }),
            ),
            ("clients", h.connected_clients.to_string()),
            ("persistence", persistence),
            ("ping", duration(h.ping)),
            ("slowlog", format!("{} entries", h.slowlog_len)),
            (
                "bus",
                match (&h.bus_channel, h.bus_subscribers) {
                    (Some(channel), Some(n)) => format!("{n} subscribers on {channel}"),
                    _ => "give --app to count the instances subscribed to its invalidations"
                        .to_owned(),
                },
            ),
        ];
        for (label, value) in lines {
            println!("{label:<12} {value}");
        }
        for finding in &h.findings {
            println!("{}: {}", severity(finding.severity), finding.message);
        }
        println!("{}", if h.healthy() { "healthy" } else { "UNHEALTHY" });
    }
    Ok(if h.healthy() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn severity(severity: Severity) -> &'static str {
    match severity {
        Severity::Warning => "warning",
        Severity::Problem => "problem",
    }
}
