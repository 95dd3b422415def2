//! `cachectl invalidate` and `cachectl purge`: through `cache_runtime::Cache`, so they do what
//! the library does and publish the same events to every instance.

use std::process::ExitCode;

use cache_runtime::{Cache, CacheConfig, PurgeOptions, inspect};
use clap::Args;
use serde_json::json;

use crate::format::Progress;
use crate::inspect::build_key;
use crate::output::out;
use crate::versions::resolve;
use crate::{Cli, Failure, connect, connect_masters, connect_routed, required_app};

#[derive(Debug, Args)]
#[command(group(clap::ArgGroup::new("target").required(true).args(["entity", "tag"])))]
pub(crate) struct InvalidateArgs {
    /// Every value of this entity (or, with --id or --pattern, some of them).
    #[arg(long)]
    entity: Option<String>,
    /// One id of --entity, with all its variants (the id as the function received it).
    #[arg(long, requires = "entity", conflicts_with = "pattern")]
    id: Option<String>,
    /// Keys of --entity whose part after the entity matches this glob (SCAN + UNLINK).
    #[arg(long, requires = "entity")]
    pattern: Option<String>,
    /// Every value carrying this tag, across entities and versions.
    #[arg(long, conflicts_with = "entity")]
    tag: Option<String>,
    /// The entity's schema version (also CACHE_VERSION). Without it, the one version the
    /// entity has keys at; refused when it has keys at several, or none.
    #[arg(long, env = "CACHE_VERSION")]
    version: Option<u32>,
    /// Say what would be invalidated; change nothing.
    #[arg(long)]
    dry_run: bool,
}

#[derive(Debug, Args)]
pub(crate) struct PurgeArgs {
    /// The current version: keys of older versions are deleted.
    #[arg(long)]
    version: u32,
    /// At most this many keys deleted per second.
    #[arg(long, default_value_t = 5_000)]
    rate: u32,
    /// Stop after this many SCAN steps (run again to resume).
    #[arg(long)]
    batches: Option<usize>,
    /// Also keep this older version (repeatable): an entity the service pins to it with
    /// `entity_at_version` would otherwise be purged with the rest.
    #[arg(long = "keep-version")]
    keep_versions: Vec<u32>,
    /// Count what would be deleted; delete nothing, tell nobody.
    #[arg(long)]
    dry_run: bool,
}

/// A cache for `app` at `version`, after checking that Redis answers (so an unreachable server
/// is one clear line rather than a failed invalidation kept for a replay that never comes).
async fn cache(cli: &Cli, app: &str, version: u32) -> Result<Cache, Failure> {
    connect(cli).await?;
    let mut builder = CacheConfig::builder()
        .redis_url(cli.url.as_str())
        .app_prefix(app)
        .version(version)
        .metrics_log_interval(None);
    if let Some(ca) = &cli.tls_ca {
        builder = builder.tls_ca_file(ca);
    }
    if let (Some(cert), Some(key)) = (&cli.tls_cert, &cli.tls_key) {
        builder = builder.tls_client_cert_files(cert, key);
    }
    Ok(Cache::new(builder.build()?)?)
}

pub(crate) async fn invalidate(cli: &Cli, args: &InvalidateArgs) -> Result<ExitCode, Failure> {
    let app = required_app(cli)?;
    // Tags span entities and versions: the cache's version does not matter for them.
    let version = match &args.entity {
        Some(entity) => resolve(cli, app, entity, args.version).await?,
        None => args.version.unwrap_or(1),
    };
    if args.dry_run {
        return dry_run(cli, app, version, args).await;
    }
    let cache = cache(cli, app, version).await?;
    let (what, removed) = match (&args.entity, &args.tag) {
        (Some(name), _) => {
            let entity = cache.entity(name)?;
            match (&args.id, &args.pattern) {
                (Some(id), _) => {
                    cache.invalidate_id(&entity, id.as_str()).await?;
                    (
                        format!("id {id} of {name} (v{version}) with its variants"),
                        None,
                    )
                }
                (None, Some(glob)) => {
                    let removed = cache.invalidate_matching(&entity, glob).await?;
                    (
                        format!("keys of {name} (v{version}) matching {glob}"),
                        Some(removed),
                    )
                }
                (None, None) => {
                    cache.invalidate_entity(&entity).await?;
                    (format!("every value of {name} (v{version})"), None)
                }
            }
        }
        (None, Some(tag)) => {
            cache.invalidate_tag(tag).await?;
            (format!("every value tagged {tag}"), None)
        }
        (None, None) => return Err(Failure("give --entity or --tag".into())),
    };
    if cli.json {
        out!(
            "{:#}",
            json!({"invalidated": what, "deleted_keys": removed})
        );
    } else {
        let deleted = removed.map_or(String::new(), |n| format!(" ({n} keys deleted)"));
        out!("invalidated {what}{deleted}; every instance was told");
    }
    Ok(ExitCode::SUCCESS)
}

async fn dry_run(
    cli: &Cli,
    app: &str,
    version: u32,
    args: &InvalidateArgs,
) -> Result<ExitCode, Failure> {
    let mut conn = connect_routed(cli).await?;
    let channel = inspect::invalidation_channel(app);
    let mut plan = match (&args.entity, &args.tag) {
        (Some(entity), _) => {
            let prefix = build_key(app, version, entity, "", None)?;
            match (&args.id, &args.pattern) {
                (Some(id), _) => {
                    let key = build_key(app, version, entity, id, None)?;
                    let escaped_id = key.strip_prefix(&prefix).unwrap_or(&key);
                    let token = inspect::variants_token_key(app, version, entity, escaped_id)?;
                    let exists: bool = redis::cmd("EXISTS")
                        .arg(&key)
                        .query_async(&mut conn)
                        .await?;
                    // An id cached only with variants has no key of its own, only a token.
                    let variants: bool = redis::cmd("EXISTS")
                        .arg(&token)
                        .query_async(&mut conn)
                        .await?;
                    json!({
                        "action": "delete the id's key and its variants token (its variants become misses)",
                        "keys": [key, token], "key_exists": exists, "has_variants": variants,
                    })
                }
                (None, Some(glob)) => {
                    let pattern = format!("{prefix}{glob}");
                    // Every master holds a share of the keys.
                    let mut keys = Vec::new();
                    for (_, mut node) in connect_masters(cli).await?.nodes {
                        keys.extend(matching(&mut node, &pattern).await?);
                    }
                    json!({
                        "action": "delete the matching keys (SCAN + UNLINK)",
                        "pattern": pattern, "matching_keys": keys.len(),
                        "examples": keys.iter().take(10).collect::<Vec<_>>(),
                    })
                }
                (None, None) => {
                    let mark = inspect::entity_mark_key(app, version, entity)?;
                    json!({
                        "action": "raise the entity's invalidation mark: every value written before becomes a miss; nothing is deleted",
                        "keys": [mark],
                    })
                }
            }
        }
        (None, Some(tag)) => json!({
            "action": "raise the tag's invalidation mark: every value carrying it becomes a miss; nothing is deleted",
            "keys": [inspect::tag_mark_key(app, tag)],
        }),
        (None, None) => return Err(Failure("give --entity or --tag".into())),
    };
    if args.entity.is_some() {
        plan["version"] = json!(version);
    }
    if cli.json {
        out!(
            "{:#}",
            json!({"dry_run": true, "plan": plan, "channel": channel})
        );
    } else {
        out!(
            "dry run, nothing changed. Would {}",
            plan["action"].as_str().unwrap_or("")
        );
        for field in [
            "version",
            "keys",
            "pattern",
            "matching_keys",
            "key_exists",
            "has_variants",
            "examples",
        ] {
            if let Some(value) = plan.get(field) {
                out!("  {field}: {value}");
            }
        }
        out!("  and tell every instance on {channel}");
    }
    Ok(ExitCode::SUCCESS)
}

/// Values matching `pattern`, by `SCAN` (what the real invalidation walks and deletes).
async fn matching(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
) -> Result<Vec<String>, Failure> {
    let mut keys = Vec::new();
    // What the invalidation deletes: values, never the entity's own mark.
    scan(conn, pattern, |batch| {
        keys.extend(batch.into_iter().filter(|k| !inspect::is_bookkeeping(k)));
    })
    .await?;
    Ok(keys)
}

/// Hands each batch of keys matching `pattern` on the server behind `conn` to `each`: one
/// `SCAN` pass in batches of 1,000, so other clients wait at most one batch, and nothing
/// holds the whole keyspace.
pub(crate) async fn scan(
    conn: &mut redis::aio::MultiplexedConnection,
    pattern: &str,
    mut each: impl FnMut(Vec<String>),
) -> Result<(), Failure> {
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(pattern)
            .arg("COUNT")
            .arg(1_000)
            .query_async(conn)
            .await?;
        each(batch);
        cursor = next;
        if cursor == 0 {
            return Ok(());
        }
    }
}

pub(crate) async fn purge(cli: &Cli, args: &PurgeArgs) -> Result<ExitCode, Failure> {
    let app = required_app(cli)?;
    let cache = cache(cli, app, args.version).await?;
    let mut options = PurgeOptions::default().max_keys_per_second(args.rate);
    if let Some(batches) = args.batches {
        options = options.max_batches(batches);
    }
    for version in &args.keep_versions {
        options = options.keep_version(*version);
    }
    let verb = if args.dry_run {
        "would delete"
    } else {
        "deleted"
    };
    let progress = std::sync::Arc::new(Progress::new(cli.json));
    let shown = progress.clone();
    options = options.dry_run(args.dry_run).on_progress(move |report| {
        shown.show(&format!(
            "purge: {} keys scanned, {verb} {}",
            report.scanned, report.removed
        ));
    });
    let report = cache.purge_old_versions(options).await;
    progress.finish();
    let report = report?;
    if cli.json {
        out!(
            "{:#}",
            json!({
                "dry_run": args.dry_run,
                "removed": report.removed,
                "scanned": report.scanned,
                "done": report.done,
            })
        );
    } else {
        let what = if args.dry_run {
            "would purge"
        } else {
            "purged"
        };
        out!(
            "{what} {} keys of versions older than v{} ({} scanned){}",
            report.removed,
            args.version,
            report.scanned,
            match (args.dry_run, report.done) {
                (true, _) => "; nothing changed",
                (false, true) => "; done",
                (false, false) => "; not done: run again to resume",
            }
        );
    }
    Ok(ExitCode::SUCCESS)
}
