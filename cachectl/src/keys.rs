//! `cachectl keys` and `cachectl ttl`.

use std::process::ExitCode;
use std::time::Duration;

use cache_runtime::inspect::{self, KeySpace, Namespace, ScanOptions, TTL_BUCKETS};
use serde_json::json;

use crate::format::{Progress, bytes, duration, table};
use crate::output::out;
use crate::{Cli, Failure, connect_masters};

/// One pass over every server that holds keys (each master of a cluster).
async fn scan(cli: &Cli, options: ScanOptions) -> Result<KeySpace, Failure> {
    let masters = connect_masters(cli).await?;
    let mut conns: Vec<_> = masters.nodes.into_iter().map(|(_, conn)| conn).collect();
    let mut progress = Progress::new(cli.json);
    let space =
        inspect::scan_keyspace_nodes(&mut conns, &options, &mut |n| progress.update(n)).await;
    progress.finish();
    Ok(space?)
}

fn name(ns: &Namespace) -> String {
    let mut name = ns.app.clone();
    if let Some(version) = ns.version {
        name.push_str(&format!(":v{version}"));
    }
    if let Some(entity) = &ns.entity {
        name.push(':');
        name.push_str(entity);
    }
    name
}

fn coverage(space: &KeySpace) -> String {
    match space.complete {
        true => format!("{} keys, whole keyspace", space.scanned),
        false => format!(
            "{} keys: stopped at --limit, not the whole keyspace",
            space.scanned
        ),
    }
}

pub(crate) async fn run_keys(
    cli: &Cli,
    sample: u64,
    limit: Option<u64>,
) -> Result<ExitCode, Failure> {
    let mut options = ScanOptions::for_app(cli.app.clone());
    options.memory_samples = sample;
    options.limit = limit;
    let space = scan(cli, options).await?;
    if cli.json {
        let namespaces: Vec<_> = space
            .namespaces
            .iter()
            .map(|ns| {
                json!({
                    "app": ns.app, "version": ns.version, "entity": ns.entity,
                    "bookkeeping": ns.bookkeeping, "keys": ns.keys,
                    "bytes": ns.estimated_bytes(), "sampled": ns.sampled,
                    "memory_is_sampled": ns.memory_is_sampled(),
                })
            })
            .collect();
        out!(
            "{:#}",
            json!({"scanned": space.scanned, "complete": space.complete, "namespaces": namespaces})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = space
        .namespaces
        .iter()
        .map(|ns| {
            let memory = match (ns.sampled, ns.memory_is_sampled()) {
                (0, _) => "-".to_owned(),
                (n, true) => format!("~{} (sample of {n})", bytes(ns.estimated_bytes())),
                (_, false) => bytes(ns.estimated_bytes()),
            };
            let kind = if ns.bookkeeping {
                "bookkeeping"
            } else {
                "values"
            };
            vec![name(ns), kind.to_owned(), ns.keys.to_string(), memory]
        })
        .collect();
    table(
        &["namespace", "kind", "keys", "memory"],
        &[false, false, true, true],
        &rows,
    );
    out!("{}", coverage(&space));
    Ok(ExitCode::SUCCESS)
}

fn bucket_labels() -> Vec<String> {
    let mut labels: Vec<String> = TTL_BUCKETS
        .iter()
        .map(|b| format!("≤{}", duration(*b)))
        .collect();
    labels.push(format!(">{}", duration(TTL_BUCKETS[TTL_BUCKETS.len() - 1])));
    labels
}

pub(crate) async fn run_ttl(cli: &Cli, limit: Option<u64>) -> Result<ExitCode, Failure> {
    let mut options = ScanOptions::for_app(cli.app.clone());
    options.memory_samples = 0;
    options.ttl = true;
    options.limit = limit;
    let space = scan(cli, options).await?;
    let labels = bucket_labels();
    if cli.json {
        let namespaces: Vec<_> = space
            .namespaces
            .iter()
            .map(|ns| {
                // Shortest first, each with its upper bound in seconds (none for the last):
                // an order and a number a script can use, the label for people.
                let buckets: Vec<_> = labels
                    .iter()
                    .zip(ns.ttl.buckets)
                    .enumerate()
                    .map(|(i, (label, keys))| {
                        let max_seconds = TTL_BUCKETS.get(i).map(Duration::as_secs);
                        json!({"label": label, "max_seconds": max_seconds, "keys": keys})
                    })
                    .collect();
                json!({
                    "app": ns.app, "version": ns.version, "entity": ns.entity,
                    "bookkeeping": ns.bookkeeping, "keys": ns.keys,
                    "buckets": buckets, "no_ttl": ns.ttl.no_ttl, "gone": ns.ttl.gone,
                })
            })
            .collect();
        out!(
            "{:#}",
            json!({"scanned": space.scanned, "complete": space.complete, "namespaces": namespaces})
        );
        return Ok(ExitCode::SUCCESS);
    }
    let mut header = vec!["namespace", "keys"];
    header.extend(labels.iter().map(String::as_str));
    header.push("no TTL");
    let rows: Vec<Vec<String>> = space
        .namespaces
        .iter()
        .map(|ns| {
            let mut row = vec![name(ns), ns.keys.to_string()];
            row.extend(ns.ttl.buckets.iter().map(u64::to_string));
            row.push(match (ns.ttl.no_ttl, ns.bookkeeping) {
                (0, _) => "0".to_owned(),
                (n, false) => format!("{n} (!)"),
                (n, true) => n.to_string(),
            });
            row
        })
        .collect();
    let right: Vec<bool> = (0..header.len()).map(|c| c > 0).collect();
    table(&header, &right, &rows);
    if space
        .namespaces
        .iter()
        .any(|ns| !ns.bookkeeping && ns.ttl.no_ttl > 0)
    {
        out!("(!) values without a TTL stay until evicted: every value the cache writes has one");
    }
    out!("{}", coverage(&space));
    Ok(ExitCode::SUCCESS)
}
