//! TTLs and durations, checked at compile time by the rules the runtime applies
//! (`cache_schema`): `short`, `medium`, `long`, or `<n>(ms|s|m|h|d)`.

use proc_macro2::TokenStream;
use quote::quote;

pub(crate) use cache_schema::TtlSpec as Ttl;

/// Parses a TTL attribute value; the error is the runtime's own message.
pub(crate) fn parse_ttl(text: &str) -> Result<Ttl, String> {
    cache_schema::parse_ttl(text).map_err(|error| error.to_string())
}

/// The `Ttl` value in the runtime crate.
pub(crate) fn ttl_tokens(ttl: Ttl, private: &TokenStream) -> TokenStream {
    match ttl {
        Ttl::Short => quote!(#private::Ttl::Short),
        Ttl::Medium => quote!(#private::Ttl::Medium),
        Ttl::Long => quote!(#private::Ttl::Long),
        Ttl::Millis(ms) => quote!(#private::Ttl::Fixed(#private::Duration::from_millis(#ms))),
    }
}

/// A literal duration (`stale`, `refresh_timeout`, `load_timeout`): classes are TTLs, not
/// windows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LiteralDuration(u64);

impl LiteralDuration {
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        cache_schema::parse_millis(text)
            .map(Self)
            .map_err(|error| error.to_string())
    }

    /// A `Duration` expression.
    pub(crate) fn tokens(self, private: &TokenStream) -> TokenStream {
        let ms = self.0;
        quote!(#private::Duration::from_millis(#ms))
    }
}
