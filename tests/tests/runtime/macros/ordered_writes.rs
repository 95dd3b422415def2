//! `#[cache_put]` with a `revision`: racing writes keep the newest value, deletions included;
//! and every write-through is stamped before its body, so an invalidation made meanwhile covers
//! it.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use cache_runtime::{Cache, Ttl, cache_put, cached, with_cache};
use serde::{Deserialize, Serialize};
use tokio::sync::Notify;

use crate::cache;
use cache_tests::RedisServer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Row {
    id: u64,
    version: u64,
}

fn row(id: u64, version: u64) -> Row {
    Row { id, version }
}

/// The source: rows by id, reads counted. Writers commit to it, then write through.
#[derive(Debug, Default)]
struct Rows {
    rows: Mutex<BTreeMap<u64, Row>>,
    reads: AtomicUsize,
}

impl Rows {
    fn commit(&self, row: Row) {
        self.rows.lock().expect("rows").insert(row.id, row);
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    #[cached(entity = "row", key = "{id}")]
    async fn read(&self, id: u64) -> Result<Option<Row>, Infallible> {
        self.reads.fetch_add(1, Ordering::SeqCst);
        Ok(self.rows.lock().expect("rows").get(&id).cloned())
    }

    /// What a writer that committed `row` writes through, ordered by the row's version.
    #[cache_put(entity = "row", key = "{id}", revision = |row| row.as_ref().map_or(0, |r| r.version))]
    async fn written(&self, id: u64, row: Row) -> Result<Option<Row>, Infallible> {
        Ok(Some(row))
    }

    /// The same write without a revision.
    #[cache_put(entity = "row", key = "{id}")]
    async fn written_unordered(&self, id: u64, row: Row) -> Result<Option<Row>, Infallible> {
        Ok(Some(row))
    }

    /// A deleted row: its absence, one revision above its last version.
    #[cache_put(entity = "row", key = "{id}", revision = version + 1)]
    async fn deleted(&self, id: u64, version: u64) -> Result<Option<Row>, Infallible> {
        self.rows.lock().expect("rows").remove(&id);
        Ok(None)
    }

    /// A write-through whose body says it `started`, then waits for `gate` (a slow commit).
    #[cache_put(entity = "row", key = "{id}")]
    async fn written_slowly(
        &self,
        id: u64,
        row: Row,
        started: &Notify,
        gate: &Notify,
    ) -> Result<Option<Row>, Infallible> {
        started.notify_one();
        gate.notified().await;
        Ok(Some(row))
    }
}

async fn invalidate_row(cache: &Cache, id: u64) {
    let rows = cache.entity("row").expect("entity");
    cache.invalidate_id(&rows, &id).await.expect("invalidate");
}

#[tokio::test]
async fn of_two_racing_writes_the_newer_stays_whichever_lands_last() {
    let server = RedisServer::start();
    let rows = Rows::default();
    with_cache(cache(&server), async {
        // Two writers committed versions 5 then 6; their write-throughs land 6 first.
        rows.commit(row(1, 6));
        rows.written(1, row(1, 6)).await.expect("write");
        rows.written(1, row(1, 5)).await.expect("write");
        assert_eq!(rows.read(1).await, Ok(Some(row(1, 6))));
        // The same revision again is the same content: stored again, harmlessly.
        rows.written(1, row(1, 6)).await.expect("write");
        assert_eq!(rows.read(1).await, Ok(Some(row(1, 6))));
        assert_eq!(rows.reads(), 0, "every read came from the cache");

        // The revision is kept inside the value: no record beside it.
        assert_eq!(
            server.query::<u8>(redis::cmd("EXISTS").arg("{test:v1:row:1}:%revision")),
            0
        );

        // Without a revision the late write wins: what the revision is for.
        rows.commit(row(2, 6));
        rows.written_unordered(2, row(2, 6)).await.expect("write");
        rows.written_unordered(2, row(2, 5)).await.expect("write");
        assert_eq!(rows.read(2).await, Ok(Some(row(2, 5))));
    })
    .await;
}

#[tokio::test]
async fn a_late_write_cannot_bring_back_a_deleted_row() {
    let server = RedisServer::start();
    let rows = Rows::default();
    with_cache(cache(&server), async {
        rows.commit(row(1, 5));
        rows.deleted(1, 5).await.expect("delete");
        // The update committed before the delete writes through after it.
        rows.written(1, row(1, 5)).await.expect("write");
        assert_eq!(rows.read(1).await, Ok(None));
        assert_eq!(rows.reads(), 0, "the absence was cached by the delete");
    })
    .await;
}

#[tokio::test]
async fn the_revision_outlives_an_invalidation_and_a_reload() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let rows = Rows::default();
    with_cache(cache.clone(), async {
        rows.commit(row(1, 6));
        rows.written(1, row(1, 6)).await.expect("write");
        let value_ttl = server.query::<i64>(redis::cmd("PTTL").arg("test:v1:row:1"));
        invalidate_row(&cache, 1).await;
        // The deletion leaves the revision in a record, for what was left of the value's TTL.
        let record = "{test:v1:row:1}:%revision";
        assert_eq!(
            server.query::<Option<String>>(redis::cmd("GET").arg(record)),
            Some("6".to_owned())
        );
        let record_ttl = server.query::<i64>(redis::cmd("PTTL").arg(record));
        assert!(
            record_ttl > 0 && (value_ttl - record_ttl).abs() < 1_000,
            "{value_ttl} vs {record_ttl}"
        );
        assert_eq!(rows.read(1).await, Ok(Some(row(1, 6))), "reloaded");
        assert_eq!(rows.reads(), 1);
        rows.written(1, row(1, 5)).await.expect("write");
        assert_eq!(rows.read(1).await, Ok(Some(row(1, 6))));
        assert_eq!(rows.reads(), 1, "the reloaded value stayed");
        // A newer write carries its revision in the value: the record has done its work.
        rows.commit(row(1, 7));
        rows.written(1, row(1, 7)).await.expect("write");
        assert_eq!(rows.read(1).await, Ok(Some(row(1, 7))));
        assert_eq!(
            server.query::<u8>(redis::cmd("EXISTS").arg(record)),
            0,
            "no record once a value holds the revision"
        );
    })
    .await;
}

#[tokio::test]
async fn an_invalidation_made_while_a_write_through_runs_covers_its_value() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let rows = Rows::default();
    let (started, gate) = (Notify::new(), Notify::new());
    with_cache(cache.clone(), async {
        rows.commit(row(1, 5));
        let write = rows.written_slowly(1, row(1, 5), &started, &gate);
        let bulk_change = async {
            // A bulk change commits version 6 and invalidates the entity while the write
            // runs; the write then stores the version 5 it computed before.
            started.notified().await;
            rows.commit(row(1, 6));
            let entity = cache.entity("row").expect("entity");
            cache.invalidate_entity(&entity).await.expect("invalidate");
            gate.notify_one();
        };
        let (written, ()) = tokio::join!(write, bulk_change);
        assert_eq!(written, Ok(Some(row(1, 5))));
        assert_eq!(
            rows.read(1).await,
            Ok(Some(row(1, 6))),
            "not the older value"
        );
        assert_eq!(rows.reads(), 1);
    })
    .await;
}

#[tokio::test]
async fn set_ordered_compares_revisions_exactly() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let key = cache.entity("row").expect("entity").key(&1u64);
    let big = 1u64 << 60;
    // Past 2^53 a float comparison would call these equal; 9 and 10 differ in length.
    for (revision, stored) in [
        (9, true),
        (10, true),
        (9, false),
        (10, true),
        (big, true),
        (big + 1, true),
        (big, false),
        (u64::MAX, true),
        (u64::MAX - 1, false),
    ] {
        let written = cache
            .set_ordered(&key, &revision, Ttl::Medium, revision)
            .await
            .expect("set");
        assert_eq!(written, stored, "revision {revision}");
    }
    assert_eq!(cache.get::<u64>(&key).await.expect("get"), Some(u64::MAX));
}

/// The script finds the revision after a variant's id token too, and a deletion of one key
/// (`Cache::delete`) remembers it like an id invalidation does.
#[tokio::test]
async fn a_variant_key_is_ordered_and_its_deletion_remembered() {
    let server = RedisServer::start();
    let cache = cache(&server);
    let rows = cache.entity("row").expect("entity");
    let key = rows.variant_key(&1u64, "summary");
    assert!(
        cache
            .set_ordered(&key, &10u64, Ttl::Medium, 10)
            .await
            .expect("set")
    );
    assert!(
        !cache
            .set_ordered(&key, &9u64, Ttl::Medium, 9)
            .await
            .expect("set")
    );
    assert!(
        cache
            .set_ordered(&key, &11u64, Ttl::Medium, 11)
            .await
            .expect("set")
    );
    assert!(cache.delete(&key).await.expect("delete"));
    assert!(
        !cache
            .set_ordered(&key, &10u64, Ttl::Medium, 10)
            .await
            .expect("set")
    );
    assert_eq!(cache.get::<u64>(&key).await.expect("get"), None);
    assert!(
        cache
            .set_ordered(&key, &12u64, Ttl::Medium, 12)
            .await
            .expect("set")
    );
    assert_eq!(cache.get::<u64>(&key).await.expect("get"), Some(12));
}
