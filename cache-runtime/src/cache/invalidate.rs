//! Invalidation: a key, an id with all its variants, a whole entity, a tag, or a glob.
//!
//! Keys and ids are deleted (one short script: an id's variants go with its variants token, and
//! an ordered value leaves its revision behind, see [`super::ordered`]);
//! entities and tags are invalidated by raising their mark (see [`marks`](crate::marks)), which
//! costs the same at ten keys and at ten million. Either way the call is a constant number of
//! round trips, and it tells every other instance in the same pipeline.

use super::Cache;
use super::ordered::REMOVE_KEY;
use super::replay::Intent;
use crate::bus::Event;
use crate::connection::Node;
use crate::entity::{Entity, lease_key, revision_key};
use crate::error::CacheError;
use crate::key::{KeyPart, app_mark_key, is_bookkeeping, tag_mark_key};

/// Keys fetched per `SCAN` step of a pattern invalidation.
const SCAN_BATCH: usize = 1000;

/// What a pattern invalidation's scan deletes.
#[derive(Debug, Clone, Copy)]
enum Scanned {
    Leases,
    Values,
}

impl Cache {
    /// Invalidates `id` of `entity` together with all its variants; returns how many keys
    /// were deleted right away (the id's own key; its variants become unreadable at once and
    /// expire on their TTL).
    ///
    /// Like every invalidation, it drops this instance's local copies at once and tells the
    /// other instances. If Redis cannot be reached the error is returned and the invalidation
    /// is also kept and replayed when Redis answers again.
    pub async fn invalidate_id(
        &self,
        entity: &Entity,
        id: &(impl KeyPart + ?Sized),
    ) -> Result<u64, CacheError> {
        let mut escaped = String::new();
        id.append_to(&mut escaped);
        self.invalidate_escaped_id(entity, &escaped).await
    }

    pub(crate) async fn invalidate_escaped_id(
        &self,
        entity: &Entity,
        escaped_id: &str,
    ) -> Result<u64, CacheError> {
        self.invalidate(Intent::Id {
            entity: entity.clone(),
            escaped_id: escaped_id.to_owned(),
        })
        .await
    }

    /// Invalidates every key of `entity` (at its version) by raising the entity's mark: two
    /// round trips and no per-key work in Redis, whatever the entity's size. Values written
    /// before stay in Redis, unreadable, until their TTL or eviction reclaims them; returns 0
    /// (no key is deleted). Replayed like [`Self::invalidate_id`] on failure.
    pub async fn invalidate_entity(&self, entity: &Entity) -> Result<u64, CacheError> {
        self.invalidate(Intent::Entity(entity.clone())).await
    }

    /// Invalidates every key written with `tag` (`#[cached(tags = ["category:{id}"])]`),
    /// across entities and versions, by raising the tag's mark: like
    /// [`Self::invalidate_entity`], constant work whatever the tag covers; returns 0. `tag` is
    /// the rendered tag: literal text as in the template, interpolated values escaped (see
    /// [`escape_into`](crate::escape_into)). Replayed like [`Self::invalidate_id`] on failure.
    pub async fn invalidate_tag(&self, tag: &str) -> Result<u64, CacheError> {
        self.invalidate(Intent::Tag(tag.to_owned())).await
    }

    /// Invalidates every value of this app, every entity, version and tag, by raising the app's
    /// mark: like [`Self::invalidate_entity`], constant work whatever the app holds; returns 0.
    /// For a deploy that must not serve anything cached before it, or an operator's reset.
    pub async fn invalidate_all(&self) -> Result<u64, CacheError> {
        self.invalidate(Intent::All).await
    }

    /// For operators: deletes the keys of `entity` whose part after the entity prefix matches
    /// `glob` (Redis glob syntax, over the escaped id and variant, e.g. `"42:*"` or `"*:p1"`),
    /// with `SCAN` + `UNLINK` in batches (so its cost follows the keyspace: prefer
    /// [`Self::invalidate_entity`] on large ones); returns how many keys went. The glob is
    /// appended to the entity's fixed prefix, so it cannot match another entity's keys. Other
    /// instances drop their local copies of the whole entity.
    pub async fn invalidate_matching(
        &self,
        entity: &Entity,
        glob: &str,
    ) -> Result<u64, CacheError> {
        if glob.is_empty() {
            return Ok(0);
        }
        self.invalidate(Intent::Matching(entity.clone(), glob.to_owned()))
            .await
    }

    /// Forgets locally, removes from Redis (telling the other instances), and forgets locally
    /// again (a read that fetched the old value while the removal was on its way must not keep
    /// it); what fails is queued for replay and, meanwhile, nothing it covers is served here.
    pub(crate) async fn invalidate(&self, intent: Intent) -> Result<u64, CacheError> {
        if self.is_disabled() {
            return Ok(0);
        }
        let seq = self.inner.marks.next_seq();
        self.forget_locally(&intent);
        let result = self.remove(&intent).await;
        self.forget_locally(&intent);
        result.inspect_err(|error| {
            self.block(&intent, seq);
            self.inner.replay.push(intent, error);
        })
    }

    /// Drops what this instance holds of what `intent` covers: local copies, and the flights a
    /// later reader could otherwise join.
    pub(crate) fn forget_locally(&self, intent: &Intent) {
        let inner = &self.inner;
        match intent {
            Intent::Key(key) => {
                inner.flights.detach_key(key.as_str());
                inner.apply_locally(&Event::Key(key.as_str().to_owned()));
            }
            Intent::Id { entity, escaped_id } => {
                let key = entity.key_from_escaped(escaped_id, None);
                let variants = format!("{}:", key.as_str());
                inner
                    .flights
                    .detach(|k| k == key.as_str() || k.starts_with(&variants));
                inner.apply_locally(&Event::Id(key.as_str().to_owned()));
            }
            Intent::Entity(entity) | Intent::Matching(entity, _) => {
                let prefix = entity.pattern();
                let prefix = prefix.trim_end_matches('*');
                inner.flights.detach(|k| k.starts_with(prefix));
                if let Some(local) = &inner.local {
                    match intent {
                        // A raised mark is checked at every local hit: no entry needs to go.
                        Intent::Entity(_) => local.fence(),
                        _ => local.remove_prefix(prefix),
                    }
                }
            }
            Intent::Tag(_) | Intent::All => {
                // Which keys carry the tag is only known from their values.
                inner.flights.detach(|_| true);
                if let Some(local) = &inner.local {
                    local.fence();
                }
            }
        }
    }

    /// While a failed entity or tag invalidation waits for replay, nothing it covers is valid
    /// here (its new mark is not known yet).
    fn block(&self, intent: &Intent, seq: u64) {
        match intent {
            Intent::Entity(entity) => entity.mark().block(seq),
            Intent::Tag(tag) => self.inner.marks.tag_cell(tag).block(seq),
            Intent::All => self.inner.app_mark.block(seq),
            Intent::Key(_) | Intent::Id { .. } | Intent::Matching(..) => {}
        }
    }

    /// The Redis part of an invalidation, leases included, with the event for the other
    /// instances; returns how many keys were deleted.
    pub(crate) async fn remove(&self, intent: &Intent) -> Result<u64, CacheError> {
        match intent {
            Intent::Key(key) => {
                // The lease goes too: a loader holding it must not store what it read before.
                let event = Event::Key(key.as_str().to_owned());
                let channel = key.entity().keys_channel();
                self.unlink_and_publish(
                    key.entity(),
                    key.as_str(),
                    &[key.lease_key()],
                    (channel, &event),
                )
                .await
            }
            Intent::Id { entity, escaped_id } => {
                let key = entity.key_from_escaped(escaped_id, None);
                let event = Event::Id(key.as_str().to_owned());
                // One hash slot: the token key and the lease key wrap the id's key in braces.
                let companions = [
                    key.lease_key(),
                    entity.prefix().variants_token_key(escaped_id),
                ];
                let channel = &self.inner.channel;
                self.unlink_and_publish(entity, key.as_str(), &companions, (channel, &event))
                    .await
            }
            Intent::Entity(entity) => {
                let mark_key = entity.mark_key().to_owned();
                self.raise_mark(Some(entity), entity.mark(), &mark_key, |epoch| {
                    Event::EntityMark(mark_key.clone(), epoch)
                })
                .await?;
                Ok(0)
            }
            Intent::Tag(tag) => {
                let cell = self.inner.marks.tag_cell(tag);
                let mark_key = tag_mark_key(&self.inner.config.app_prefix, tag);
                self.raise_mark(None, &cell, &mark_key, |epoch| {
                    Event::TagMark(tag.clone(), epoch)
                })
                .await?;
                Ok(0)
            }
            Intent::All => {
                let mark_key = app_mark_key(&self.inner.config.app_prefix);
                self.raise_mark(None, &self.inner.app_mark, &mark_key, |epoch| {
                    Event::EntityMark(mark_key.clone(), epoch)
                })
                .await?;
                Ok(0)
            }
            Intent::Matching(entity, glob) => {
                let pattern = format!("{}{glob}", entity.pattern().trim_end_matches('*'));
                let removed = self.remove_matching(entity, &pattern).await?;
                let event = Event::Prefix(entity.pattern().trim_end_matches('*').to_owned());
                self.try_publish(Some(entity), &event).await?;
                Ok(removed)
            }
        }
    }

    /// One round trip: the deletion of a key and its bookkeeping ([`REMOVE_KEY`]: an ordered
    /// value leaves its revision behind), then the event (in that order on
    /// one connection), confirmed by the shard's replicas on a cluster; answers whether the key
    /// itself was there.
    async fn unlink_and_publish(
        &self,
        entity: &Entity,
        key: &str,
        companions: &[String],
        (channel, event): (&str, &Event),
    ) -> Result<u64, CacheError> {
        let mut pipeline = redis::pipe();
        self.inner
            .scripts
            .add(&mut pipeline, &REMOVE_KEY)
            .arg(2 + companions.len())
            .arg(key)
            .arg(revision_key(key))
            .arg(companions);
        pipeline
            .cmd("PUBLISH")
            .arg(channel)
            .arg(event.encode(self.inner.origin))
            .ignore();
        let (removed,): (u64,) = self.call_confirmed(Some(entity), &pipeline).await?;
        Ok(removed)
    }

    /// `SCAN` + `UNLINK` of the leases of keys matching `pattern`, then of the keys, in
    /// batches. Leases first: a load that held one when the call began has its store refused,
    /// and a load that takes one afterwards started after the call, so it read the new data;
    /// a store that lands before the keys' pass is deleted by it. (Keys first would leave a
    /// whole scan's time for an old load to store and keep its value.)
    async fn remove_matching(&self, entity: &Entity, pattern: &str) -> Result<u64, CacheError> {
        self.unlink_scanned(entity, &lease_key(pattern), Scanned::Leases)
            .await?;
        self.unlink_scanned(entity, pattern, Scanned::Values).await
    }

    /// Deletes what `SCAN MATCH pattern` finds, batch by batch (of values, never the
    /// entity's own bookkeeping keys under its prefix, its mark): answers how many keys went.
    async fn unlink_scanned(
        &self,
        entity: &Entity,
        pattern: &str,
        scanned: Scanned,
    ) -> Result<u64, CacheError> {
        let mut removed: u64 = 0;
        // Every master holds a share of the keys: each is scanned with its own cursor.
        for node in self.key_nodes().await? {
            removed += self
                .unlink_scanned_on(entity, &node, pattern, scanned)
                .await?;
        }
        Ok(removed)
    }

    /// [`Self::unlink_scanned`] on one node.
    async fn unlink_scanned_on(
        &self,
        entity: &Entity,
        node: &Node,
        pattern: &str,
        scanned: Scanned,
    ) -> Result<u64, CacheError> {
        let mut cursor: u64 = 0;
        let mut removed: u64 = 0;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH);
            let (next, keys): (u64, Vec<String>) =
                self.call_node(Some(entity), node, (&scan).into()).await?;
            let keys: Vec<String> = match scanned {
                Scanned::Leases => keys,
                Scanned::Values => keys.into_iter().filter(|k| !is_bookkeeping(k)).collect(),
            };
            if !keys.is_empty() {
                let unlinked: u64 = self.redis(entity, redis::cmd("UNLINK").arg(&keys)).await?;
                removed += unlinked;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}
