//! Hashes, as far as test harnesses use them (counters per field).

use std::collections::BTreeMap;

use super::commands::{Answer, int};
use super::resp::Reply;
use super::store::{Data, Entry, Store, WrongType};

type Fields = BTreeMap<Vec<u8>, Vec<u8>>;

fn arity(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

/// `HGET`, `HGETALL`, `HLEN`, `HINCRBY`, `HSET`, `HDEL`.
pub(crate) fn command(store: &mut Store, name: &str, args: &[Vec<u8>]) -> Answer {
    let Some((key, rest)) = args.split_first() else {
        return Err(arity(name));
    };
    let fields = match store.entry(key) {
        None => Fields::new(),
        Some(Entry {
            data: Data::Hash(fields),
            ..
        }) => fields.clone(),
        Some(_) => return Err(WrongType.into()),
    };
    match (name, rest) {
        ("HGET", [field]) => Ok(Reply::optional(fields.get(field).cloned())),
        ("HGETALL", []) => Ok(Reply::Array(
            fields
                .into_iter()
                .flat_map(|(f, v)| [Reply::Bulk(f), Reply::Bulk(v)])
                .collect(),
        )),
        ("HLEN", []) => Ok(Reply::int(fields.len())),
        ("HINCRBY", [field, by]) => {
            let now = match fields.get(field) {
                Some(value) => int(value)?,
                None => 0,
            };
            let next = now
                .checked_add(int(by)?)
                .ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
            write(store, key, fields, |f| {
                f.insert(field.clone(), next.to_string().into_bytes());
            });
            Ok(Reply::Int(next))
        }
        ("HSET", pairs) if !pairs.is_empty() && pairs.len() % 2 == 0 => {
            let mut added = 0;
            write(store, key, fields, |f| {
                for pair in pairs.chunks(2) {
                    added += usize::from(f.insert(pair[0].clone(), pair[1].clone()).is_none());
                }
            });
            Ok(Reply::int(added))
        }
        ("HDEL", names) if !names.is_empty() => {
            let mut removed = 0;
            write(store, key, fields, |f| {
                removed = names.iter().filter(|n| f.remove(*n).is_some()).count();
            });
            Ok(Reply::int(removed))
        }
        _ => Err(arity(name)),
    }
}

/// Stores `fields` under `key` once `change`d (the key removed once empty), keeping its TTL.
fn write(store: &mut Store, key: &[u8], mut fields: Fields, change: impl FnOnce(&mut Fields)) {
    let expires_ms = store.entry(key).and_then(|e| e.expires_ms);
    change(&mut fields);
    match fields.is_empty() {
        true => {
            store.remove(key);
        }
        false => {
            let data = Data::Hash(fields);
            store.insert(key, Entry { data, expires_ms });
        }
    }
}
