//! Products by the handful, for the pages and searches that list them: read from the cache in
//! one round trip, the missing ones from the database in one query, and those written back for
//! the next reader.
//!
//! A written-back product may have been read just before a change committed; it is written
//! with its version as revision ([`Cache::set_ordered`]), and every change writes its own
//! version through the same way, so the older one never replaces the newer.

use cache_runtime::{Cache, Ttl};

use crate::db::{Db, DbError, Product};

/// The products `ids` names, in that order; ids of products that do not exist are left out.
pub async fn products(db: &Db, ids: &[u64]) -> Result<Vec<Product>, DbError> {
    let cache = cache_runtime::current_for_reads();
    let cached = match &cache {
        Some(cache) => from_cache(cache, ids).await,
        None => None,
    };
    // Redis trouble (or no cache): the database answers for every id, and nothing is written
    // back, which would only queue invalidations for the failed writes.
    let (cache, cached) = match cached {
        Some(cached) => (cache, cached),
        None => (None, vec![None; ids.len()]),
    };
    let missing: Vec<u64> = ids
        .iter()
        .zip(&cached)
        .filter(|(_, cached)| cached.is_none())
        .map(|(id, _)| *id)
        .collect();
    let mut loaded = db.products(missing).await?;
    if let Some(cache) = &cache {
        write_back(cache, &loaded).await;
    }
    loaded.sort_unstable_by_key(|p| p.id);
    Ok(ids
        .iter()
        .zip(cached)
        .filter_map(|(id, cached)| match cached {
            Some(known) => known,
            None => loaded
                .binary_search_by_key(id, |p| p.id)
                .ok()
                .map(|at| loaded[at].clone()),
        })
        .collect())
}

/// What the cache holds for each id: `Some(Some(_))` a product, `Some(None)` a known absence,
/// `None` nothing; `None` for all when Redis cannot answer.
async fn from_cache(cache: &Cache, ids: &[u64]) -> Option<Vec<Option<Option<Product>>>> {
    let entity = cache.entity("product").ok()?;
    let keys: Vec<_> = ids.iter().map(|id| entity.key(id)).collect();
    cache.get_many::<Option<Product>>(&keys).await.ok()
}

/// Stores `loaded` as `Catalog::product` caches it (an `Option`, for the medium TTL), all at
/// once: the writes share the connection's pipeline, so this costs about one round trip.
async fn write_back(cache: &Cache, loaded: &[Product]) {
    let Ok(entity) = cache.entity("product") else {
        return;
    };
    let mut writes = tokio::task::JoinSet::new();
    for product in loaded {
        let (cache, key) = (cache.clone(), entity.key(&product.id));
        let (version, product) = (product.version, Some(product.clone()));
        // A failure is the cache's to log and replay; the next reader loads again.
        writes.spawn(async move {
            cache
                .set_ordered(&key, &product, Ttl::Medium, version)
                .await
        });
    }
    writes.join_all().await;
}
