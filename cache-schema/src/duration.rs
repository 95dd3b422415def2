//! TTLs and durations as written: `short`, `medium`, `long`, or `<n>(ms|s|m|h|d)`.

use std::fmt;

/// A TTL as written: one of the three classes, or a literal duration in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TtlSpec {
    /// `short`.
    Short,
    /// `medium`.
    Medium,
    /// `long`.
    Long,
    /// A literal duration, never zero.
    Millis(u64),
}

/// A TTL or duration string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurationParseError {
    input: String,
    reason: &'static str,
    classes_allowed: bool,
}

impl fmt::Display for DurationParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid duration `{}`: {} (write ",
            self.input, self.reason
        )?;
        if self.classes_allowed {
            f.write_str("`short`, `medium`, `long`, or ")?;
        }
        f.write_str("a number with a unit: `250ms`, `90s`, `15m`, `2h`, `1d`)")
    }
}

impl std::error::Error for DurationParseError {}

/// Parses a TTL: `short`, `medium`, `long`, or a literal duration (see [`parse_millis`]).
/// Surrounding whitespace is ignored.
///
/// ```
/// use cache_schema::{TtlSpec, parse_ttl};
/// assert_eq!(parse_ttl("medium"), Ok(TtlSpec::Medium));
/// assert_eq!(parse_ttl("90s"), Ok(TtlSpec::Millis(90_000)));
/// assert!(parse_ttl("fast").is_err());
/// ```
pub fn parse_ttl(input: &str) -> Result<TtlSpec, DurationParseError> {
    match input.trim() {
        "short" => Ok(TtlSpec::Short),
        "medium" => Ok(TtlSpec::Medium),
        "long" => Ok(TtlSpec::Long),
        _ => parse(input, true).map(TtlSpec::Millis),
    }
}

/// Parses a literal duration, in milliseconds: an integer followed by `ms`, `s`, `m`, `h` or
/// `d`, not zero, not overflowing. Surrounding whitespace is ignored.
///
/// ```
/// assert_eq!(cache_schema::parse_millis("2h"), Ok(7_200_000));
/// assert!(cache_schema::parse_millis("90").is_err());
/// assert!(cache_schema::parse_millis("0s").is_err());
/// ```
pub fn parse_millis(input: &str) -> Result<u64, DurationParseError> {
    if matches!(input.trim(), "short" | "medium" | "long") {
        return Err(DurationParseError {
            input: input.to_owned(),
            reason: "TTL classes are not durations",
            classes_allowed: false,
        });
    }
    parse(input, false)
}

fn parse(input: &str, classes_allowed: bool) -> Result<u64, DurationParseError> {
    let error = |reason| DurationParseError {
        input: input.to_owned(),
        reason,
        classes_allowed,
    };
    let trimmed = input.trim();
    let digits_end = trimmed
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| error("the unit is missing"))?;
    let (number, unit) = trimmed.split_at(digits_end);
    if number.is_empty() {
        return Err(error("it does not start with a number"));
    }
    let millis_per_unit: u64 = match unit {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(error("the unit is not one of ms, s, m, h, d")),
    };
    let millis = number
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(millis_per_unit))
        .ok_or_else(|| error("the number is too large"))?;
    if millis == 0 {
        return Err(error("it is zero"));
    }
    Ok(millis)
}
