//! The history checker's workload and check: `Cache` instances run random reads, writes with
//! every kind of invalidation, ordered write-throughs, forced refreshes and pattern
//! invalidations on a few rows of a versioned "database" (its own `redis-server`), and record
//! each operation's start, end and result. [`check`] then finds every read that returned a
//! version older than the newest write whose invalidation had completed before the read began
//! (plus the bus delay, for a write made by another instance).
//!
//! Times are µs of the system clock, so the histories of several processes on one machine
//! merge. Seeded: a run's operations are the same for the same seed (their interleaving with
//! faults is not).

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cache_runtime::{Cache, CacheConfig, ReadOptions, Ttl, cached, refreshing, with_cache};

/// Rows the workload reads and writes: few, so operations collide.
pub const ROWS: u32 = 8;

/// Rows from here on are written through with revisions; the others are written and then
/// invalidated. As docs/macros.md says, a key's writes are ordered only among ordered writes:
/// an older write-through still on its way may land after a newer write's plain invalidation
/// (the checker found exactly that when the two were mixed on one row).
const FIRST_ORDERED_ROW: u32 = 6;

/// Microseconds since the Unix epoch.
pub fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

/// One recorded operation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// A read of `row` that answered `version`.
    Read {
        instance: String,
        row: u32,
        start: u64,
        end: u64,
        version: u64,
    },
    /// A write of `row` to `version`, then its invalidation (`how`), which `ok` says returned
    /// success.
    Write {
        instance: String,
        row: u32,
        version: u64,
        how: &'static str,
        start: u64,
        end: u64,
        ok: bool,
    },
}

impl fmt::Display for Op {
    /// One line, as [`Op::parse`] reads it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Read {
                instance,
                row,
                start,
                end,
                version,
            } => write!(f, "R {instance} {row} {start} {end} {version}"),
            Self::Write {
                instance,
                row,
                version,
                how,
                start,
                end,
                ok,
            } => write!(f, "W {instance} {row} {version} {how} {start} {end} {ok}"),
        }
    }
}

/// How a write invalidates what it changed: one of the first five for rows below
/// [`FIRST_ORDERED_ROW`], an ordered write-through for the others.
const HOWS: [&str; 6] = ["id", "delete", "entity", "all", "matching", "ordered"];

impl Op {
    pub fn parse(line: &str) -> Option<Self> {
        let parts: Vec<&str> = line.split_whitespace().collect();
        match parts.as_slice() {
            ["R", instance, row, start, end, version] => Some(Self::Read {
                instance: (*instance).to_owned(),
                row: row.parse().ok()?,
                start: start.parse().ok()?,
                end: end.parse().ok()?,
                version: version.parse().ok()?,
            }),
            ["W", instance, row, version, how, start, end, ok] => Some(Self::Write {
                instance: (*instance).to_owned(),
                row: row.parse().ok()?,
                version: version.parse().ok()?,
                how: HOWS.iter().find(|h| *h == how)?,
                start: start.parse().ok()?,
                end: end.parse().ok()?,
                ok: ok.parse().ok()?,
            }),
            _ => None,
        }
    }
}

/// A read that returned an older version than a write completed before it began.
#[derive(Debug)]
pub struct Violation {
    pub read: Op,
    pub newer: Op,
}

/// A completed write, as the check needs it.
struct Done<'a> {
    end: u64,
    version: u64,
    instance: &'a str,
    op: &'a Op,
}

/// Every read that returned a version older than the newest write of its row whose
/// invalidation completed (successfully) before the read began: at once for the instance that
/// made the write, `bus_delay_us` later for the others. O(n log n): per row, writes sorted by
/// end with the running maximum of their versions.
pub fn check(ops: &[Op], bus_delay_us: u64) -> Vec<Violation> {
    let mut by_row: std::collections::HashMap<u32, Vec<Done<'_>>> = Default::default();
    for op in ops {
        if let Op::Write {
            instance,
            row,
            version,
            end,
            ok: true,
            ..
        } = op
        {
            by_row.entry(*row).or_default().push(Done {
                end: *end,
                version: *version,
                instance,
                op,
            });
        }
    }
    // Per row: writes by end, and the index of the newest version among the first i + 1.
    let mut newest_upto: std::collections::HashMap<u32, Vec<usize>> = Default::default();
    for (row, writes) in &mut by_row {
        writes.sort_by_key(|w| w.end);
        let mut best = 0;
        let upto = (0..writes.len())
            .map(|i| {
                if writes[i].version > writes[best].version {
                    best = i;
                }
                best
            })
            .collect();
        newest_upto.insert(*row, upto);
    }
    let mut violations = Vec::new();
    for read in ops {
        let Op::Read {
            instance,
            row,
            start,
            version,
            ..
        } = read
        else {
            continue;
        };
        let (Some(writes), Some(upto)) = (by_row.get(row), newest_upto.get(row)) else {
            continue;
        };
        // Every instance's writes that ended a bus delay before the read began...
        let seen_by_all = writes.partition_point(|w| w.end.saturating_add(bus_delay_us) < *start);
        let mut newest = seen_by_all.checked_sub(1).map(|i| &writes[upto[i]]);
        // ...and the reader's own that ended since, before it began.
        let own = writes[seen_by_all..]
            .iter()
            .take_while(|w| w.end < *start)
            .filter(|w| w.instance == instance);
        for write in own {
            if newest.is_none_or(|n| write.version > n.version) {
                newest = Some(write);
            }
        }
        if let Some(newer) = newest.filter(|n| *version < n.version) {
            violations.push(Violation {
                read: read.clone(),
                newer: newer.op.clone(),
            });
        }
    }
    violations
}

/// The versioned rows, on their own `redis-server` (so other processes share them).
#[derive(Clone)]
pub struct Db {
    connection: redis::aio::MultiplexedConnection,
}

impl fmt::Debug for Db {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Db").finish_non_exhaustive()
    }
}

impl Db {
    pub async fn connect(url: &str) -> redis::RedisResult<Self> {
        let connection = redis::Client::open(url)?
            .get_multiplexed_async_connection()
            .await?;
        Ok(Self { connection })
    }

    /// The row's current version (0 before its first write).
    pub async fn version(&self, row: u32) -> Result<u64, String> {
        let mut connection = self.connection.clone();
        redis::cmd("GET")
            .arg(format!("db:{row}"))
            .query_async::<Option<u64>>(&mut connection)
            .await
            .map(Option::unwrap_or_default)
            .map_err(|e| e.to_string())
    }

    /// Writes the row: its new version.
    async fn bump(&self, row: u32) -> Result<u64, String> {
        let mut connection = self.connection.clone();
        redis::cmd("INCR")
            .arg(format!("db:{row}"))
            .query_async(&mut connection)
            .await
            .map_err(|e| e.to_string())
    }
}

/// The row, read through the cache by the macro (the forced refresh's door).
#[cached(entity = "row", key = "{row}")]
async fn cached_row(db: &Db, row: u32) -> Result<u64, String> {
    db.version(row).await
}

/// A small seeded generator (xorshift64*): the workload needs no more.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.max(1))
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n.max(1)
    }
}

/// The configuration every instance of a history run uses: short deadlines and cooldowns, so
/// that injected faults trip breakers and end quickly.
pub fn config(url: &str) -> CacheConfig {
    let built = CacheConfig::builder()
        .redis_url(url)
        .app_prefix("history")
        .operation_timeout(Duration::from_millis(100))
        .breaker_threshold(3)
        .breaker_cooldown(Duration::from_millis(300))
        .metrics_log_interval(None)
        .build();
    match built {
        Ok(config) => config,
        Err(error) => panic!("history config: {error}"),
    }
}

/// Runs random operations on `cache` until `until_us`, recording them in `history`.
pub async fn run_worker(
    cache: Cache,
    instance: String,
    db: Db,
    seed: u64,
    until_us: u64,
    history: Arc<Mutex<Vec<Op>>>,
) {
    let mut rng = Rng::new(seed);
    let rows = match cache.entity("row") {
        Ok(rows) => rows,
        Err(error) => panic!("entity: {error}"),
    };
    while now_us() < until_us {
        let row = u32::try_from(rng.below(u64::from(ROWS))).unwrap_or(0);
        let key = rows.key(&row);
        let start = now_us();
        let dice = rng.below(100);
        let op = if dice < 70 {
            let options = match dice % 2 {
                0 => ReadOptions::new(Ttl::Medium),
                _ => ReadOptions::new(Ttl::Medium).local(),
            };
            // A load takes a while, so loads overlap invalidations.
            let pause = Duration::from_millis(rng.below(4));
            let loaded = cache
                .get_or_set_with(&key, options, || {
                    let db = db.clone();
                    async move {
                        tokio::time::sleep(pause).await;
                        db.version(row).await
                    }
                })
                .await;
            let Ok(version) = loaded else { continue };
            read_op(&instance, row, start, version)
        } else if dice < 74 {
            let refreshed = with_cache(cache.clone(), refreshing(cached_row(&db, row))).await;
            let Ok(version) = refreshed else { continue };
            read_op(&instance, row, start, version)
        } else {
            let Ok(version) = db.bump(row).await else {
                continue;
            };
            let how = match row >= FIRST_ORDERED_ROW {
                true => "ordered",
                false => invalidation(&mut rng),
            };
            let ok = match how {
                "id" => cache.invalidate_id(&rows, &row).await.is_ok(),
                "delete" => cache.delete(&key).await.is_ok(),
                "entity" => cache.invalidate_entity(&rows).await.is_ok(),
                "all" => cache.invalidate_all().await.is_ok(),
                "ordered" => {
                    let written = cache.set_ordered(&key, &version, Ttl::Medium, version);
                    written.await.is_ok()
                }
                _ => cache
                    .invalidate_matching(&rows, &row.to_string())
                    .await
                    .is_ok(),
            };
            Op::Write {
                instance: instance.clone(),
                row,
                version,
                how,
                start,
                end: now_us(),
                ok,
            }
        };
        push(&history, op);
    }
}

/// How a write to an unordered row is invalidated. Entity and app invalidations make every
/// older value unreadable, a restored snapshot's too, so they are kept rare: frequent, they
/// would hide the leaks of every other door within milliseconds.
fn invalidation(rng: &mut Rng) -> &'static str {
    match rng.below(100) {
        0..35 => "id",
        35..65 => "delete",
        65..92 => "matching",
        92..97 => "entity",
        _ => "all",
    }
}

fn read_op(instance: &str, row: u32, start: u64, version: u64) -> Op {
    Op::Read {
        instance: instance.to_owned(),
        row,
        start,
        end: now_us(),
        version,
    }
}

fn push(history: &Mutex<Vec<Op>>, op: Op) {
    history
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(op);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(instance: &str, start: u64, version: u64) -> Op {
        Op::Read {
            instance: instance.to_owned(),
            row: 1,
            start,
            end: start + 1,
            version,
        }
    }

    fn write(instance: &str, version: u64, end: u64, ok: bool) -> Op {
        Op::Write {
            instance: instance.to_owned(),
            row: 1,
            version,
            how: "id",
            start: end - 1,
            end,
            ok,
        }
    }

    #[test]
    fn a_read_older_than_a_completed_write_is_caught_and_a_concurrent_one_is_not() {
        let ops = vec![
            write("a", 2, 100, true),
            read("a", 101, 1),         // after a's own write: stale
            read("b", 105, 1),         // within the bus delay of another instance: allowed
            read("b", 200, 1),         // past it: stale
            read("a", 99, 1),          // began before the write completed: allowed
            write("a", 3, 300, false), // failed: promises nothing
            read("a", 301, 2),
        ];
        let found = check(&ops, 50);
        let stale: Vec<_> = found.iter().map(|v| v.read.clone()).collect();
        assert_eq!(stale, vec![read("a", 101, 1), read("b", 200, 1)]);
    }

    #[test]
    fn lines_round_trip() {
        for op in [read("p1-0", 5, 7), write("p1-1", 3, 9, true)] {
            assert_eq!(Op::parse(&op.to_string()), Some(op));
        }
        assert_eq!(Op::parse("nonsense"), None);
    }
}
