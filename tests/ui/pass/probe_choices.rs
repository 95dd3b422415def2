//! The shapes where the macros choose by probing types (`cache-runtime/src/probes.rs`): each
//! compiles, and takes the choice that needs nothing of the type.
#![deny(warnings, clippy::all)]

use std::cell::Cell;
use std::rc::Rc;

use cache_runtime::cached;

/// A generic error: nothing is known about `E`, so errors are not shared between waiting
/// callers (each runs its own load after a failure).
#[cached(entity = "generic_error", key = "{id}", stale = "1m")]
pub async fn generic_error<E: From<std::num::ParseIntError>>(id: u64) -> Result<u64, E> {
    Ok("7".parse::<u64>()? + id)
}

/// An error that borrows from an argument: it cannot outlive the call, so it is not shared.
#[cached(entity = "borrowed_error", key = "{name}", stale = "1m")]
pub async fn borrowed_error(name: &str) -> Result<u64, &str> {
    name.parse::<u64>().map_err(|_| name)
}

/// An error with a named lifetime.
#[derive(Debug, Clone)]
pub struct ParseError<'a> {
    pub input: &'a str,
}

#[cached(entity = "named_lifetime_error", key = "{name}")]
pub async fn named_lifetime_error<'a>(name: &'a str) -> Result<u64, ParseError<'a>> {
    name.parse::<u64>().map_err(|_| ParseError { input: name })
}

/// A body that is not `Send` (it holds an `Rc` across an await): refreshes run in the caller
/// that claims them instead of a background task (without `refresh_in_caller`, a compile error
/// at `stale`: `ui/fail/refresh_body_not_send.rs`).
#[cached(entity = "not_send", key = "{id}", stale = "1m", early_refresh, refresh_in_caller)]
pub async fn not_send(id: u64) -> Result<u64, String> {
    let counter = Rc::new(Cell::new(id));
    tokio::task::yield_now().await;
    counter.set(counter.get() + 1);
    Ok(counter.get())
}

/// An error that cannot be cloned: each waiting caller runs its own load after a failure.
#[derive(Debug)]
pub struct NotClone;

#[cached(entity = "not_clone", key = "{id}", stale = "1m")]
pub async fn not_clone(id: u64) -> Result<u64, NotClone> {
    if id == 0 { Err(NotClone) } else { Ok(id) }
}

fn main() {
    let _ = generic_error::<std::num::ParseIntError>(1);
    let _ = borrowed_error("1");
    let _ = named_lifetime_error("1");
    let _ = not_send(1);
    let _ = not_clone(1);
}
