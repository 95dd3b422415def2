//! The framework's Redis protocol for a miss and a write, issued by hand with redis-rs: the
//! same commands in the same round trips, with nothing else around them. The gap between a
//! row of these and hand-written cache-aside is what the protocol's guarantees cost; the gap
//! between these and the `Cache` rows is the framework's own code.

use std::sync::atomic::{AtomicU64, Ordering};

use redis::aio::MultiplexedConnection;

use crate::product::{Product, product};

/// The populate script the runtime sends (cache-runtime `cache/lease.rs`, `PROMOTE`).
const PROMOTE: &str = r"
if redis.call('GET', KEYS[3]) ~= ARGV[1] then redis.call('UNLINK', KEYS[1]) return 0 end
redis.call('DEL', KEYS[3])
if redis.pcall('RENAME', KEYS[1], KEYS[2])['err'] then return 0 end
return 1
";

static TOKENS: AtomicU64 = AtomicU64::new(1);

/// Loads [`PROMOTE`] and answers its digest.
pub async fn load_promote(conn: &MultiplexedConnection) -> String {
    redis::cmd("SCRIPT")
        .arg("LOAD")
        .arg(PROMOTE)
        .query_async(&mut conn.clone())
        .await
        .expect("SCRIPT LOAD")
}

/// A miss as the runtime makes it: `GET`; the lease (`SET NX GET PX`); the source; `SET PX`
/// of the value beside the key with the populate script in one round trip.
pub async fn leased_miss(conn: &MultiplexedConnection, promote: &str, id: u64) -> Product {
    let mut conn = conn.clone();
    let key = format!("proto:miss:{id}");
    let found: Option<Vec<u8>> = redis::cmd("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .expect("GET");
    if let Some(bytes) = found {
        return postcard::from_bytes(&bytes).expect("decode");
    }
    let token = format!("{:016x}:1:0", TOKENS.fetch_add(1, Ordering::Relaxed));
    let lease = format!("{{{key}}}:%lease");
    let held: Option<String> = redis::cmd("SET")
        .arg(&lease)
        .arg(&token)
        .arg("NX")
        .arg("GET")
        .arg("PX")
        .arg(2_000)
        .query_async(&mut conn)
        .await
        .expect("lease");
    assert!(held.is_none(), "every id is new");
    let value = product(id);
    let beside = format!("{{{key}}}:%loaded:{token}");
    let (stored,): (u8,) = redis::pipe()
        .cmd("SET")
        .arg(&beside)
        .arg(postcard::to_stdvec(&value).expect("encode"))
        .arg("PX")
        .arg(super::RAW_TTL_MS)
        .ignore()
        .cmd("EVALSHA")
        .arg(promote)
        .arg(3)
        .arg(&beside)
        .arg(&key)
        .arg(&lease)
        .arg(&token)
        .query_async(&mut conn)
        .await
        .expect("populate");
    assert_eq!(stored, 1);
    value
}

/// A write as the runtime makes it: `UNLINK` of the lease, `SET PX`, `PUBLISH` of the key
/// event, in one round trip.
pub async fn guarded_set(conn: &MultiplexedConnection, id: u64) -> Product {
    let key = format!("proto:write:{id}");
    let value = product(id);
    let () = redis::pipe()
        .cmd("UNLINK")
        .arg(format!("{{{key}}}:%lease"))
        .ignore()
        .cmd("SET")
        .arg(&key)
        .arg(postcard::to_stdvec(&value).expect("encode"))
        .arg("PX")
        .arg(super::RAW_TTL_MS)
        .ignore()
        .cmd("PUBLISH")
        .arg("proto:v1:product:%keys")
        .arg(&key)
        .ignore()
        .query_async(&mut conn.clone())
        .await
        .expect("write");
    value
}
