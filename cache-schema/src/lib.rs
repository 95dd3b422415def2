//! The rules of the key schema `{app}:v{version}:{entity}:{id}[:{variant}]` that both the
//! macros (at compile time) and the runtime (at run time) apply.
//!
//! Each rule lives here once, so the macros can never accept a name, a template or a duration
//! that the runtime would reject (which would leave the function running uncached, with
//! nothing but a warning in the logs). `cache-macros` reports a violation as a compile error
//! on the offending literal; `cache-runtime` returns it as an error value.

mod duration;
mod name;
mod text;

pub use duration::{DurationParseError, TtlSpec, parse_millis, parse_ttl};
pub use name::{MAX_NAME_LEN, NameError, validate_name};
pub use text::{allowed_in_literal, needs_escape};
