//! The runtime's Lua scripts, run natively: each known by its digest, as Redis knows it, and
//! written step for step after its Lua (`cache::lease`, `cache::ordered`, `cache::fence`,
//! `marks`, `rate_limit`). A script runs whole under the store's lock, atomic as in Redis.

use std::time::Duration;

use super::commands::{Answer, execute, expire, int, syntax};
use super::resp::Reply;
use super::store::Store;
use crate::script::Script;

/// `EVAL`, `EVALSHA` and `SCRIPT`.
pub(crate) fn command(store: &mut Store, name: &str, args: &[Vec<u8>]) -> Answer {
    match name {
        "SCRIPT" => match args.first().map(|a| a.to_ascii_uppercase()).as_deref() {
            Some(b"LOAD") => {
                let source = args.get(1).ok_or_else(syntax)?;
                let digest = sha1_smol::Sha1::from(source).digest().to_string();
                *store.calls.entry("script|load".into()).or_default() += 1;
                store.scripts.insert(digest.clone());
                Ok(Reply::bulk(digest))
            }
            Some(b"EXISTS") => Ok(Reply::Array(
                args[1..]
                    .iter()
                    .map(|d| {
                        let digest = String::from_utf8_lossy(d).to_ascii_lowercase();
                        Reply::int(usize::from(store.scripts.contains(&digest)))
                    })
                    .collect(),
            )),
            Some(b"FLUSH") => {
                store.scripts.clear();
                Ok(Reply::ok())
            }
            _ => Err(syntax()),
        },
        _ => {
            let [script, count, rest @ ..] = args else {
                return Err(syntax());
            };
            let script = match name {
                "EVAL" => {
                    let digest = sha1_smol::Sha1::from(script).digest().to_string();
                    let known = known(digest.as_bytes()).ok_or_else(|| {
                        Reply::error("ERR the in-memory Redis runs only the cache's own scripts")
                    })?;
                    store.scripts.insert(digest);
                    known
                }
                // Known by its digest, and loaded since the last restart or flush.
                _ => {
                    let digest = String::from_utf8_lossy(script).to_ascii_lowercase();
                    known(digest.as_bytes())
                        .filter(|_| store.scripts.contains(&digest))
                        .ok_or_else(|| {
                            Reply::error("NOSCRIPT No matching script. Please use EVAL.")
                        })?
                }
            };
            let count = usize::try_from(int(count)?)
                .ok()
                .filter(|n| *n <= rest.len())
                .ok_or_else(|| {
                    Reply::error("ERR Number of keys can't be greater than number of args")
                })?;
            let (keys, argv) = rest.split_at(count);
            run(store, script, keys, argv)
        }
    }
}

fn known(digest: &[u8]) -> Option<&'static Script> {
    crate::script::all()
        .into_iter()
        .find(|script| script.digest().as_bytes() == digest)
}

fn key(keys: &[Vec<u8>], at: usize) -> Result<&[u8], Reply> {
    keys.get(at)
        .map(Vec::as_slice)
        .ok_or_else(|| Reply::error("ERR script called with too few keys"))
}

fn arg(argv: &[Vec<u8>], at: usize) -> Result<&[u8], Reply> {
    argv.get(at)
        .map(Vec::as_slice)
        .ok_or_else(|| Reply::error("ERR script called with too few arguments"))
}

/// A number as Lua's `tonumber` reads it (nil for anything else).
fn number(bytes: Option<&[u8]>) -> Option<f64> {
    std::str::from_utf8(bytes?).ok()?.trim().parse().ok()
}

fn cmd(store: &mut Store, parts: &[&[u8]]) -> Answer {
    let args: Vec<Vec<u8>> = parts[1..].iter().map(|p| p.to_vec()).collect();
    let name = String::from_utf8_lossy(parts[0]).to_ascii_uppercase();
    execute(store, &name, &args)
}

fn run(store: &mut Store, script: &'static Script, keys: &[Vec<u8>], argv: &[Vec<u8>]) -> Answer {
    use crate::cache::{fence, lease, ordered};
    let is = |other: &'static Script| std::ptr::eq(script, other);
    if is(&lease::PROMOTE) {
        if store.string(key(keys, 2)?)? != Some(arg(argv, 0)?) {
            store.tally(&["get", "unlink"]);
            store.remove(key(keys, 0)?);
            return Ok(Reply::Int(0));
        }
        store.tally(&["get", "del", "rename"]);
        store.remove(key(keys, 2)?);
        return Ok(Reply::Int(match store.remove(key(keys, 0)?) {
            Some(loaded) => {
                store.insert(key(keys, 1)?, loaded);
                1
            }
            None => 0,
        }));
    }
    if is(&lease::RENEW) || is(&lease::RELEASE) {
        store.tally(&["get"]);
        if store.string(key(keys, 0)?)? != Some(arg(argv, 0)?) {
            return Ok(Reply::Int(0));
        }
        store.tally(&[if is(&lease::RENEW) { "pexpire" } else { "del" }]);
        return match is(&lease::RENEW) {
            true => expire(store, key(keys, 0)?, int(arg(argv, 1)?)?, &[]),
            false => Ok(Reply::int(usize::from(
                store.remove(key(keys, 0)?).is_some(),
            ))),
        };
    }
    if is(&ordered::WRITE_ORDERED) {
        let revision = arg(argv, 0)?;
        let held = store
            .string(key(keys, 2)?)
            .ok()
            .flatten()
            .map(<[u8]>::to_vec);
        let stored = stored_revision(store, key(keys, 1)?);
        let beaten = |other: &Option<Vec<u8>>| other.as_deref().is_some_and(|o| above(o, revision));
        store.tally(&["get", "getrange", "unlink"]);
        if beaten(&held) || beaten(&stored) {
            store.remove(key(keys, 0)?);
            return Ok(Reply::Int(0));
        }
        if held.is_some() {
            store.tally(&["unlink"]);
            store.remove(key(keys, 2)?);
        }
        store.tally(&["rename"]);
        store.remove(key(keys, 3)?);
        cmd(store, &[b"RENAME", key(keys, 0)?, key(keys, 1)?])?;
        return Ok(Reply::Int(1));
    }
    if is(&ordered::REMOVE_KEY) {
        store.tally(&["getrange", "unlink"]);
        if keys.len() > 2 {
            store.tally(&["unlink"]);
        }
        if let Some(stored) = stored_revision(store, key(keys, 0)?) {
            store.tally(&["pttl", "get"]);
            let ttl = store.pttl(key(keys, 0)?);
            let held = store.string(key(keys, 1)?)?.map(<[u8]>::to_vec);
            if ttl > 0 && !held.is_some_and(|held| above(&held, &stored)) {
                store.tally(&["set"]);
                let ttl = Duration::from_millis(ttl.unsigned_abs());
                store.set(key(keys, 1)?, stored, Some(ttl));
            }
        }
        let removed = usize::from(store.remove(key(keys, 0)?).is_some());
        for other in keys.iter().skip(2) {
            store.remove(other);
        }
        return Ok(Reply::int(removed));
    }
    if is(&fence::FENCE) {
        let held = store.string(key(keys, 0)?)?.map(<[u8]>::to_vec);
        let run_id = arg(argv, 0)?;
        if held.as_deref() == Some(run_id) {
            store.tally(&["get", "get"]);
            let mark = store
                .string(key(keys, 2)?)?
                .map_or(b"0".to_vec(), <[u8]>::to_vec);
            return Ok(Reply::Array(vec![Reply::Int(0), Reply::Bulk(mark)]));
        }
        store.tally(&["get", "time", "get", "set", "set", "set"]);
        let next = next_epoch(store, key(keys, 1)?, argv.get(1))?;
        let ttl = int(arg(argv, 2)?)?;
        store.set(key(keys, 1)?, next.clone(), None);
        cmd(
            store,
            &[
                b"SET",
                key(keys, 2)?,
                &next,
                b"PX",
                ttl.to_string().as_bytes(),
            ],
        )?;
        store.set(key(keys, 0)?, run_id.to_vec(), None);
        let raised = if held.is_some() { 1 } else { 2 };
        return Ok(Reply::Array(vec![Reply::Int(raised), Reply::Bulk(next)]));
    }
    if is(&crate::marks::BUMP_EPOCH) {
        store.tally(&["time", "get", "set"]);
        let next = next_epoch(store, key(keys, 0)?, argv.first())?;
        store.set(key(keys, 0)?, next.clone(), None);
        return Ok(Reply::Bulk(next));
    }
    if is(&crate::marks::RAISE_MARK) {
        let mark = key(keys, 0)?;
        let current = number(store.string(mark)?).unwrap_or(0.0);
        let wanted = number(Some(arg(argv, 0)?))
            .ok_or_else(|| Reply::error("ERR the mark is not a number"))?;
        let ttl = arg(argv, 1)?;
        store.tally(&["get", if current < wanted { "set" } else { "pexpire" }]);
        match current < wanted {
            true => cmd(store, &[b"SET", mark, arg(argv, 0)?, b"PX", ttl])?,
            false => cmd(store, &[b"PEXPIRE", mark, ttl, b"GT"])?,
        };
        return Ok(Reply::Int(1));
    }
    if is(&crate::rate_limit::GCRA) {
        return gcra(store, key(keys, 0)?, argv);
    }
    Err(Reply::error(
        "ERR script not implemented by the in-memory Redis",
    ))
}

/// `max(current + 1, now in µs, known + 1)`, as the epoch scripts compute it.
fn next_epoch(store: &mut Store, key: &[u8], known: Option<&Vec<u8>>) -> Result<Vec<u8>, Reply> {
    let current = number(store.string(key)?).unwrap_or(0.0);
    let known = number(known.map(Vec::as_slice)).unwrap_or(0.0);
    let now = store.unix_us() as f64;
    let next = (current + 1.0).max(now).max(known + 1.0);
    Ok(format!("{next:.0}").into_bytes())
}

/// GCRA, in microseconds of the store's clock (see `rate_limit::GCRA`).
fn gcra(store: &mut Store, key: &[u8], argv: &[Vec<u8>]) -> Answer {
    store.tally(&["time", "get"]);
    let now = store.unix_us() as f64;
    let interval = number(Some(arg(argv, 0)?)).ok_or_else(syntax)?;
    let window = number(Some(arg(argv, 1)?)).ok_or_else(syntax)?;
    let tat = number(store.string(key)?).unwrap_or(now).max(now);
    let allow_at = tat - window;
    if now < allow_at {
        return Ok(Reply::Array(vec![
            Reply::Int(0),
            Reply::Int(0),
            Reply::Int((allow_at - now) as i64),
            Reply::Int((tat - now) as i64),
        ]));
    }
    let new_tat = tat + interval;
    store.tally(&["set"]);
    let ttl_ms = ((new_tat - now) / 1000.0).ceil().max(1.0) as u64;
    store.set(
        key,
        format!("{new_tat:.0}").into_bytes(),
        Some(Duration::from_millis(ttl_ms)),
    );
    let remaining = (((now + window - new_tat) / interval).floor() + 1.0).max(0.0);
    Ok(Reply::Array(vec![
        Reply::Int(1),
        Reply::Int(remaining as i64),
        Reply::Int(0),
        Reply::Int((new_tat - now) as i64),
    ]))
}

/// The revision in the first 60 bytes of the value under `key` (see `revision_lua!`).
fn stored_revision(store: &mut Store, key: &[u8]) -> Option<Vec<u8>> {
    let value = store.string(key).ok()??;
    let head = &value[..value.len().min(60)];
    if head.len() < 32 || head[0] != 2 {
        return None;
    }
    let flags = head[2];
    if flags & 16 == 0 {
        return None;
    }
    let mut at = 31;
    if flags & 4 != 0 {
        at += 8;
    }
    let len = usize::from(*head.get(at)?);
    let digits = head.get(at + 1..)?;
    Some(digits[..len.min(digits.len())].to_vec())
}

/// Decimal revisions compared as the scripts do: length, then digits.
fn above(a: &[u8], b: &[u8]) -> bool {
    a.len() > b.len() || (a.len() == b.len() && a > b)
}
