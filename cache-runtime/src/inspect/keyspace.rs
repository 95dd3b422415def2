//! `cachectl keys` and `cachectl ttl`: one `SCAN` pass over the keyspace, counted by namespace.

use std::collections::BTreeMap;
use std::time::Duration;

use redis::RedisResult;
use redis::aio::ConnectionLike;

/// Upper bounds of the TTL histogram's buckets; a last bucket holds the longer ones.
pub const TTL_BUCKETS: [Duration; 6] = [
    Duration::from_secs(10),
    Duration::from_secs(60),
    Duration::from_secs(10 * 60),
    Duration::from_secs(60 * 60),
    Duration::from_secs(6 * 60 * 60),
    Duration::from_secs(24 * 60 * 60),
];

/// What one pass looks at.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ScanOptions {
    /// Only keys of this app (its values, and its bookkeeping keys); `None`: every key.
    pub app: Option<String>,
    /// `MEMORY USAGE` on this many keys per namespace (the first seen: `SCAN` order is the
    /// hash table's, so they are spread over the namespace); 0: no memory figures.
    pub memory_samples: u64,
    /// `PTTL` of every key, for [`Namespace::ttl`].
    pub ttl: bool,
    /// Stop after this many keys (`None`: the whole keyspace).
    pub limit: Option<u64>,
    /// Keys per `SCAN` step: the most work one step asks of Redis.
    pub batch: usize,
}

impl Default for ScanOptions {
    fn default() -> Self {
        Self {
            app: None,
            memory_samples: 100,
            ttl: false,
            limit: None,
            batch: 500,
        }
    }
}

impl ScanOptions {
    /// Options for `app`'s keys.
    pub fn for_app(app: Option<String>) -> Self {
        Self {
            app,
            ..Self::default()
        }
    }
}

/// Counts of TTLs: `buckets[i]` holds TTLs up to `TTL_BUCKETS[i]` (and above the bucket before),
/// the last one the longer ones.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TtlHistogram {
    /// One count per bound in [`TTL_BUCKETS`], then the TTLs above the last bound.
    pub buckets: [u64; TTL_BUCKETS.len() + 1],
    /// Keys without a TTL: for cached values, a problem (they stay until evicted).
    pub no_ttl: u64,
    /// Keys that expired between `SCAN` and `PTTL`.
    pub gone: u64,
}

impl TtlHistogram {
    fn add(&mut self, pttl_ms: i64) {
        match pttl_ms {
            -2 => self.gone += 1,
            ms if ms < 0 => self.no_ttl += 1,
            ms => {
                let ttl = Duration::from_millis(ms.unsigned_abs());
                let at = TTL_BUCKETS
                    .iter()
                    .position(|bound| ttl <= *bound)
                    .unwrap_or(TTL_BUCKETS.len());
                self.buckets[at] += 1;
            }
        }
    }

    /// Every key counted: the buckets, `no_ttl` and `gone` add up to the namespace's keys.
    pub fn total(&self) -> u64 {
        self.buckets.iter().sum::<u64>() + self.no_ttl + self.gone
    }
}

/// The keys of one app, version and entity (or an app's own bookkeeping).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Namespace {
    /// The app prefix.
    pub app: String,
    /// The schema version, for keys of an entity.
    pub version: Option<u32>,
    /// The entity, for keys of an entity.
    pub entity: Option<String>,
    /// Bookkeeping keys (marks, leases, variant tokens, cursors: a `%` part), not values.
    pub bookkeeping: bool,
    /// Keys found.
    pub keys: u64,
    /// Keys whose memory was measured.
    pub sampled: u64,
    /// Their bytes (`MEMORY USAGE`).
    pub sampled_bytes: u64,
    /// Their TTLs, when asked for.
    pub ttl: TtlHistogram,
}

impl Namespace {
    /// Bytes of the whole namespace: measured when every key was sampled, else extrapolated.
    pub fn estimated_bytes(&self) -> u64 {
        match self.sampled {
            0 => 0,
            n if n >= self.keys => self.sampled_bytes,
            n => (self.sampled_bytes as f64 / n as f64 * self.keys as f64) as u64,
        }
    }

    /// Whether the memory figure is extrapolated from a sample.
    pub fn memory_is_sampled(&self) -> bool {
        self.sampled < self.keys
    }
}

/// What one pass found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeySpace {
    /// By app, version, entity; bookkeeping after values.
    pub namespaces: Vec<Namespace>,
    /// Keys looked at (of the app, when one was given).
    pub scanned: u64,
    /// Whether the whole keyspace was covered (`false`: stopped by `limit`).
    pub complete: bool,
}

/// The namespace a key belongs to, or `None` for a key of another app (or none of ours).
fn classify(key: &str, app: Option<&str>) -> Option<(String, Option<u32>, Option<String>, bool)> {
    let bookkeeping = crate::key::is_bookkeeping(key);
    // `{<id key>}:%variants`, `{<key>}:%lease` and `{<key>}:%revision` share their key's
    // Cluster slot.
    let bare = key.strip_prefix('{').unwrap_or(key);
    let mut parts = bare.splitn(4, ':');
    let key_app = parts.next()?;
    if app.is_some_and(|app| app != key_app) || key_app.is_empty() {
        return None;
    }
    let version = parts
        .next()
        .and_then(|v| v.strip_prefix('v'))
        .and_then(|v| v.parse::<u32>().ok());
    let entity = version
        .and(parts.next())
        .filter(|e| !e.is_empty() && !e.starts_with('%'))
        .map(str::to_owned);
    Some((key_app.to_owned(), version, entity, bookkeeping))
}

/// One `SCAN` pass: keys (and, as asked, memory and TTLs) per namespace. `progress` is called
/// with the keys looked at so far after each step.
pub async fn scan_keyspace<C: ConnectionLike>(
    conn: &mut C,
    options: &ScanOptions,
    progress: &mut dyn FnMut(u64),
) -> RedisResult<KeySpace> {
    scan_keyspace_nodes(std::slice::from_mut(conn), options, progress).await
}

/// [`scan_keyspace`] over several nodes (every master of a cluster), each with its own cursor,
/// into one report; `limit` counts keys of all of them.
pub async fn scan_keyspace_nodes<C: ConnectionLike>(
    conns: &mut [C],
    options: &ScanOptions,
    progress: &mut dyn FnMut(u64),
) -> RedisResult<KeySpace> {
    let pattern = match &options.app {
        // Values start with `app:`, slot-sharing bookkeeping with `{app:`.
        Some(app) => format!("*{app}:*"),
        None => "*".to_owned(),
    };
    let mut by_name: BTreeMap<(String, Option<u32>, Option<String>, bool), Namespace> =
        BTreeMap::new();
    let mut space = KeySpace {
        complete: true,
        ..KeySpace::default()
    };
    for conn in conns {
        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(options.batch)
                .query_async(conn)
                .await?;
            let mut ours = Vec::with_capacity(keys.len());
            for key in keys {
                if options.limit.is_some_and(|limit| space.scanned >= limit) {
                    break;
                }
                let Some(name) = classify(&key, options.app.as_deref()) else {
                    continue;
                };
                space.scanned += 1;
                let namespace = by_name.entry(name.clone()).or_insert_with(|| Namespace {
                    app: name.0.clone(),
                    version: name.1,
                    entity: name.2.clone(),
                    bookkeeping: name.3,
                    ..Namespace::default()
                });
                namespace.keys += 1;
                // The first keys seen of each namespace are its sample.
                let sample = namespace.keys <= options.memory_samples;
                ours.push((key, name, sample));
            }
            measure(conn, &ours, options, &mut by_name).await?;
            progress(space.scanned);
            cursor = next;
            let limited = options.limit.is_some_and(|limit| space.scanned >= limit);
            if limited {
                space.complete = false;
            }
            if cursor == 0 || limited {
                break;
            }
        }
        if !space.complete {
            break;
        }
    }
    space.namespaces = by_name.into_values().collect();
    space.namespaces.sort_by(|a, b| {
        (a.bookkeeping, &a.app, a.version, &a.entity).cmp(&(
            b.bookkeeping,
            &b.app,
            b.version,
            &b.entity,
        ))
    });
    Ok(space)
}

type Name = (String, Option<u32>, Option<String>, bool);

/// `PTTL` and `MEMORY USAGE` for one step's keys, in one pipeline.
async fn measure<C: ConnectionLike>(
    conn: &mut C,
    keys: &[(String, Name, bool)],
    options: &ScanOptions,
    by_name: &mut BTreeMap<Name, Namespace>,
) -> RedisResult<()> {
    let mut pipe = redis::pipe();
    for (key, _, sample) in keys {
        if options.ttl {
            pipe.cmd("PTTL").arg(key);
        }
        if *sample {
            pipe.cmd("MEMORY").arg("USAGE").arg(key);
        }
    }
    if pipe.is_empty() {
        return Ok(());
    }
    let replies: Vec<redis::Value> = pipe.query_async(conn).await?;
    let mut replies = replies.into_iter();
    for (_, name, sample) in keys {
        let Some(namespace) = by_name.get_mut(name) else {
            continue;
        };
        if options.ttl
            && let Some(redis::Value::Int(pttl)) = replies.next()
        {
            namespace.ttl.add(pttl);
        }
        // A key that expired between SCAN and MEMORY USAGE answers nil: not a sample.
        if *sample && let Some(redis::Value::Int(bytes)) = replies.next() {
            namespace.sampled += 1;
            namespace.sampled_bytes += u64::try_from(bytes).unwrap_or(0);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_fall_into_their_namespaces() {
        let app = Some("shop");
        assert_eq!(
            classify("shop:v1:product:42", app),
            Some(("shop".into(), Some(1), Some("product".into()), false))
        );
        assert_eq!(
            classify("shop:v2:product_list:7:p2", app),
            Some(("shop".into(), Some(2), Some("product_list".into()), false))
        );
        assert_eq!(
            classify("{shop:v1:product:42}:%lease", app),
            Some(("shop".into(), Some(1), Some("product".into()), true))
        );
        assert_eq!(
            classify("{shop:v1:product:42}:%revision", app),
            Some(("shop".into(), Some(1), Some("product".into()), true))
        );
        assert_eq!(
            classify("shop:v1:product:%mark", app),
            Some(("shop".into(), Some(1), Some("product".into()), true))
        );
        assert_eq!(
            classify("{shop:%mark}:%epoch", app),
            Some(("shop".into(), None, None, true))
        );
        assert_eq!(
            classify("shop:%tag:category:7", app),
            Some(("shop".into(), None, None, true))
        );
        // An escaped value's `%` is followed by hex digits: still a value.
        assert_eq!(
            classify("shop:v1:feed:7%3a2", app),
            Some(("shop".into(), Some(1), Some("feed".into()), false))
        );
        assert_eq!(classify("blog:v1:post:1", app), None);
        assert_eq!(
            classify("session:abc", None).map(|n| n.0),
            Some("session".into())
        );
    }

    #[test]
    fn ttl_buckets_add_up() {
        let mut histogram = TtlHistogram::default();
        for pttl in [
            -2, -1, 0, 5_000, 10_000, 10_001, 59_000, 3_600_000, 90_000_000,
        ] {
            histogram.add(pttl);
        }
        assert_eq!(histogram.total(), 9);
        assert_eq!((histogram.gone, histogram.no_ttl), (1, 1));
        assert_eq!(histogram.buckets[0], 3, "up to 10 s");
        assert_eq!(histogram.buckets[1], 2, "up to 1 min");
        assert_eq!(histogram.buckets[3], 1, "up to 1 h");
        assert_eq!(histogram.buckets[6], 1, "above 1 d");
    }
}
