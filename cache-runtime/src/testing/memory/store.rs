//! The keyspace: strings and sets, each with an optional expiry on the injected clock.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use crate::clock::Clock;

/// A value Redis would hold under a key (only the types the framework uses).
#[derive(Debug, Clone)]
pub(crate) enum Data {
    Str(Vec<u8>),
    Set(BTreeSet<Vec<u8>>),
    Hash(BTreeMap<Vec<u8>, Vec<u8>>),
}

#[derive(Debug, Clone)]
pub(crate) struct Entry {
    pub(crate) data: Data,
    /// Clock milliseconds at which the key is gone.
    pub(crate) expires_ms: Option<u64>,
}

/// The operation ran on a key holding another type.
#[derive(Debug)]
pub(crate) struct WrongType;

impl std::fmt::Display for WrongType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WRONGTYPE Operation against a key holding the wrong kind of value")
    }
}

/// SCAN cursors kept at once; an abandoned one falls out.
const MAX_CURSORS: usize = 1024;

#[derive(Debug)]
pub(crate) struct Store {
    keys: BTreeMap<Vec<u8>, Entry>,
    clock: Arc<dyn Clock>,
    pub(crate) run_id: String,
    /// Top-level calls per command (lowercase), for `INFO commandstats`.
    pub(crate) calls: HashMap<String, u64>,
    /// Subscribers per channel, for `PUBLISH` and `PUBSUB NUMSUB`.
    pub(crate) subscribers: HashMap<Vec<u8>, usize>,
    /// The last key each open `SCAN` returned.
    cursors: HashMap<u64, Vec<u8>>,
    next_cursor: u64,
    pub(crate) config: BTreeMap<String, String>,
    pub(crate) keyspace_hits: u64,
    pub(crate) keyspace_misses: u64,
    pub(crate) expired_keys: u64,
    /// `ACL SETUSER default -subscribe`: `SUBSCRIBE` is refused.
    pub(crate) subscribe_denied: bool,
    /// The digests of the scripts loaded (`SCRIPT LOAD`, `EVAL`): `EVALSHA` of another is
    /// answered `NOSCRIPT`, as after a restart or `SCRIPT FLUSH`.
    pub(crate) scripts: HashSet<String>,
    /// Users made with `ACL SETUSER` (the default user excepted).
    pub(crate) users: HashMap<Vec<u8>, User>,
}

/// A user of `ACL SETUSER`: its password and the commands it may not run.
#[derive(Debug, Default, Clone)]
pub(crate) struct User {
    pub(crate) password: Option<Vec<u8>>,
    pub(crate) denied: HashSet<String>,
}

fn default_config() -> BTreeMap<String, String> {
    [
        ("maxmemory", "0"),
        ("maxmemory-policy", "noeviction"),
        ("save", ""),
        ("appendonly", "no"),
        ("notify-keyspace-events", ""),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect()
}

impl Store {
    pub(crate) fn new(clock: Arc<dyn Clock>) -> Self {
        Self {
            keys: BTreeMap::new(),
            clock,
            run_id: new_run_id(),
            calls: HashMap::new(),
            subscribers: HashMap::new(),
            cursors: HashMap::new(),
            next_cursor: 1,
            config: default_config(),
            keyspace_hits: 0,
            keyspace_misses: 0,
            expired_keys: 0,
            subscribe_denied: false,
            scripts: HashSet::new(),
            users: HashMap::new(),
        }
    }

    /// What a restart without persistence leaves: nothing, under a new `run_id`.
    pub(crate) fn restart(&mut self) {
        let clock = self.clock.clone();
        *self = Self::new(clock);
    }

    /// Counts commands a script ran, as Redis counts them in `INFO commandstats`.
    pub(crate) fn tally(&mut self, commands: &[&str]) {
        for command in commands {
            *self.calls.entry((*command).to_owned()).or_default() += 1;
        }
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.clock.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    /// Unix time in microseconds on the injected clock (`TIME`).
    pub(crate) fn unix_us(&self) -> u64 {
        self.clock.unix_micros()
    }

    /// The entry under `key`, removing it first if it has expired.
    pub(crate) fn entry(&mut self, key: &[u8]) -> Option<&mut Entry> {
        let now = self.now_ms();
        if self
            .keys
            .get(key)
            .is_some_and(|e| e.expires_ms.is_some_and(|at| at <= now))
        {
            self.keys.remove(key);
            self.expired_keys += 1;
        }
        self.keys.get_mut(key)
    }

    pub(crate) fn string(&mut self, key: &[u8]) -> Result<Option<&[u8]>, WrongType> {
        match self.entry(key) {
            None => Ok(None),
            Some(Entry {
                data: Data::Str(bytes),
                ..
            }) => Ok(Some(bytes)),
            Some(_) => Err(WrongType),
        }
    }

    /// `GET`, counted as a keyspace hit or miss.
    pub(crate) fn get(&mut self, key: &[u8]) -> Result<Option<Vec<u8>>, WrongType> {
        let found = self.string(key)?.map(<[u8]>::to_vec);
        match found.is_some() {
            true => self.keyspace_hits += 1,
            false => self.keyspace_misses += 1,
        }
        Ok(found)
    }

    /// Writes a string, with a TTL or none.
    pub(crate) fn set(&mut self, key: &[u8], value: Vec<u8>, ttl: Option<Duration>) {
        let expires_ms = ttl.map(|ttl| self.expiry(ttl));
        self.keys.insert(
            key.to_vec(),
            Entry {
                data: Data::Str(value),
                expires_ms,
            },
        );
    }

    pub(crate) fn expiry(&self, ttl: Duration) -> u64 {
        self.now_ms()
            .saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX))
    }

    pub(crate) fn insert(&mut self, key: &[u8], entry: Entry) {
        self.keys.insert(key.to_vec(), entry);
    }

    pub(crate) fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        self.entry(key)?;
        self.keys.remove(key)
    }

    /// Milliseconds left: -2 for no key, -1 for no expiry (as `PTTL`).
    pub(crate) fn pttl(&mut self, key: &[u8]) -> i64 {
        let now = self.now_ms();
        match self.entry(key) {
            None => -2,
            Some(Entry {
                expires_ms: None, ..
            }) => -1,
            Some(Entry {
                expires_ms: Some(at),
                ..
            }) => i64::try_from(at.saturating_sub(now)).unwrap_or(i64::MAX),
        }
    }

    /// Keys not expired now.
    pub(crate) fn live_keys(&self) -> impl Iterator<Item = (&Vec<u8>, &Entry)> {
        let now = self.now_ms();
        self.keys
            .iter()
            .filter(move |(_, e)| e.expires_ms.is_none_or(|at| at > now))
    }

    pub(crate) fn flush(&mut self) {
        self.keys.clear();
        self.cursors.clear();
    }

    /// One `SCAN` step: up to `count` keys after the cursor's, and the next cursor (0: done).
    /// Every key present for the whole scan is returned once.
    pub(crate) fn scan(&mut self, cursor: u64, count: usize) -> (u64, Vec<Vec<u8>>) {
        // An unknown cursor (or one that fell out) starts over: SCAN may return a key twice,
        // never miss one.
        let after = match cursor {
            0 => None,
            cursor => self.cursors.remove(&cursor),
        };
        let now = self.now_ms();
        let range = match &after {
            Some(after) => self
                .keys
                .range::<[u8], _>((Bound::Excluded(after.as_slice()), Bound::Unbounded)),
            None => self.keys.range::<[u8], _>(..),
        };
        let mut visited = 0;
        let mut keys = Vec::new();
        let mut last = None;
        for (key, entry) in range {
            visited += 1;
            last = Some(key);
            if entry.expires_ms.is_none_or(|at| at > now) {
                keys.push(key.clone());
            }
            if visited >= count.max(1) {
                break;
            }
        }
        let more = last.is_some_and(|last| {
            self.keys
                .range::<[u8], _>((Bound::Excluded(last.as_slice()), Bound::Unbounded))
                .next()
                .is_some()
        });
        if !more {
            return (0, keys);
        }
        let last = last.cloned().unwrap_or_default();
        if self.cursors.len() >= MAX_CURSORS {
            self.cursors.clear();
        }
        let id = self.next_cursor;
        self.next_cursor += 1;
        self.cursors.insert(id, last);
        (id, keys)
    }

    /// Removes every expired key (as Redis' active expiry does, all at once).
    pub(crate) fn sweep(&mut self) {
        let now = self.now_ms();
        let before = self.keys.len();
        self.keys
            .retain(|_, e| e.expires_ms.is_none_or(|at| at > now));
        self.expired_keys += (before - self.keys.len()) as u64;
    }

    pub(crate) fn memory_bytes(&self) -> usize {
        self.keys
            .iter()
            .map(|(k, e)| k.len() + entry_bytes(e) + 50)
            .sum()
    }
}

pub(crate) fn entry_bytes(entry: &Entry) -> usize {
    match &entry.data {
        Data::Str(bytes) => bytes.len(),
        Data::Set(members) => members.iter().map(|m| m.len() + 16).sum(),
        Data::Hash(fields) => fields.iter().map(|(f, v)| f.len() + v.len() + 16).sum(),
    }
}

fn new_run_id() -> String {
    format!(
        "{:016x}{:016x}{:08x}",
        rand::random::<u64>(),
        rand::random::<u64>(),
        rand::random::<u32>()
    )
}
