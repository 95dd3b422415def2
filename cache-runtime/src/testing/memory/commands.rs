//! The commands the framework, `cachectl` and the test harness send, with Redis' replies.

use std::collections::BTreeSet;
use std::time::Duration;

use super::resp::Reply;
use super::store::{Data, Entry, Store, WrongType, entry_bytes};
use super::{glob, scripts};

/// A command's reply, or the error reply it ends in.
pub(crate) type Answer = Result<Reply, Reply>;

impl From<WrongType> for Reply {
    fn from(error: WrongType) -> Self {
        Reply::Error(error.to_string())
    }
}

pub(crate) fn syntax() -> Reply {
    Reply::error("ERR syntax error")
}

fn arity(name: &str) -> Reply {
    Reply::error(format!(
        "ERR wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    ))
}

pub(crate) fn int(arg: &[u8]) -> Result<i64, Reply> {
    std::str::from_utf8(arg)
        .ok()
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Reply::error("ERR value is not an integer or out of range"))
}

fn upper(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

/// A positive TTL from `EX`/`PX`-style arguments.
fn ttl(amount: &[u8], unit_ms: u64, name: &str) -> Result<Duration, Reply> {
    match u64::try_from(int(amount)?) {
        Ok(n) if n > 0 => Ok(Duration::from_millis(n.saturating_mul(unit_ms))),
        _ => Err(Reply::error(format!(
            "ERR invalid expire time in '{}' command",
            name.to_ascii_lowercase()
        ))),
    }
}

/// Runs one command (`args[0]` its name) against `store`.
pub(crate) fn run(store: &mut Store, args: &[Vec<u8>]) -> Reply {
    let Some(name) = args.first() else {
        return Reply::error("ERR empty command");
    };
    let name = upper(name);
    *store.calls.entry(name.to_ascii_lowercase()).or_default() += 1;
    match execute(store, &name, &args[1..]) {
        Ok(reply) | Err(reply) => reply,
    }
}

/// Runs one command; also what scripts call.
pub(crate) fn execute(store: &mut Store, name: &str, args: &[Vec<u8>]) -> Answer {
    let need = |n: usize| match args.len() >= n {
        true => Ok(()),
        false => Err(arity(name)),
    };
    match name {
        "PING" => Ok(match args.first() {
            Some(message) => Reply::bulk(message.clone()),
            None => Reply::Status("PONG"),
        }),
        "ECHO" => {
            need(1)?;
            Ok(Reply::bulk(args[0].clone()))
        }
        "CLIENT" => Ok(match args.first().map(|a| upper(a)).as_deref() {
            Some("ID") => Reply::Int(1),
            Some("KILL") => Reply::Int(0),
            Some("LIST" | "INFO") => Reply::bulk(""),
            Some("GETNAME") => Reply::Nil,
            _ => Reply::ok(),
        }),
        "SELECT" | "READWRITE" => Ok(Reply::ok()),
        "ACL" => acl(store, args),
        "GET" => {
            need(1)?;
            Ok(Reply::optional(store.get(&args[0])?))
        }
        "MGET" => {
            need(1)?;
            let values = args
                .iter()
                .map(|key| Reply::optional(store.get(key).ok().flatten()))
                .collect();
            Ok(Reply::Array(values))
        }
        "SET" => set(store, args),
        "GETEX" => getex(store, args),
        "GETRANGE" => {
            need(3)?;
            let bytes = store.string(&args[0])?.unwrap_or_default();
            Ok(Reply::bulk(range(bytes, int(&args[1])?, int(&args[2])?)))
        }
        "STRLEN" => {
            need(1)?;
            Ok(Reply::int(store.string(&args[0])?.map_or(0, <[u8]>::len)))
        }
        "INCR" | "INCRBY" | "DECR" | "DECRBY" => {
            need(if name.ends_with("BY") { 2 } else { 1 })?;
            let by = match name {
                "INCR" => 1,
                "DECR" => -1,
                "INCRBY" => int(&args[1])?,
                _ => int(&args[1])?
                    .checked_neg()
                    .ok_or_else(|| Reply::error("ERR decrement would overflow"))?,
            };
            let now = match store.string(&args[0])? {
                Some(bytes) => int(bytes)?,
                None => 0,
            };
            let next = now
                .checked_add(by)
                .ok_or_else(|| Reply::error("ERR increment or decrement would overflow"))?;
            let expires_ms = store.entry(&args[0]).and_then(|e| e.expires_ms);
            let entry = Entry {
                data: Data::Str(next.to_string().into_bytes()),
                expires_ms,
            };
            store.insert(&args[0], entry);
            Ok(Reply::Int(next))
        }
        "DEL" | "UNLINK" => {
            need(1)?;
            let removed = args.iter().filter(|k| store.remove(k).is_some()).count();
            Ok(Reply::int(removed))
        }
        "EXISTS" => {
            need(1)?;
            let found = args.iter().filter(|k| store.entry(k).is_some()).count();
            Ok(Reply::int(found))
        }
        "TYPE" => {
            need(1)?;
            Ok(Reply::Status(
                match store.entry(&args[0]).map(|e| &e.data) {
                    None => "none",
                    Some(Data::Str(_)) => "string",
                    Some(Data::Set(_)) => "set",
                    Some(Data::Hash(_)) => "hash",
                },
            ))
        }
        "RENAME" => {
            need(2)?;
            let entry = store
                .remove(&args[0])
                .ok_or_else(|| Reply::error("ERR no such key"))?;
            store.insert(&args[1], entry);
            Ok(Reply::ok())
        }
        "PEXPIRE" | "EXPIRE" => {
            need(2)?;
            let unit = if name == "PEXPIRE" { 1 } else { 1000 };
            expire(
                store,
                &args[0],
                int(&args[1])?.saturating_mul(unit),
                &args[2..],
            )
        }
        "PERSIST" => {
            need(1)?;
            Ok(Reply::int(match store.entry(&args[0]) {
                Some(entry) if entry.expires_ms.is_some() => {
                    entry.expires_ms = None;
                    1
                }
                _ => 0,
            }))
        }
        "PTTL" => {
            need(1)?;
            Ok(Reply::Int(store.pttl(&args[0])))
        }
        "TTL" => {
            need(1)?;
            Ok(Reply::Int(match store.pttl(&args[0]) {
                ms if ms < 0 => ms,
                ms => ms.saturating_add(500) / 1000,
            }))
        }
        "SADD" | "SREM" => {
            need(2)?;
            let adding = name == "SADD";
            let mut members = match store.remove(&args[0]) {
                None => (BTreeSet::new(), None),
                Some(Entry {
                    data: Data::Set(members),
                    expires_ms,
                }) => (members, expires_ms),
                Some(entry) => {
                    store.insert(&args[0], entry);
                    return Err(WrongType.into());
                }
            };
            let changed = args[1..]
                .iter()
                .filter(|m| match adding {
                    true => members.0.insert(m.to_vec()),
                    false => members.0.remove(*m),
                })
                .count();
            if !members.0.is_empty() {
                let entry = Entry {
                    data: Data::Set(members.0),
                    expires_ms: members.1,
                };
                store.insert(&args[0], entry);
            }
            Ok(Reply::int(changed))
        }
        "SMEMBERS" | "SCARD" | "SISMEMBER" => {
            need(if name == "SISMEMBER" { 2 } else { 1 })?;
            let members = match store.entry(&args[0]) {
                None => BTreeSet::new(),
                Some(Entry {
                    data: Data::Set(members),
                    ..
                }) => members.clone(),
                Some(_) => return Err(WrongType.into()),
            };
            Ok(match name {
                "SCARD" => Reply::int(members.len()),
                "SISMEMBER" => Reply::int(usize::from(members.contains(&args[1]))),
                _ => Reply::Array(members.into_iter().map(Reply::Bulk).collect()),
            })
        }
        "HINCRBY" | "HGET" | "HGETALL" | "HSET" | "HDEL" | "HLEN" => {
            super::hash::command(store, name, args)
        }
        "SCAN" => scan(store, args),
        "KEYS" => {
            need(1)?;
            let keys = store
                .live_keys()
                .filter(|(k, _)| glob::matches(&args[0], k))
                .map(|(k, _)| Reply::Bulk(k.clone()))
                .collect();
            Ok(Reply::Array(keys))
        }
        "DBSIZE" => Ok(Reply::int(store.live_keys().count())),
        "FLUSHALL" | "FLUSHDB" => {
            store.flush();
            Ok(Reply::ok())
        }
        "MEMORY" => match args.first().map(|a| upper(a)).as_deref() {
            Some("USAGE") => {
                need(2)?;
                let key = &args[1];
                Ok(match store.entry(key) {
                    Some(entry) => Reply::int(key.len() + entry_bytes(entry) + 50),
                    None => Reply::Nil,
                })
            }
            _ => Err(syntax()),
        },
        "TIME" => {
            let us = store.unix_us();
            Ok(Reply::Array(vec![
                Reply::bulk((us / 1_000_000).to_string()),
                Reply::bulk((us % 1_000_000).to_string()),
            ]))
        }
        "INFO" => Ok(Reply::bulk(super::info::render(
            store,
            args.first()
                .map(|a| String::from_utf8_lossy(a).to_ascii_lowercase()),
        ))),
        "CONFIG" => config(store, args),
        "SLOWLOG" => Ok(match args.first().map(|a| upper(a)).as_deref() {
            Some("LEN") => Reply::Int(0),
            Some("GET") => Reply::Array(Vec::new()),
            _ => Reply::ok(),
        }),
        // No replicas: nothing to wait for.
        "WAIT" => Ok(Reply::Int(0)),
        "EVAL" | "EVALSHA" | "SCRIPT" => scripts::command(store, name, args),
        "CLUSTER" | "READONLY" | "ASKING" => Err(Reply::error(
            "ERR This instance has cluster support disabled",
        )),
        _ => Err(Reply::error(format!(
            "ERR unknown command '{}', with args beginning with: (the in-memory Redis runs the commands the cache sends)",
            name.to_ascii_lowercase()
        ))),
    }
}

fn set(store: &mut Store, args: &[Vec<u8>]) -> Answer {
    let [key, value, options @ ..] = args else {
        return Err(arity("SET"));
    };
    let (mut ttl, mut nx, mut xx, mut get, mut keep) = (None, false, false, false, false);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match upper(option).as_str() {
            "NX" => nx = true,
            "XX" => xx = true,
            "GET" => get = true,
            "KEEPTTL" => keep = true,
            unit @ ("EX" | "PX") => {
                let amount = rest.next().ok_or_else(syntax)?;
                let ms = if unit == "EX" { 1000 } else { 1 };
                ttl = Some(ttl_of(amount, ms)?);
            }
            _ => return Err(syntax()),
        }
    }
    if nx && xx {
        return Err(syntax());
    }
    let old = match get {
        true => store.string(key)?.map(<[u8]>::to_vec),
        false => None,
    };
    let exists = store.entry(key).is_some();
    let answer = |written: bool| match (get, written) {
        (true, _) => Reply::optional(old.clone()),
        (false, true) => Reply::ok(),
        (false, false) => Reply::Nil,
    };
    if (nx && exists) || (xx && !exists) {
        return Ok(answer(false));
    }
    let kept = match keep {
        true => store.entry(key).and_then(|e| e.expires_ms),
        false => None,
    };
    store.set(key, value.clone(), ttl);
    if let (Some(at), Some(entry)) = (kept, store.entry(key)) {
        entry.expires_ms = Some(at);
    }
    Ok(answer(true))
}

fn ttl_of(amount: &[u8], unit_ms: u64) -> Result<Duration, Reply> {
    ttl(amount, unit_ms, "set")
}

fn getex(store: &mut Store, args: &[Vec<u8>]) -> Answer {
    let [key, options @ ..] = args else {
        return Err(arity("GETEX"));
    };
    let value = store.get(key)?;
    if value.is_none() {
        return Ok(Reply::Nil);
    }
    match options {
        [] => {}
        [persist] if upper(persist) == "PERSIST" => {
            if let Some(entry) = store.entry(key) {
                entry.expires_ms = None;
            }
        }
        [unit, amount] if matches!(upper(unit).as_str(), "EX" | "PX") => {
            let ms = if upper(unit) == "EX" { 1000 } else { 1 };
            let at = store.expiry(ttl(amount, ms, "getex")?);
            if let Some(entry) = store.entry(key) {
                entry.expires_ms = Some(at);
            }
        }
        _ => return Err(syntax()),
    }
    Ok(Reply::optional(value))
}

/// `PEXPIRE key ms [NX|XX|GT|LT]`.
pub(crate) fn expire(store: &mut Store, key: &[u8], ms: i64, options: &[Vec<u8>]) -> Answer {
    let condition = match options {
        [] => None,
        [one] => Some(upper(one)),
        _ => return Err(syntax()),
    };
    let now = store.now_ms();
    let Some(entry) = store.entry(key) else {
        return Ok(Reply::Int(0));
    };
    let at = match u64::try_from(ms) {
        Ok(ms) => now.saturating_add(ms),
        Err(_) => now,
    };
    // A key without a TTL counts as an infinite one for GT and LT.
    let allowed = match condition.as_deref() {
        None => true,
        Some("NX") => entry.expires_ms.is_none(),
        Some("XX") => entry.expires_ms.is_some(),
        Some("GT") => entry.expires_ms.is_some_and(|old| at > old),
        Some("LT") => entry.expires_ms.is_none_or(|old| at < old),
        Some(_) => return Err(syntax()),
    };
    if !allowed {
        return Ok(Reply::Int(0));
    }
    if at <= now {
        store.remove(key);
    } else {
        entry.expires_ms = Some(at);
    }
    Ok(Reply::Int(1))
}

/// `GETRANGE`'s slice, with Redis' negative indexes.
fn range(bytes: &[u8], start: i64, end: i64) -> Vec<u8> {
    let len = i64::try_from(bytes.len()).unwrap_or(i64::MAX);
    let at = |i: i64| if i < 0 { (len + i).max(0) } else { i };
    let (start, end) = (at(start), at(end).min(len - 1));
    if len == 0 || start > end {
        return Vec::new();
    }
    let (start, end) = (
        usize::try_from(start).unwrap_or(0),
        usize::try_from(end).unwrap_or(0),
    );
    bytes[start..=end].to_vec()
}

fn scan(store: &mut Store, args: &[Vec<u8>]) -> Answer {
    let [cursor, options @ ..] = args else {
        return Err(arity("SCAN"));
    };
    let cursor = u64::try_from(int(cursor)?).map_err(|_| Reply::error("ERR invalid cursor"))?;
    let (mut pattern, mut count, mut kind) = (None, 10, None);
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        let value = rest.next().ok_or_else(syntax)?;
        match upper(option).as_str() {
            "MATCH" => pattern = Some(value.clone()),
            "COUNT" => count = usize::try_from(int(value)?).map_err(|_| syntax())?,
            "TYPE" => kind = Some(upper(value)),
            _ => return Err(syntax()),
        }
    }
    if count == 0 {
        return Err(syntax());
    }
    let (next, keys) = store.scan(cursor, count);
    let keys = keys
        .into_iter()
        .filter(|k| pattern.as_ref().is_none_or(|p| glob::matches(p, k)))
        .filter(|k| {
            kind.as_deref().is_none_or(|kind| {
                let found = match store.entry(k).map(|e| &e.data) {
                    Some(Data::Str(_)) => "STRING",
                    Some(Data::Set(_)) => "SET",
                    Some(Data::Hash(_)) => "HASH",
                    None => "NONE",
                };
                kind == found
            })
        })
        .map(Reply::Bulk)
        .collect();
    Ok(Reply::Array(vec![
        Reply::bulk(next.to_string()),
        Reply::Array(keys),
    ]))
}

fn config(store: &mut Store, args: &[Vec<u8>]) -> Answer {
    match args.first().map(|a| upper(a)).as_deref() {
        Some("GET") => {
            let pattern = args.get(1).ok_or_else(|| arity("CONFIG|GET"))?;
            let pattern = String::from_utf8_lossy(pattern).to_ascii_lowercase();
            let pairs = store
                .config
                .iter()
                .filter(|(k, _)| glob::matches(pattern.as_bytes(), k.as_bytes()))
                .flat_map(|(k, v)| [Reply::bulk(k.clone()), Reply::bulk(v.clone())])
                .collect();
            Ok(Reply::Array(pairs))
        }
        Some("SET") => {
            let [_, pairs @ ..] = args else {
                return Err(arity("CONFIG|SET"));
            };
            if pairs.is_empty() || pairs.len() % 2 != 0 {
                return Err(arity("CONFIG|SET"));
            }
            for pair in pairs.chunks(2) {
                let name = String::from_utf8_lossy(&pair[0]).to_ascii_lowercase();
                store
                    .config
                    .insert(name, String::from_utf8_lossy(&pair[1]).into_owned());
            }
            Ok(Reply::ok())
        }
        Some("RESETSTAT") => {
            store.calls.clear();
            Ok(Reply::ok())
        }
        _ => Err(syntax()),
    }
}

/// `ACL SETUSER default ±subscribe ±psubscribe`: whether subscribing is allowed; the rest of
/// ACL is Redis' own business.
fn acl(store: &mut Store, args: &[Vec<u8>]) -> Answer {
    match args {
        [setuser, user, rules @ ..]
            if upper(setuser) == "SETUSER" && user.as_slice() != b"default" =>
        {
            let user = store.users.entry(user.clone()).or_default();
            for rule in rules {
                match rule.split_first() {
                    Some((b'>', password)) => user.password = Some(password.to_vec()),
                    Some((b'-', command)) if !command.starts_with(b"@") => {
                        user.denied.insert(upper(command));
                    }
                    Some((b'+', command)) if !command.starts_with(b"@") => {
                        user.denied.remove(&upper(command));
                    }
                    _ => {}
                }
            }
            Ok(Reply::ok())
        }
        [setuser, _default, rules @ ..] if upper(setuser) == "SETUSER" => {
            for rule in rules {
                match upper(rule).as_str() {
                    "-SUBSCRIBE" | "-PSUBSCRIBE" => store.subscribe_denied = true,
                    "+SUBSCRIBE" | "+PSUBSCRIBE" | "+@ALL" | "ALLCOMMANDS" => {
                        store.subscribe_denied = false;
                    }
                    _ => {}
                }
            }
            Ok(Reply::ok())
        }
        _ => Err(Reply::error(
            "ERR the in-memory Redis knows ACL SETUSER only",
        )),
    }
}
