//! Sessions: a value per session id, kept while it is used (sliding expiry) up to a maximum
//! lifetime, revocable one by one or all of a user's at once.
//!
//! Sessions are state, not cached copies: Redis is their only home, so a read that cannot reach
//! Redis is an error (there is no source to fall back on). Keys are outside the versioned value
//! schema, so a version bump and `purge_old_versions` never log anyone out:
//! `{app}:sessions:{name}:{id}` holds the value, `{app}:sessions:{name}:user:{user}` the ids of a
//! user's sessions (for revoking them all). The index outlives every session it lists: it is
//! extended to the maximum lifetime at each login, and no session outlives that.

use std::marker::PhantomData;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Cache;
use crate::codec::CodecKind;
use crate::error::CacheError;
use crate::key::{NameError, escape_into, validate_name};

/// A store of sessions holding a `T` each (any serde type).
#[derive(Debug, Clone)]
pub struct Sessions<T> {
    cache: Cache,
    prefix: String,
    idle: Duration,
    max_lifetime: Duration,
    _value: PhantomData<fn() -> T>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

impl<T: Serialize + DeserializeOwned> Sessions<T> {
    /// Sessions named `name` (`[a-z0-9_-]`, like an entity) that end after `idle` without a
    /// read, and `max_lifetime` after they started whatever the reads.
    pub fn new(
        cache: &Cache,
        name: &str,
        idle: Duration,
        max_lifetime: Duration,
    ) -> Result<Self, NameError> {
        validate_name("session store", name)?;
        let idle = idle.max(Duration::from_millis(1));
        Ok(Self {
            prefix: format!("{}:sessions:{name}:", cache.config().app_prefix()),
            cache: cache.clone(),
            idle,
            max_lifetime: max_lifetime.max(idle),
            _value: PhantomData,
        })
    }

    /// `[codec id][started at, ms, LE][payload]`.
    fn encode(&self, started_ms: u64, value: &T) -> Result<Vec<u8>, CacheError> {
        let codec = self.cache.config().codec();
        let mut stored = vec![codec.id()];
        stored.extend_from_slice(&started_ms.to_le_bytes());
        stored.extend(codec.encode(value).map_err(CacheError::Encode)?);
        Ok(stored)
    }

    /// The value and when its session started, unless it is past its maximum lifetime.
    fn decode(&self, bytes: &[u8]) -> Result<Option<(u64, T)>, CacheError> {
        let Some((&codec, rest)) = bytes.split_first() else {
            return Ok(None);
        };
        let Some((started, payload)) = rest.split_first_chunk::<8>() else {
            return Ok(None);
        };
        let started = u64::from_le_bytes(*started);
        if now_ms() > started.saturating_add(millis(self.max_lifetime)) {
            return Ok(None);
        }
        let value = CodecKind::decode_with_id(codec, payload).map_err(CacheError::Encode)?;
        Ok(Some((started, value)))
    }

    fn key(&self, id: &str) -> String {
        let mut key = self.prefix.clone();
        escape_into(&mut key, id);
        key
    }

    fn user_key(&self, user: &str) -> String {
        let mut key = format!("{}user:", self.prefix);
        escape_into(&mut key, user);
        key
    }

    /// Starts a session of `user` holding `value`; returns its id (128 random bits, hex).
    pub async fn create(&self, user: &str, value: &T) -> Result<String, CacheError> {
        let id = format!("{:032x}", rand::random::<u128>());
        let stored = self.encode(now_ms(), value)?;
        let (key, user_key, idle) = (self.key(&id), self.user_key(user), millis(self.idle));
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(stored)
            .arg("PX")
            .arg(idle)
            .ignore();
        pipe.cmd("SADD").arg(&user_key).arg(&id).ignore();
        // No session outlives its maximum lifetime, so neither need the index (it only grows).
        pipe.cmd("PEXPIRE")
            .arg(&user_key)
            .arg(millis(self.max_lifetime))
            .arg("GT")
            .ignore();
        pipe.cmd("PEXPIRE")
            .arg(&user_key)
            .arg(millis(self.max_lifetime))
            .arg("NX")
            .ignore();
        let () = self.cache.call((&pipe).into()).await?;
        Ok(id)
    }

    /// The session's value, extending its life by the idle time (one round trip), or `None`
    /// when it expired, outlived its maximum lifetime, or was revoked.
    pub async fn get(&self, id: &str) -> Result<Option<T>, CacheError> {
        let bytes: Option<Vec<u8>> = self
            .cache
            .call(
                redis::cmd("GETEX")
                    .arg(self.key(id))
                    .arg("PX")
                    .arg(millis(self.idle))
                    .into(),
            )
            .await?;
        let Some(bytes) = bytes else { return Ok(None) };
        match self.decode(&bytes)? {
            Some((_, value)) => Ok(Some(value)),
            None => {
                self.revoke(id).await?;
                Ok(None)
            }
        }
    }

    /// Replaces the value of a session that `get` returned (and extends its life); `false`
    /// when it no longer exists.
    pub async fn update(&self, id: &str, value: &T) -> Result<bool, CacheError> {
        // The start time is kept: read it back with the value.
        let bytes: Option<Vec<u8>> = self
            .cache
            .call(redis::cmd("GET").arg(self.key(id)).into())
            .await?;
        let Some((started, _)) = bytes.map(|b| self.decode(&b)).transpose()?.flatten() else {
            return Ok(false);
        };
        let stored = self.encode(started, value)?;
        let set: Option<String> = self
            .cache
            .call(
                redis::cmd("SET")
                    .arg(self.key(id))
                    .arg(stored)
                    .arg("PX")
                    .arg(millis(self.idle))
                    .arg("XX")
                    .into(),
            )
            .await?;
        Ok(set.is_some())
    }

    /// Ends one session; `false` when it did not exist.
    pub async fn revoke(&self, id: &str) -> Result<bool, CacheError> {
        let removed: u64 = self
            .cache
            .call(redis::cmd("UNLINK").arg(self.key(id)).into())
            .await?;
        Ok(removed > 0)
    }

    /// Ends every session of `user` (sign out everywhere); returns how many were live. Work
    /// grows with that user's sessions, not with the store.
    pub async fn revoke_all(&self, user: &str) -> Result<u64, CacheError> {
        let user_key = self.user_key(user);
        let ids: Vec<String> = self
            .cache
            .call(redis::cmd("SMEMBERS").arg(&user_key).into())
            .await?;
        let mut unlink = redis::cmd("UNLINK");
        for id in &ids {
            unlink.arg(self.key(id));
        }
        let removed: u64 = match ids.is_empty() {
            true => 0,
            false => self.cache.call((&unlink).into()).await?,
        };
        // Ids added meanwhile (a login racing the sign-out) stay listed and live.
        let mut forget = redis::cmd("SREM");
        forget.arg(&user_key);
        for id in &ids {
            forget.arg(id);
        }
        if !ids.is_empty() {
            let _: u64 = self.cache.call((&forget).into()).await?;
        }
        Ok(removed)
    }
}
