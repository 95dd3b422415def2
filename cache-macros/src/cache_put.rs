//! `#[cache_put]`: write-through of what a function returns.

use proc_macro2::TokenStream;
use quote::quote;
use syn::{ItemFn, LitStr};

use crate::args::Args;
use crate::duration::Ttl;
use crate::errors::Errors;
use crate::expand::{Timing, body_future, key_parts, local, site, with_body};
use crate::signature::{Function, Returns};
use crate::template::Template;

const VALID: &[&str] = &[
    "entity", "ttl", "key", "variant", "version", "stale", "crate",
];

struct CachePut {
    private: TokenStream,
    entity: LitStr,
    ttl: Ttl,
    key: Template,
    variant: Option<Template>,
    version: Option<u32>,
    timing: Timing,
    returns: Returns,
}

fn parse(args: TokenStream, item: &ItemFn) -> syn::Result<CachePut> {
    let mut errors = Errors::default();
    let function = Function::analyze(item, "cache_put", &mut errors);
    let mut args = Args::parse(args, "cache_put", VALID, &mut errors);
    let entity = args.entity(&mut errors);
    let ttl = args.ttl("ttl", &mut errors).unwrap_or(Ttl::Medium);
    let key_written = args.has("key");
    let key = args.template("key", &function.params, &mut errors);
    if key.is_none() && !key_written {
        errors.at(
            proc_macro2::Span::call_site(),
            "#[cache_put] needs `key = \"...\"`: the key the result is stored under, e.g. `key = \"{p.id}\"`",
        );
    }
    let variant = args.template("variant", &function.params, &mut errors);
    let version = args.version(&mut errors);
    let timing = Timing {
        stale: args.duration("stale", &mut errors),
        ..Timing::default()
    };
    let private = args.private_path(&mut errors);
    let key = errors.finish(key)?;
    Ok(CachePut {
        timing,
        private,
        entity,
        ttl,
        key: key.unwrap_or(Template {
            segments: Vec::new(),
        }),
        variant,
        version,
        returns: function.returns,
    })
}

// Input:
//     #[cache_put(entity = "product", key = "{p.id}")]
//     async fn save(&self, p: Product) -> Result<Product, DbError> { body }
// Output:
//     async fn save(&self, p: Product) -> Result<Product, DbError> {
//         static __CACHE_SITE: Site = Site::new("product", None, Ttl::Medium, None);
//         let __cache_key = Some(KeyParts { id: KeyWriter::new().value(&(p.id)).finish(), variant: None });
//         let __cache_ret = async move { body }.await;
//         put(&__CACHE_SITE, __cache_key, PutResult(&__cache_ret)).await;
//         __cache_ret
//     }
fn generate(put: &CachePut, item: &ItemFn) -> TokenStream {
    let CachePut { private, .. } = put;
    let site_ident = local("__CACHE_SITE");
    let key_ident = local("__cache_key");
    let ret = local("__cache_ret");
    let site = site(
        private,
        &put.entity,
        put.version,
        put.ttl,
        &put.timing,
        None,
    );
    let parts = key_parts(private, &put.key, put.variant.as_ref());
    let wrapper = match put.returns {
        Returns::Result => quote!(PutResult),
        Returns::Option => quote!(PutOption),
        Returns::Plain => quote!(PutPlain),
    };
    let body = body_future(item);
    with_body(
        item,
        quote! {
            #site
            // The key is rendered before the body takes the arguments.
            let #key_ident = ::core::option::Option::Some(#parts);
            let #ret = #body.await;
            #private::put(&#site_ident, #key_ident, #private::#wrapper(&#ret)).await;
            #ret
        },
    )
}

pub(crate) fn expand(args: TokenStream, item: TokenStream) -> TokenStream {
    crate::expand_with(item, "cache_put", |item| {
        parse(args, item).map(|put| generate(&put, item))
    })
}
