//! The bookkeeping keys an invalidation touches, named by the same code the cache uses, for
//! tools that show or check them.

use crate::key::{EntityPrefix, NameError};

/// The key of `entity`'s invalidation mark at `version` under `app`.
pub fn entity_mark_key(app: &str, version: u32, entity: &str) -> Result<String, NameError> {
    Ok(EntityPrefix::new(app, version, entity)?.mark_key())
}

/// The key holding the variants token of an (escaped) id.
pub fn variants_token_key(
    app: &str,
    version: u32,
    entity: &str,
    escaped_id: &str,
) -> Result<String, NameError> {
    Ok(EntityPrefix::new(app, version, entity)?.variants_token_key(escaped_id))
}

/// The key of `tag`'s invalidation mark under `app`.
pub fn tag_mark_key(app: &str, tag: &str) -> String {
    crate::key::tag_mark_key(app, tag)
}

/// The channel `app`'s instances receive invalidation events on.
pub fn invalidation_channel(app: &str) -> String {
    crate::bus::channel(app)
}

/// Whether `key` is one of the cache's own bookkeeping keys (a mark, a lease, a variants token,
/// a revision record) rather than a value: what pattern invalidation never deletes.
pub fn is_bookkeeping(key: &str) -> bool {
    crate::key::is_bookkeeping(key)
}
