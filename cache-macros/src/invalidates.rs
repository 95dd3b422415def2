//! `#[invalidates]`: drop cached values after (and optionally before) a mutating function.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{ItemFn, LitStr};

use crate::args::Args;
use crate::duration::Ttl;
use crate::errors::Errors;
use crate::expand::{Timing, body_future, local, render, site, with_body};
use crate::signature::{Function, Returns};
use crate::template::Template;

const VALID: &[&str] = &["entity", "key", "all", "before", "version", "crate"];

enum Target {
    /// One id with all its variants.
    Id(Template),
    /// The whole entity.
    All,
}

struct Invalidates {
    private: TokenStream,
    entity: LitStr,
    target: Target,
    before: bool,
    version: Option<u32>,
    returns: Returns,
}

fn parse(args: TokenStream, item: &ItemFn) -> syn::Result<Invalidates> {
    let mut errors = Errors::default();
    let function = Function::analyze(item, "invalidates", &mut errors);
    let mut args = Args::parse(args, "invalidates", VALID, &mut errors);
    let entity = args.entity(&mut errors);
    let key_written = args.has("key");
    let key = args.template("key", &function.params, &mut errors);
    let all = args.flag("all", &mut errors);
    let target = match (key, all) {
        (Some(key), None) => Some(Target::Id(key)),
        (None, Some(_)) => Some(Target::All),
        (Some(_), Some(span)) => {
            errors.at(
                span,
                "`all` and `key` exclude each other: `all` drops every key of the entity",
            );
            None
        }
        (None, None) if key_written => None,
        (None, None) => {
            errors.at(
                Span::call_site(),
                "#[invalidates] needs `key = \"...\"` (one id with all its variants) or `all` (the whole entity)",
            );
            None
        }
    };
    let before = args.flag("before", &mut errors).is_some();
    let version = args.version(&mut errors);
    let private = args.private_path(&mut errors);
    let target = errors.finish(target)?;
    Ok(Invalidates {
        private,
        entity,
        target: target.unwrap_or(Target::All),
        before,
        version,
        returns: function.returns,
    })
}

// Input:
//     #[invalidates(entity = "product", key = "{id}")]
//     async fn update(&self, id: u64, update: &ProductUpdate) -> Result<(), DbError> { body }
// Output:
//     async fn update(&self, id: u64, update: &ProductUpdate) -> Result<(), DbError> {
//         static __CACHE_SITE: Site = Site::new("product", None, Ttl::Medium, None);
//         let __cache_target = Target::Id(KeyWriter::new().value(&(id)).finish());
//         let __cache_ret = async move { body }.await;
//         if __cache_ret.is_ok() { invalidate(&__CACHE_SITE, Some(__cache_target)).await; }
//         __cache_ret
//     }
fn generate(inv: &Invalidates, item: &ItemFn) -> TokenStream {
    let Invalidates { private, .. } = inv;
    let site_ident = local("__CACHE_SITE");
    let target_ident = local("__cache_target");
    let ret = local("__cache_ret");
    let site = site(
        private,
        &inv.entity,
        inv.version,
        Ttl::Medium,
        &Timing::default(),
        None,
    );
    let target = match &inv.target {
        Target::Id(template) => {
            let id = render(private, template);
            quote!(#private::Target::Id(#id))
        }
        Target::All => quote!(#private::Target::All),
    };
    let invalidate = quote! {
        #private::invalidate(&#site_ident, ::core::option::Option::Some(#target_ident)).await;
    };
    let before = inv.before.then(|| {
        quote! {
            #private::invalidate(&#site_ident, ::core::option::Option::Some(#target_ident.clone())).await;
        }
    });
    let after = match inv.returns {
        Returns::Result => quote!(if #ret.is_ok() { #invalidate }),
        Returns::Option | Returns::Plain => invalidate,
    };
    let body = body_future(item);
    with_body(
        item,
        quote! {
            #site
            let #target_ident = #target;
            #before
            let #ret = #body.await;
            #after
            #ret
        },
    )
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::expand_with(item, "invalidates", |item| {
        parse(args, item).map(|inv| generate(&inv, item))
    })
}
