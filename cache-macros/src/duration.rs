//! TTL strings, checked at compile time: `short`, `medium`, `long`, or `<n>(ms|s|m|h|d)`.

use proc_macro2::TokenStream;
use quote::quote;

/// A TTL known at compile time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Ttl {
    Short,
    Medium,
    Long,
    Millis(u64),
}

pub(crate) const TTL_HELP: &str =
    "write `short`, `medium`, `long`, or a number with a unit: `250ms`, `90s`, `15m`, `2h`, `1d`";

impl Ttl {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        match text {
            "short" => return Ok(Self::Short),
            "medium" => return Ok(Self::Medium),
            "long" => return Ok(Self::Long),
            _ => {}
        }
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            _ => return Err(format!("invalid ttl `{text}`: {TTL_HELP}")),
        };
        match number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(per_unit))
        {
            Some(0) => Err(format!("invalid ttl `{text}`: it is zero")),
            Some(millis) => Ok(Self::Millis(millis)),
            None => Err(format!("invalid ttl `{text}`: {TTL_HELP}")),
        }
    }

    /// A literal duration only (`stale`, `refresh_timeout`): classes are TTLs, not windows.
    pub(crate) fn parse_literal(text: &str) -> Result<Self, String> {
        match Self::parse(text) {
            Ok(Self::Millis(ms)) => Ok(Self::Millis(ms)),
            _ => Err(format!(
                "invalid duration `{text}`: write a number with a unit: `250ms`, `90s`, `15m`, `2h`, `1d`"
            )),
        }
    }

    /// A `Duration` expression, for literal durations.
    pub(crate) fn duration_tokens(self, private: &TokenStream) -> TokenStream {
        let ms = match self {
            Self::Millis(ms) => ms,
            // parse_literal admits only Millis; classes have no fixed duration at compile time.
            Self::Short | Self::Medium | Self::Long => 0,
        };
        quote!(#private::Duration::from_millis(#ms))
    }

    /// The `Ttl` value in the runtime crate.
    pub(crate) fn tokens(self, private: &TokenStream) -> TokenStream {
        match self {
            Self::Short => quote!(#private::Ttl::Short),
            Self::Medium => quote!(#private::Ttl::Medium),
            Self::Long => quote!(#private::Ttl::Long),
            Self::Millis(ms) => quote!(#private::Ttl::Fixed(#private::Duration::from_millis(#ms))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ttl;

    #[test]
    fn classes_and_units_parse() {
        assert_eq!(Ttl::parse("medium"), Ok(Ttl::Medium));
        assert_eq!(Ttl::parse("90s"), Ok(Ttl::Millis(90_000)));
        assert_eq!(Ttl::parse("2h"), Ok(Ttl::Millis(7_200_000)));
        assert!(Ttl::parse("90").is_err());
        assert!(Ttl::parse("0s").is_err());
        assert!(Ttl::parse("fast").is_err());
        assert!(Ttl::parse("99999999999999999999d").is_err());
    }
}
