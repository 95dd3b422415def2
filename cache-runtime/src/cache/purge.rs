//! Deploy flush: after a version bump old keys are unreachable at once (new code reads only
//! `v{N+1}` keys); this removes them in the background, in batches, rate-limited and
//! resumable. Never `FLUSHALL` or `FLUSHDB`: other apps and versions share the server.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Cache;
use crate::bus::Event;
use crate::error::CacheError;

/// What a purge reports after each step.
type OnProgress = Arc<dyn Fn(&PurgeReport) + Send + Sync>;

/// How a purge of old versions runs.
#[derive(Clone)]
#[must_use]
pub struct PurgeOptions {
    batch: usize,
    max_keys_per_second: u32,
    max_batches: Option<usize>,
    keep: HashSet<u32>,
    dry_run: bool,
    on_progress: Option<OnProgress>,
}

impl fmt::Debug for PurgeOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PurgeOptions")
            .field("batch", &self.batch)
            .field("max_keys_per_second", &self.max_keys_per_second)
            .field("max_batches", &self.max_batches)
            .field("keep", &self.keep)
            .field("dry_run", &self.dry_run)
            .finish_non_exhaustive()
    }
}

impl Default for PurgeOptions {
    fn default() -> Self {
        Self {
            batch: 500,
            max_keys_per_second: 5_000,
            max_batches: None,
            keep: HashSet::new(),
            dry_run: false,
            on_progress: None,
        }
    }
}

impl PurgeOptions {
    /// Keys scanned (and at most deleted) per step.
    pub fn batch(mut self, keys: usize) -> Self {
        self.batch = keys.max(1);
        self
    }

    /// Upper bound on the deletion rate, to spare the server's latency.
    pub fn max_keys_per_second(mut self, keys: u32) -> Self {
        self.max_keys_per_second = keys.max(1);
        self
    }

    /// Stop after this many steps; a later call resumes where this one stopped.
    pub fn max_batches(mut self, batches: usize) -> Self {
        self.max_batches = Some(batches);
        self
    }

    /// Also keep this version (besides the configured one, and the version each entity this
    /// cache pinned with `entity_at_version` uses, for that entity).
    pub fn keep_version(mut self, version: u32) -> Self {
        self.keep.insert(version);
        self
    }

    /// Only count: the report's `removed` is what would be deleted; nothing is deleted, no
    /// progress saved, nobody told. Not rate-limited (it deletes nothing).
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }

    /// Called with the running totals after each step (for a progress line).
    pub fn on_progress(mut self, report: impl Fn(&PurgeReport) + Send + Sync + 'static) -> Self {
        self.on_progress = Some(Arc::new(report));
        self
    }
}

/// What a purge did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct PurgeReport {
    /// Keys deleted by this call (with `dry_run`: that it would delete).
    pub removed: u64,
    /// Keys looked at by this call.
    pub scanned: u64,
    /// Whether the whole keyspace has been covered (`false`: stopped by `max_batches`; call
    /// again to resume).
    pub done: bool,
}

/// A node's saved cursor once its pass is complete (until every node's is).
const NODE_DONE: &str = "done";

impl Cache {
    /// Deletes every key of this app whose version is older than the configured one and not kept
    /// (entities pinned ahead with `version = N` are never touched),
    /// with `SCAN` + `UNLINK`. Progress is saved in Redis after each step, so a purge that was
    /// interrupted (or stopped by `max_batches`) resumes where it stopped.
    pub async fn purge_old_versions(
        &self,
        options: PurgeOptions,
    ) -> Result<PurgeReport, CacheError> {
        let config = &self.inner.config;
        let app = &config.app_prefix;
        let mut keep = options.keep.clone();
        keep.insert(config.version);
        // Entities pinned to their own version keep it (that entity only).
        let pinned: HashSet<(String, u32)> = self
            .metrics()
            .into_iter()
            .map(|m| (m.entity, m.version))
            .collect();
        // Values (`{app}:v…`) and their bookkeeping keys, which wrap the value's key in braces
        // for its Cluster slot (`{{app}:v…}:%variants`, `%revision`, `%lease`).
        let pattern = format!("*{app}:v*");
        let mut report = PurgeReport {
            removed: 0,
            scanned: 0,
            done: true,
        };
        let mut steps = 0usize;
        let mut purged_versions = HashSet::new();
        let is_old = |key: &String| {
            version_of(app, key).is_some_and(|(version, entity)| {
                // Only older versions: a newer one may be an entity pinned ahead of the rest
                // (`version = N`) that this process has not used yet.
                version < config.version
                    && !keep.contains(&version)
                    && !pinned.contains(&(entity.to_owned(), version))
            })
        };
        let nodes = self.key_nodes().await?;
        let clustered = nodes.len() > 1;
        // Each node is scanned with its own cursor, saved under the node's address on a
        // cluster (a master that failed over is scanned again from the start); a node whose
        // pass is complete is marked `done` until every node's is.
        let mut cursor_keys = Vec::new();
        for node in nodes {
            let cursor_key = match clustered {
                true => format!("{app}:%purge-cursor:{}", node.address),
                false => format!("{app}:%purge-cursor"),
            };
            cursor_keys.push(cursor_key.clone());
            // A dry run counts the whole keyspace and leaves a real purge's progress alone.
            let saved: Option<String> = match options.dry_run {
                true => None,
                false => self.call(redis::cmd("GET").arg(&cursor_key).into()).await?,
            };
            if saved.as_deref() == Some(NODE_DONE) {
                continue;
            }
            let mut cursor: u64 = saved.and_then(|c| c.parse().ok()).unwrap_or(0);
            loop {
                if options.max_batches.is_some_and(|max| steps >= max) {
                    report.done = false;
                    break;
                }
                let step_started = Instant::now();
                let mut scan = redis::cmd("SCAN");
                scan.arg(cursor)
                    .arg("MATCH")
                    .arg(&pattern)
                    .arg("COUNT")
                    .arg(options.batch);
                let (next, keys): (u64, Vec<String>) =
                    self.call_node(None, &node, (&scan).into()).await?;
                report.scanned += keys.len() as u64;
                let old: Vec<&String> = keys.iter().filter(|key| is_old(key)).collect();
                if options.dry_run {
                    report.removed += old.len() as u64;
                } else if !old.is_empty() {
                    let removed: u64 = self.call(redis::cmd("UNLINK").arg(&old).into()).await?;
                    report.removed += removed;
                    for key in &old {
                        if let Some((version, _)) = version_of(app, key) {
                            purged_versions.insert(version);
                        }
                    }
                }
                cursor = next;
                steps += 1;
                if let Some(progress) = &options.on_progress {
                    progress(&report);
                }
                if options.dry_run {
                    if cursor == 0 {
                        break;
                    }
                    continue;
                }
                if cursor == 0 {
                    let () = self
                        .call(redis::cmd("SET").arg(&cursor_key).arg(NODE_DONE).into())
                        .await?;
                    break;
                }
                let () = self
                    .call(redis::cmd("SET").arg(&cursor_key).arg(cursor).into())
                    .await?;
                // Rate limit: a step of n deletions takes at least n / rate seconds.
                let budget = Duration::from_secs_f64(
                    old.len() as f64 / f64::from(options.max_keys_per_second),
                );
                tokio::time::sleep(budget.saturating_sub(step_started.elapsed())).await;
            }
        }
        if options.dry_run {
            return Ok(report);
        }
        if report.done {
            for cursor_key in &cursor_keys {
                let _: u64 = self.call(redis::cmd("DEL").arg(cursor_key).into()).await?;
            }
        }
        // Instances still on an old version drop their local copies of it.
        for version in purged_versions {
            let event = Event::Prefix(format!("{app}:v{version}:"));
            self.inner.apply_locally(&event);
            if let Err(error) = self.try_publish(None, &event).await {
                // The old version's keys are unreachable by new code anyway.
                tracing::warn!(%error, version, "could not tell other instances about a purged version");
            }
        }
        tracing::info!(
            removed = report.removed,
            scanned = report.scanned,
            done = report.done,
            "purge of old versions"
        );
        Ok(report)
    }
}

/// The version and entity in `{app}:v{N}:{entity}:…`, if `key` has that shape (or is the
/// bookkeeping key of one: `{{app}:v{N}:{entity}:…}:%…`).
fn version_of<'k>(app: &str, key: &'k str) -> Option<(u32, &'k str)> {
    let key = key.strip_prefix('{').unwrap_or(key);
    let rest = key.strip_prefix(app)?.strip_prefix(":v")?;
    let (version, rest) = rest.split_once(':')?;
    let (entity, _) = rest.split_once(':')?;
    Some((version.parse().ok()?, entity))
}

#[cfg(test)]
mod tests {
    use super::version_of;

    #[test]
    fn versions_are_read_from_the_key_shape_only() {
        assert_eq!(
            version_of("shop", "shop:v3:product:1"),
            Some((3, "product"))
        );
        assert_eq!(version_of("shop", "shop:v12:p:x:y"), Some((12, "p")));
        assert_eq!(version_of("shop", "shop:vx:product:1"), None);
        assert_eq!(version_of("shop", "shop:%invalidations"), None);
        assert_eq!(version_of("shop", "shopping:v1:product:1"), None);
        assert_eq!(
            version_of("shop", "{shop:v3:product_list:7}:%variants"),
            Some((3, "product_list"))
        );
        assert_eq!(
            version_of("shop", "{shop:v3:product:1}:%revision"),
            Some((3, "product"))
        );
        assert_eq!(version_of("shop", "{shop:%mark}:%epoch"), None);
        assert_eq!(version_of("shop", "blog:v1:shop:v2:x"), None);
    }
}
