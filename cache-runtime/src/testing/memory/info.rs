//! `INFO`: the fields the framework, `cachectl` and its health checks read.

use std::fmt::Write as _;

use super::store::Store;

const SECTIONS: [&str; 8] = [
    "server",
    "clients",
    "memory",
    "persistence",
    "stats",
    "replication",
    "cluster",
    "keyspace",
];

/// `INFO [section]`: the default sections, `all`/`everything` adding `commandstats`.
pub(crate) fn render(store: &Store, section: Option<String>) -> String {
    let wanted: Vec<&str> = match section.as_deref() {
        None | Some("default") => SECTIONS.to_vec(),
        Some("all" | "everything") => SECTIONS.iter().copied().chain(["commandstats"]).collect(),
        Some(one) => vec![one],
    };
    let mut out = String::new();
    for section in wanted {
        section_into(&mut out, store, section);
    }
    out
}

fn section_into(out: &mut String, store: &Store, section: &str) {
    let mut line = |text: String| {
        out.push_str(&text);
        out.push_str("\r\n");
    };
    let (keys, expires) = store.live_keys().fold((0, 0), |(k, e), (_, entry)| {
        (k + 1, e + usize::from(entry.expires_ms.is_some()))
    });
    match section {
        "server" => {
            line("# Server".into());
            line("redis_version:7.0.0".into());
            line("redis_mode:standalone".into());
            line(format!("run_id:{}", store.run_id));
            line(format!("process_id:{}", std::process::id()));
        }
        "clients" => {
            line("# Clients".into());
            line("connected_clients:1".into());
        }
        "memory" => {
            let used = store.memory_bytes();
            line("# Memory".into());
            line(format!("used_memory:{used}"));
            line(format!("used_memory_peak:{used}"));
            line(format!(
                "maxmemory:{}",
                store.config.get("maxmemory").map_or("0", String::as_str)
            ));
            line(format!(
                "maxmemory_policy:{}",
                store
                    .config
                    .get("maxmemory-policy")
                    .map_or("noeviction", String::as_str)
            ));
            line("mem_fragmentation_ratio:1.00".into());
        }
        "persistence" => {
            line("# Persistence".into());
            line("loading:0".into());
            line("aof_enabled:0".into());
            line("rdb_changes_since_last_save:0".into());
        }
        "stats" => {
            line("# Stats".into());
            line(format!("keyspace_hits:{}", store.keyspace_hits));
            line(format!("keyspace_misses:{}", store.keyspace_misses));
            line(format!("expired_keys:{}", store.expired_keys));
            line("evicted_keys:0".into());
        }
        "replication" => {
            line("# Replication".into());
            line("role:master".into());
            line("connected_slaves:0".into());
        }
        "cluster" => {
            line("# Cluster".into());
            line("cluster_enabled:0".into());
        }
        "keyspace" => {
            line("# Keyspace".into());
            if keys > 0 {
                line(format!("db0:keys={keys},expires={expires},avg_ttl=0"));
            }
        }
        "commandstats" => {
            line("# Commandstats".into());
            let mut calls: Vec<_> = store.calls.iter().collect();
            calls.sort();
            for (command, calls) in calls {
                let mut text = String::new();
                let _ = write!(
                    text,
                    "cmdstat_{command}:calls={calls},usec=0,usec_per_call=0.00,rejected_calls=0,failed_calls=0"
                );
                line(text);
            }
        }
        _ => {}
    }
}
