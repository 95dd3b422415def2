//! Attribute macros for [`cache_runtime`](https://docs.rs/cache-runtime): `#[cached]`,
//! `#[invalidates]` and `#[cache_put]`. Depend on `cache-runtime`, which re-exports them.
//!
//! Each macro parses its arguments into typed structs, checks them (every mistake reported with
//! a span on the offending token), then generates code that calls
//! `::cache_runtime::__private`. On an error the function is emitted unchanged next to it.

mod args;
mod batch;
mod cache_put;
mod cached;
mod duration;
mod errors;
mod expand;
mod invalidates;
mod signature;
mod template;

use proc_macro::TokenStream;
use quote::ToTokens;
use syn::ItemFn;

/// Cache-aside around an async function: a hit returns the cached value without running the
/// body; a miss runs it and stores what it returns.
///
/// ```text
/// #[cached(entity = "product", ttl = "medium", key = "{id}")]
/// async fn product(&self, id: u64) -> Result<Product, DbError> { /* SQL */ }
///
/// #[cached(entity = "product_list", ttl = "short", key = "{category}", variant = "p{page}")]
/// async fn list(&self, category: u32, page: u32) -> Result<Vec<Product>, DbError> { /* SQL */ }
/// ```
///
/// | argument | meaning |
/// | --- | --- |
/// | `entity = "name"` | required; `[a-z0-9_-]+` |
/// | `key = "{id}"` | required; the id: `{param}`, `{param.field}`, `{param.method()}` and literal text |
/// | `variant = "p{page}"` | optional second part of the key (pages, sort orders) |
/// | `ttl = "medium"` | `short`, `medium` (default), `long`, or `90s`, `15m`, `2h`, `1d` |
/// | `version = 4` | pin this entity's schema version |
/// | `condition = <expr>` | cache only when the expression is true |
/// | `cache_none` / `cache_none = "30s"` | for `Option<T>`: cache `None` too (default TTL `short`) |
/// | `crate = path` | where `cache_runtime` is, for crates that re-export it |
///
/// `Result<T, E>` caches `Ok` only, `Option<T>` caches `Some`, anything else is cached as is.
/// Redis trouble never fails the call: the body runs instead.
#[proc_macro_attribute]
pub fn cached(args: TokenStream, item: TokenStream) -> TokenStream {
    cached::expand(args.into(), item.into()).into()
}

/// Drops cached values after a mutating function succeeds (`Ok` for `Result`, always
/// otherwise): one id with all its variants (`key = "{id}"`) or a whole entity (`all`).
/// `before` also drops them before the body runs. Stack several for several entities.
///
/// ```text
/// #[invalidates(entity = "product", key = "{id}")]
/// #[invalidates(entity = "product_list", key = "{update.category}")]
/// async fn update(&self, id: u64, update: &ProductUpdate) -> Result<(), DbError> { /* SQL */ }
/// ```
#[proc_macro_attribute]
pub fn invalidates(args: TokenStream, item: TokenStream) -> TokenStream {
    invalidates::expand(args.into(), item.into()).into()
}

/// Write-through: stores what the function returns (`Ok`, `Some`, or the value) under the key.
///
/// ```text
/// #[cache_put(entity = "product", ttl = "medium", key = "{p.id}")]
/// async fn save(&self, p: Product) -> Result<Product, DbError> { /* SQL */ }
/// ```
#[proc_macro_attribute]
pub fn cache_put(args: TokenStream, item: TokenStream) -> TokenStream {
    cache_put::expand(args.into(), item.into()).into()
}

/// Parses the item as a function and runs `generate`; on any error, emits the error and the
/// item exactly as written, so the user sees one message rather than a cascade.
fn expand_with(
    item: proc_macro2::TokenStream,
    macro_name: &str,
    generate: impl FnOnce(&ItemFn) -> syn::Result<proc_macro2::TokenStream>,
) -> proc_macro2::TokenStream {
    let function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error = syn::Error::new(
                proc_macro2::Span::call_site(),
                format!("#[{macro_name}] applies to an `async fn` with a body"),
            );
            let mut out = error.to_compile_error();
            out.extend(item);
            return out;
        }
    };
    match generate(&function) {
        Ok(tokens) => tokens,
        Err(error) => {
            let mut out = error.to_compile_error();
            function.to_tokens(&mut out);
            out
        }
    }
}

#[cfg(test)]
mod shared_rules_tests;
#[cfg(test)]
mod tests;
