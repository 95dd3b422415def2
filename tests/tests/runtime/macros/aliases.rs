//! `Result` and `Option` under other names are cached like the types they name.

use std::sync::atomic::{AtomicU32, Ordering};

use cache_runtime::{cache_put, cached, invalidates, with_cache};
use serde::{Deserialize, Serialize};

use crate::cache;
use cache_tests::RedisServer;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct DbError(String);

type DbResult<T> = Result<T, DbError>;
type Maybe<T> = Option<T>;

/// Not serializable: only `Ok` values are ever encoded.
#[derive(Debug)]
struct OpaqueError;

static CALLS: AtomicU32 = AtomicU32::new(0);
static DOWN: AtomicU32 = AtomicU32::new(1);

#[cached(entity = "aliased", key = "{id}")]
async fn aliased(id: u32) -> DbResult<String> {
    CALLS.fetch_add(1, Ordering::SeqCst);
    if DOWN.load(Ordering::SeqCst) == 1 {
        return Err(DbError("database down".to_owned()));
    }
    Ok(format!("row {id}"))
}

#[cached(entity = "io_aliased", key = "{id}")]
async fn io_aliased(id: u32) -> std::io::Result<u32> {
    Ok(id)
}

#[cached(entity = "opaque", key = "{id}")]
async fn opaque(id: u32) -> Result<u32, OpaqueError> {
    Ok(id)
}

type OpaqueResult<T> = Result<T, OpaqueError>;

#[cached(entity = "opaque_aliased", key = "{id}")]
async fn opaque_aliased(id: u32) -> OpaqueResult<u32> {
    Ok(id)
}

#[cached(entity = "maybe", key = "{id}")]
async fn maybe(id: u32) -> Maybe<u32> {
    (id > 0).then_some(id)
}

#[cache_put(entity = "aliased", key = "{id}")]
async fn save(id: u32, fail: bool) -> DbResult<String> {
    if fail {
        Err(DbError("rejected".to_owned()))
    } else {
        Ok(format!("saved {id}"))
    }
}

#[invalidates(entity = "aliased", key = "{id}")]
async fn update(id: u32, fail: bool) -> DbResult<()> {
    let _ = id;
    if fail {
        Err(DbError("rejected".to_owned()))
    } else {
        Ok(())
    }
}

#[tokio::test]
async fn an_error_returned_through_an_alias_is_never_cached() {
    let server = RedisServer::start();
    let cache = cache(&server);
    with_cache(cache.clone(), async {
        assert_eq!(aliased(1).await, Err(DbError("database down".to_owned())));
        assert_eq!(aliased(1).await, Err(DbError("database down".to_owned())));
        assert_eq!(
            CALLS.load(Ordering::SeqCst),
            2,
            "the error was not served from the cache"
        );
        DOWN.store(0, Ordering::SeqCst);
        assert_eq!(aliased(1).await.as_deref(), Ok("row 1"));
        assert_eq!(aliased(1).await.as_deref(), Ok("row 1"));
        assert_eq!(CALLS.load(Ordering::SeqCst), 3, "Ok is cached");

        // A write-through of an `Err` stores nothing; an `Ok` is stored.
        assert!(save(1, true).await.is_err());
        assert_eq!(aliased(1).await.as_deref(), Ok("row 1"));
        assert!(save(1, false).await.is_ok());
        assert_eq!(aliased(1).await.as_deref(), Ok("saved 1"));

        // A failed update invalidates nothing; a successful one does.
        assert!(update(1, true).await.is_err());
        assert_eq!(aliased(1).await.as_deref(), Ok("saved 1"));
        assert!(update(1, false).await.is_ok());
        assert_eq!(aliased(1).await.as_deref(), Ok("row 1"));

        assert_eq!(io_aliased(4).await.ok(), Some(4));
        assert_eq!(opaque(5).await.ok(), Some(5));
        assert_eq!(opaque_aliased(6).await.ok(), Some(6));
        assert_eq!(maybe(0).await, None);
        assert_eq!(maybe(7).await, Some(7));
    })
    .await;
    assert_eq!(
        server.cached_keys("test:v1:*"),
        vec![
            "test:v1:aliased:1",
            "test:v1:io_aliased:4",
            "test:v1:maybe:7",
            "test:v1:opaque:5",
            "test:v1:opaque_aliased:6",
        ],
        "no error and no absence was stored"
    );
}
