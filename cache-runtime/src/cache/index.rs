//! Indexes that let invalidations find keys without scanning the keyspace: an id's variants,
//! an entity's keys, a tag's keys. Each write records its key in them; so does each lease, so
//! that invalidating voids the leases of loads still in progress.

use redis::Pipeline;

use crate::entity::CacheKey;

/// The sorted set of the keys carrying `tag` (scored by expiry), under the key's app and
/// version. Tags are rendered like ids (literal text, escaped values), so `%` separates them
/// from every key.
pub(crate) fn tag_index(key: &CacheKey, tag: &str) -> String {
    format!("{}%tag:{tag}", key.entity().prefix().version_prefix())
}

/// Records `key`, live for `ttl_ms` from `now_ms`, in every index it belongs to.
pub(crate) fn record(
    pipeline: &mut Pipeline,
    key: &CacheKey,
    tags: &[String],
    ttl_ms: u64,
    now_ms: u64,
) {
    if let Some(variants) = key.variants_index() {
        pipeline
            .cmd("SADD")
            .arg(&variants)
            .arg(key.as_str())
            .ignore();
        expire_with_members(pipeline, &variants, ttl_ms);
    }
    let expires_ms = now_ms.saturating_add(ttl_ms);
    let entity_index = key.entity().prefix().keys_index();
    sorted(pipeline, &entity_index, key, expires_ms, now_ms, ttl_ms);
    for tag in tags {
        sorted(
            pipeline,
            &tag_index(key, tag),
            key,
            expires_ms,
            now_ms,
            ttl_ms,
        );
    }
}

/// Adds `key` with its expiry as score (`GT` adds new members and never shortens an existing
/// one's), and trims members that expired, so an index holds live keys only.
fn sorted(
    pipeline: &mut Pipeline,
    index: &str,
    key: &CacheKey,
    expires_ms: u64,
    now_ms: u64,
    ttl_ms: u64,
) {
    pipeline
        .cmd("ZADD")
        .arg(index)
        .arg("GT")
        .arg(expires_ms)
        .arg(key.as_str())
        .ignore()
        .cmd("ZREMRANGEBYSCORE")
        .arg(index)
        .arg("-inf")
        .arg(now_ms)
        .ignore();
    expire_with_members(pipeline, index, ttl_ms);
}

/// An index lives as long as its longest-lived entry: `NX` gives a new one its first expiry,
/// `GT` only ever extends it.
fn expire_with_members(pipeline: &mut Pipeline, index: &str, ttl_ms: u64) {
    pipeline
        .cmd("PEXPIRE")
        .arg(index)
        .arg(ttl_ms)
        .arg("NX")
        .ignore()
        .cmd("PEXPIRE")
        .arg(index)
        .arg(ttl_ms)
        .arg("GT")
        .ignore();
}
