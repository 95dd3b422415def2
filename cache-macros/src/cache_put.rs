//! `#[cache_put]`: write-through of what a function returns.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{Expr, ExprClosure, ItemFn};

use crate::args::{Args, Placement};
use crate::errors::Errors;
use crate::expand::{Timing, body_future, key_parts, local, value_site, with_body};
use crate::signature::{Function, Returns};

const VALID: &[&str] = &[
    "entity", "ttl", "key", "variant", "version", "stale", "tags", "revision", "crate",
];

struct CachePut {
    private: TokenStream,
    placement: Placement,
    timing: Timing,
    returns: Returns,
    revision: Option<Revision>,
}

/// `revision = …`: what orders two writes of one key.
enum Revision {
    /// An expression over the arguments, evaluated before the body (like the key).
    Arguments(Expr),
    /// A closure over the stored value, called after the body.
    Value(ExprClosure),
}

impl Revision {
    fn parse(expr: Expr, errors: &mut Errors) -> Option<Self> {
        match expr {
            Expr::Closure(closure) if closure.inputs.len() == 1 => Some(Self::Value(closure)),
            Expr::Closure(closure) => {
                errors.at(
                    closure.or1_token.span,
                    "a `revision` closure takes one argument, the stored value: `revision = |product| product.version`",
                );
                None
            }
            expr => Some(Self::Arguments(expr)),
        }
    }
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
    let revision = args
        .expr("revision", "|product| product.version", &mut errors)
        .and_then(|expr| Revision::parse(expr, &mut errors));
    let private = args.private_path(&mut errors);
    errors.finish(CachePut {
        private,
        placement,
        timing,
        returns: function.returns,
        revision,
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
    let site = value_site(private, placement, &put.timing, None, &item.sig.ident);
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
    let write = local("__cache_write");
    let (revision_before, put) = match &put.revision {
        None => (
            quote!(),
            quote!(#private::put(#write, #value, ::core::option::Option::None)),
        ),
        Some(Revision::Arguments(expr)) => {
            let revision = local("__cache_revision");
            (
                quote!(let #revision = #private::revision(#expr);),
                quote!(#private::put(#write, #value, ::core::option::Option::Some(#revision))),
            )
        }
        Some(Revision::Value(closure)) => (
            quote!(),
            quote!(#private::put_ordered_by(#write, #value, #closure)),
        ),
    };
    let body = body_future(item);
    with_body(
        item,
        quote! {
            #site
            // The key is rendered before the body takes the arguments.
            let #key_ident = ::core::option::Option::Some(#parts);
            #revision_before
            // Stamped before the body: an invalidation made while it runs covers its value.
            let #write = #private::begin_put(&#site_ident, #key_ident).await;
            let #ret = #body.await;
            #put.await;
            #ret
        },
    )
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::expand_with(item, "cache_put", |item| {
        parse(args, item).map(|put| generate(&put, item))
    })
}
