//! App prefixes and entity names.

use std::fmt;

/// The longest app prefix or entity name accepted, in bytes.
pub const MAX_NAME_LEN: usize = 64;

/// A name (app prefix or entity) that is not a short `[a-z0-9_-]+` identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameError {
    what: &'static str,
    name: String,
    reason: &'static str,
}

impl fmt::Display for NameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {} `{}`: {}", self.what, self.name, self.reason)
    }
}

impl std::error::Error for NameError {}

/// Checks that `name` is a non-empty `[a-z0-9_-]+` identifier of at most [`MAX_NAME_LEN`]
/// bytes: nothing a key needs to escape, and short enough to keep keys readable.
///
/// `what` says which kind of name it is ("app prefix", "entity") in the error.
///
/// ```
/// assert!(cache_schema::validate_name("entity", "product_list").is_ok());
/// let error = cache_schema::validate_name("entity", "Product").unwrap_err();
/// assert_eq!(
///     error.to_string(),
///     "invalid entity `Product`: use only lowercase ASCII letters, digits, `_` and `-`"
/// );
/// ```
pub fn validate_name(what: &'static str, name: &str) -> Result<(), NameError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.len() > MAX_NAME_LEN {
        "it is longer than 64 bytes"
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        "use only lowercase ASCII letters, digits, `_` and `-`"
    } else {
        return Ok(());
    };
    Err(NameError {
        what,
        name: name.to_owned(),
        reason,
    })
}
