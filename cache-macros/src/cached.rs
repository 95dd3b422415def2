//! `#[cached]`: cache-aside around an async function.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, ItemFn};

use crate::args::{Args, Placement};
use crate::duration::Ttl;
use crate::errors::Errors;
use crate::expand::{Timing, body_future, key_parts, local, site, with_body};
use crate::signature::{Function, Returns};

const VALID: &[&str] = &[
    "entity",
    "ttl",
    "key",
    "variant",
    "version",
    "condition",
    "cache_none",
    "stale",
    "early_refresh",
    "refresh_timeout",
    "local",
    "load_timeout",
    "tags",
    "crate",
];

struct Cached {
    private: TokenStream,
    placement: Placement,
    negative_ttl: Option<Ttl>,
    condition: Option<Expr>,
    timing: Timing,
    returns: Returns,
    owns_its_inputs: bool,
}

fn parse(args: TokenStream, item: &ItemFn) -> syn::Result<Cached> {
    let mut errors = Errors::default();
    let function = Function::analyze(item, "cached", &mut errors);
    let mut args = Args::parse(args, "cached", VALID, &mut errors);
    let placement = args.placement(
        &function.params,
        "`key = \"...\"`, e.g. `key = \"{id}\"` (or a constant such as `key = \"all\"`)",
        &mut errors,
    );
    let condition = args.expr("condition", &mut errors);
    let negative_ttl = match args.flag_or_string("cache_none", &mut errors) {
        None => None,
        Some((span, _)) if function.returns != Returns::Option => {
            errors.at(span, "`cache_none` needs a function returning `Option<T>`");
            None
        }
        Some((_, None)) => Some(Ttl::Short),
        Some((_, Some(lit))) => match Ttl::parse(&lit.value()) {
            Ok(ttl) => Some(ttl),
            Err(message) => {
                errors.at(lit.span(), message);
                None
            }
        },
    };
    let timing = Timing {
        stale: args.duration("stale", &mut errors),
        early_refresh: args.beta("early_refresh", &mut errors),
        refresh_timeout: args.duration("refresh_timeout", &mut errors),
        local: args.flag("local", &mut errors).is_some(),
        load_timeout: args.duration("load_timeout", &mut errors),
    };
    if timing.load_timeout.is_some() && function.returns != Returns::Result {
        errors.at(
            proc_macro2::Span::call_site(),
            "`load_timeout` needs a function returning `Result<T, E>` with `E: From<cache_runtime::LoadTimedOut>`",
        );
    }
    let private = args.private_path(&mut errors);
    errors.finish(Cached {
        private,
        placement,
        negative_ttl,
        condition,
        timing,
        returns: function.returns,
        owns_its_inputs: function.owns_its_inputs,
    })
}

// Input:
//     #[cached(entity = "product", ttl = "medium", key = "{id}")]
//     async fn product(&self, id: u64) -> Result<Product, DbError> { body }
// Output:
//     async fn product(&self, id: u64) -> Result<Product, DbError> {
//         static __CACHE_SITE: Site = Site::new("product", None, Ttl::Medium, None);
//         let __cache_key = Some(KeyParts { id: KeyWriter::new().value(&(id)).finish(), variant: None });
//         let __cache_body = async move { body };
//         let __cache_errors = (&Probe::of(&__cache_body)).error_sharing();
//         let __cache_spawner = None;
//         cached_result(&__CACHE_SITE, __cache_key, __cache_errors, __cache_spawner, __cache_body).await
//     }
fn generate(cached: &Cached, item: &ItemFn) -> TokenStream {
    let Cached {
        private, placement, ..
    } = cached;
    let site_ident = local("__CACHE_SITE");
    let key_ident = local("__cache_key");
    let site = site(
        private,
        &placement.entity,
        placement.version,
        placement.ttl,
        &cached.timing,
        cached.negative_ttl,
    );
    let parts = key_parts(
        private,
        &placement.key,
        placement.variant.as_ref(),
        &placement.tags,
    );
    let key = match &cached.condition {
        Some(condition) => quote! {
            if #condition { ::core::option::Option::Some(#parts) } else { ::core::option::Option::None }
        },
        None => quote!(::core::option::Option::Some(#parts)),
    };
    let body = body_future(item);
    let call = match cached.returns {
        Returns::Result => {
            let body_ident = local("__cache_body");
            let errors_ident = local("__cache_errors");
            let body = match cached.timing.load_timeout {
                Some(limit) => {
                    let limit = limit.duration_tokens(private);
                    quote!(#private::with_load_timeout(#body, #limit))
                }
                None => body,
            };
            // Refreshes run in a background task when the body can outlive the call (owned
            // inputs, a syntactic test: trait selection ignores lifetimes) and can be sent to
            // another thread (the probe). Only stale or early-refreshed values are refreshed.
            let background = cached.owns_its_inputs
                && (cached.timing.stale.is_some() || cached.timing.early_refresh.is_some());
            let spawner_ident = local("__cache_spawner");
            let spawner = if background {
                quote! {{
                    use #private::{RefreshInBackground as _, RefreshInCaller as _};
                    (&#private::BodyProbe::of(&#body_ident)).refresh_spawner()
                }}
            } else {
                quote!(::core::option::Option::None)
            };
            quote! {
                let #body_ident = #body;
                let #errors_ident = {
                    use #private::{KeepErrors as _, ShareClonedErrors as _};
                    (&#private::Probe::of(&#body_ident)).error_sharing()
                };
                let #spawner_ident = #spawner;
                #private::cached_result(
                    &#site_ident,
                    #key_ident,
                    #errors_ident,
                    #spawner_ident,
                    #body_ident,
                )
                .await
            }
        }
        Returns::Option => quote!(#private::cached_option(&#site_ident, #key_ident, #body).await),
        // A `Result` or `Option` under another name is told apart by its type (see
        // `return_kind`), so an alias is cached like the type it names.
        Returns::Plain => {
            let body_ident = local("__cache_body");
            quote! {
                let #body_ident = #body;
                {
                    use #private::{ReadAsOption as _, ReadAsPlain as _, ReadAsResult as _};
                    (&&&#private::BodyKind::of(&#body_ident))
                        .read_through(&#site_ident, #key_ident, #body_ident)
                        .await
                }
            }
        }
    };
    with_body(
        item,
        quote! {
            #site
            let #key_ident = #key;
            #call
        },
    )
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::expand_with(item, "cached", |item| {
        parse(args, item).map(|cached| generate(&cached, item))
    })
}
