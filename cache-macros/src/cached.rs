//! `#[cached]`: cache-aside around an async function.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, ItemFn};

use crate::args::{Args, Placement};
use crate::batch::BatchIds;
use crate::duration::{Ttl, parse_ttl};
use crate::errors::Errors;
use crate::expand::{Timing, body_future, key_parts, local, value_site, with_body};
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
    "refresh_in_caller",
    "batch",
    "crate",
];

struct Cached {
    private: TokenStream,
    placement: Placement,
    negative_ttl: Option<Ttl>,
    condition: Option<Expr>,
    timing: Timing,
    returns: Returns,
    error_is_owned: bool,
    /// Refreshes of stale or early-refreshed values run in a background task.
    background_refresh: bool,
    /// `batch`: the ids read together.
    batch: Option<BatchIds>,
}

fn parse(args: TokenStream, item: &ItemFn) -> syn::Result<Cached> {
    let mut errors = Errors::default();
    let function = Function::analyze(item, "cached", &mut errors);
    let mut args = Args::parse(args, "cached", VALID, &mut errors);
    let batch_flag = args.flag("batch", &mut errors);
    let key_lit = args.peek_string("key");
    let batch = batch_flag.and_then(|flag| {
        BatchIds::analyze(item, key_lit.as_ref(), &function.params, flag, &mut errors)
    });
    let mut params = function.params.clone();
    if batch_flag.is_some() {
        // The key's name for one id (reported above if it is missing or wrong).
        let text = key_lit.map(|lit| lit.value()).unwrap_or_default();
        params.extend(crate::template::unknown_roots(&text, &function.params));
    }
    let placement = args.placement(
        &params,
        "`key = \"...\"`, e.g. `key = \"{id}\"` (or a constant such as `key = \"all\"`)",
        &mut errors,
    );
    let condition = args.expr("condition", "!refresh", &mut errors);
    let negative_ttl = match args.flag_or_string("cache_none", &mut errors) {
        None => None,
        Some((span, _)) if function.returns != Returns::Option && batch_flag.is_none() => {
            errors.at(span, "`cache_none` needs a function returning `Option<T>`");
            None
        }
        Some((_, None)) => Some(Ttl::Short),
        Some((_, Some(lit))) => match parse_ttl(&lit.value()) {
            Ok(ttl) => Some(ttl),
            Err(message) => {
                errors.at(lit.span(), message);
                None
            }
        },
    };
    let refresh_span = args.span("stale").or(args.span("early_refresh"));
    let load_timeout_span = args.span("load_timeout");
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
    if let Some(flag) = batch_flag {
        if let Some(condition) = &condition {
            errors.push(syn::Error::new_spanned(
                condition,
                "`condition` is not supported with `batch`: every id of a batch is cached",
            ));
        }
        if timing.load_timeout.is_some() {
            let span = load_timeout_span.unwrap_or(flag);
            errors.at(span, "`load_timeout` is not supported with `batch`");
        }
    }
    let in_caller = args.flag("refresh_in_caller", &mut errors);
    if let (Some(span), None) = (in_caller, refresh_span) {
        errors.at(
            span,
            "`refresh_in_caller` needs `stale` or `early_refresh`: without them nothing is refreshed",
        );
    }
    // A background task needs a body that outlives the call: owned inputs, a syntactic test
    // (trait selection ignores lifetimes).
    let background_refresh = refresh_span.is_some()
        && in_caller.is_none()
        && function.owns_its_inputs
        && function.returns == Returns::Result
        && batch_flag.is_none();
    let private = args.private_path(&mut errors);
    errors.finish(Cached {
        private,
        placement,
        negative_ttl,
        condition,
        timing,
        returns: function.returns,
        error_is_owned: function.error_is_owned,
        background_refresh,
        batch,
    })
}

/// The expansion; `snapshots/cached_method.rs` shows one as `cargo expand` prints it.
fn generate(cached: &Cached, item: &ItemFn) -> TokenStream {
    let Cached {
        private, placement, ..
    } = cached;
    let site_ident = local("__CACHE_SITE");
    let key_ident = local("__cache_key");
    let site = value_site(
        private,
        placement,
        &cached.timing,
        cached.negative_ttl,
        &item.sig.ident,
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
    if let Some(batch) = &cached.batch {
        let value = &batch.value;
        let call = batch.call(private, item, &parts);
        return with_body(
            item,
            quote! {
                #site
                #private::cache_value::<#value>();
                #call
            },
        );
    }
    let body = body_future(item);
    let value_check = value_type(item).map(|ty| quote!(#private::cache_value::<#ty>();));
    let call = match cached.returns {
        Returns::Result => {
            let body_ident = local("__cache_body");
            let errors_ident = local("__cache_errors");
            let body = match cached.timing.load_timeout {
                Some(limit) => {
                    let limit = limit.tokens(private);
                    quote!(#private::with_load_timeout(#body, #limit))
                }
                None => body,
            };
            let spawner_ident = local("__cache_spawner");
            // A body that is not `Send` fails the bound of `background_refresh`, whose error
            // points at the value that is not `Send` and suggests `refresh_in_caller`.
            let spawner = if cached.background_refresh {
                quote!(#private::background_refresh(&#body_ident))
            } else {
                quote!(::core::option::Option::None)
            };
            // Error sharing is probed only on an error type without borrows: selection would
            // pick sharing for a borrowed one too, and the borrow checker then reject it.
            let errors = if cached.error_is_owned {
                quote! {{
                    use #private::{KeepErrors as _, ShareClonedErrors as _};
                    (&#private::Probe::of(&#body_ident)).error_sharing()
                }}
            } else {
                quote!(::core::option::Option::None)
            };
            quote! {
                let #body_ident = #body;
                let #errors_ident = #errors;
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
            #value_check
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

/// The type a `-> Result<T, E>` or `-> Option<T>` function caches, as written in its
/// signature (its own spans), for a function without generics (whose `T` could name them).
fn value_type(item: &ItemFn) -> Option<&syn::Type> {
    if !item.sig.generics.params.is_empty() {
        return None;
    }
    let syn::ReturnType::Type(_, ty) = &item.sig.output else {
        return None;
    };
    let syn::Type::Path(path) = ty.as_ref() else {
        return None;
    };
    let last = path.path.segments.last()?;
    if last.ident != "Result" && last.ident != "Option" {
        return None;
    }
    let syn::PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.first()? {
        syn::GenericArgument::Type(ty) => Some(ty),
        _ => None,
    }
}
