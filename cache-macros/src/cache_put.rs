//! `#[cache_put]`: write-through of what a function returns.

use proc_macro2::TokenStream;
use quote::quote;
use syn::ItemFn;

use crate::args::{Args, Placement};
use crate::errors::Errors;
use crate::expand::{Timing, body_future, key_parts, local, value_site, with_body};
use crate::signature::{Function, Returns};

const VALID: &[&str] = &[
    "entity", "ttl", "key", "variant", "version", "stale", "tags", "crate",
];

struct CachePut {
    private: TokenStream,
    placement: Placement,
    timing: Timing,
    returns: Returns,
}

fn parse(args: TokenStream, item: &ItemFn) -> syn::Result<CachePut> {
    let mut errors = Errors::default();
    let function = Function::analyze(item, "cache_put", &mut errors);
    let mut args = Args::parse(args, "cache_put", VALID, &mut errors);
    let placement = args.placement(
        &function.params,
        "`key = \"...\"`: the key the result is stored under, e.g. `key = \"{p.id}\"`",
        &mut errors,
    );
    let timing = Timing {
        stale: args.duration("stale", &mut errors),
        ..Timing::default()
    };
    let private = args.private_path(&mut errors);
    errors.finish(CachePut {
        private,
        placement,
        timing,
        returns: function.returns,
    })
}

/// The expansion; `snapshots/cache_put.rs` shows one as `cargo expand` prints it.
fn generate(put: &CachePut, item: &ItemFn) -> TokenStream {
    let CachePut {
        private, placement, ..
    } = put;
    let site_ident = local("__CACHE_SITE");
    let key_ident = local("__cache_key");
    let ret = local("__cache_ret");
    let site = value_site(private, placement, &put.timing, None);
    let parts = key_parts(
        private,
        &placement.key,
        placement.variant.as_ref(),
        &placement.tags,
    );
    let value = match put.returns {
        Returns::Result => quote!(#private::PutResult(&#ret)),
        Returns::Option => quote!(#private::PutOption(&#ret)),
        // A `Result` or `Option` under another name is told apart by its type (see
        // `return_kind`), so an `Err` is never stored.
        Returns::Plain => quote! {{
            use #private::{PutAsOption as _, PutAsPlain as _, PutAsResult as _};
            (&&&#private::Kind(&#ret)).put_value()
        }},
    };
    let body = body_future(item);
    with_body(
        item,
        quote! {
            #site
            // The key is rendered before the body takes the arguments.
            let #key_ident = ::core::option::Option::Some(#parts);
            let #ret = #body.await;
            #private::put(&#site_ident, #key_ident, #value).await;
            #ret
        },
    )
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::expand_with(item, "cache_put", |item| {
        parse(args, item).map(|put| generate(&put, item))
    })
}
