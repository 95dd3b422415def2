//! Code generation shared by the three macros. No parsing happens here.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{Ident, ItemFn, LitStr, ReturnType};

use crate::args::Placement;
use crate::duration::{LiteralDuration, Ttl, ttl_tokens};
use crate::template::{Segment, Template};

/// A generated local: `__cache_*` at mixed-site hygiene, so it never clashes with (or captures)
/// a user's own names such as `key`, `cache` or `result`.
pub(crate) fn local(name: &str) -> Ident {
    Ident::new(name, Span::mixed_site())
}

/// The escaped id a key template renders to. A `:` in the literal text becomes `%3a`: never
/// the schema's separator before a variant (so `key = "{a}:{b}"` and `key = "{a}", variant =
/// "{b}"` give different keys), and never what a value's own `:` becomes (`%3A`, uppercase),
/// so the values of one template stay apart too.
// Input:  "{user}:{page}"
// Output: KeyWriter::new().value(&(user)).literal("%3a").value(&(page)).finish()
pub(crate) fn render_id(private: &TokenStream, template: &Template) -> TokenStream {
    render(private, template, |text| text.replace(':', "%3a"))
}

/// The escaped variant a variant template renders to: literal text as written (the variant
/// ends the key, so a `:` in it cannot be mistaken for the separator before it), values
/// escaped.
// Input:  "p{page}:{sort}"
// Output: KeyWriter::new().literal("p").value(&(page)).literal(":").value(&(sort)).finish()
pub(crate) fn render_variant(private: &TokenStream, template: &Template) -> TokenStream {
    render(private, template, str::to_owned)
}

/// The tag a tag template renders to: literal text as written (so `invalidate_tag("group:7")`
/// names what `tags = ["group:{id}"]` wrote), values escaped.
// Input:  "group:{id}"
// Output: KeyWriter::new().literal("group:").value(&(id)).finish()
pub(crate) fn render_tag(private: &TokenStream, template: &Template) -> TokenStream {
    render(private, template, str::to_owned)
}

fn render(
    private: &TokenStream,
    template: &Template,
    literal: impl Fn(&str) -> String,
) -> TokenStream {
    let mut chain = quote!(#private::KeyWriter::new());
    for segment in &template.segments {
        chain = match segment {
            Segment::Literal(text) => {
                let text = literal(text);
                quote!(#chain.literal(#text))
            }
            // Spanned on the template: a type that is not a `KeyPart` is reported there.
            Segment::Value(expr) => {
                quote::quote_spanned!(template.span=> #chain.value(&(#expr)))
            }
        };
    }
    quote!(#chain.finish())
}

/// `KeyParts { id, variant, tags }` for a call.
pub(crate) fn key_parts(
    private: &TokenStream,
    id: &Template,
    variant: Option<&Template>,
    tags: &[Template],
) -> TokenStream {
    let id = render_id(private, id);
    let variant = match variant {
        Some(variant) => {
            let variant = render_variant(private, variant);
            quote!(::core::option::Option::Some(#variant))
        }
        None => quote!(::core::option::Option::None),
    };
    let tags = rendered_list(private, tags);
    quote!(#private::KeyParts { id: #id, variant: #variant, tags: #tags })
}

/// How a site treats time, as written in its attribute.
#[derive(Default)]
pub(crate) struct Timing {
    pub(crate) stale: Option<LiteralDuration>,
    pub(crate) early_refresh: Option<f64>,
    pub(crate) refresh_timeout: Option<LiteralDuration>,
    /// Also keep values in the in-process tier.
    pub(crate) local: bool,
    /// Bound the body: past it, `E::from(LoadTimedOut)`.
    pub(crate) load_timeout: Option<LiteralDuration>,
}

/// `ReadOptions::new(ttl).stale(…)…`, a const expression.
fn read_options(private: &TokenStream, ttl: Ttl, timing: &Timing) -> TokenStream {
    let ttl = ttl_tokens(ttl, private);
    let mut options = quote!(#private::ReadOptions::new(#ttl));
    if let Some(stale) = timing.stale {
        let stale = stale.tokens(private);
        options = quote!(#options.stale(#stale));
    }
    if let Some(beta) = timing.early_refresh {
        options = quote!(#options.early_refresh(#beta));
    }
    if let Some(timeout) = timing.refresh_timeout {
        let timeout = timeout.tokens(private);
        options = quote!(#options.refresh_timeout(#timeout));
    }
    if timing.local {
        options = quote!(#options.local());
    }
    options
}

/// `vec![…]` of rendered templates (an empty `Vec::new()` for none).
pub(crate) fn rendered_list(private: &TokenStream, templates: &[Template]) -> TokenStream {
    if templates.is_empty() {
        return quote!(::std::vec::Vec::new());
    }
    let rendered = templates.iter().map(|t| render_tag(private, t));
    quote!(::std::vec![#(#rendered),*])
}

/// `EntitySite::new(entity, version, function)`: which entity a function works on, and the
/// function's path (named in warnings).
pub(crate) fn entity_site(
    private: &TokenStream,
    entity: &LitStr,
    version: Option<u32>,
    function: &syn::Ident,
) -> TokenStream {
    let version = match version {
        Some(v) => quote!(::core::option::Option::Some(#v)),
        None => quote!(::core::option::Option::None),
    };
    let function = format!("::{function}");
    quote! {
        #private::EntitySite::new(
            #entity,
            #version,
            ::core::concat!(::core::module_path!(), #function),
        )
    }
}

/// The `ValueSite` static of `#[cached]` and `#[cache_put]`: the entity, and how its values
/// are read and written.
pub(crate) fn value_site(
    private: &TokenStream,
    placement: &Placement,
    timing: &Timing,
    negative_ttl: Option<Ttl>,
    function: &syn::Ident,
) -> TokenStream {
    let site = local("__CACHE_SITE");
    let entity = entity_site(private, &placement.entity, placement.version, function);
    let options = read_options(private, placement.ttl, timing);
    let negative_ttl = match negative_ttl {
        Some(t) => {
            let t = ttl_tokens(t, private);
            quote!(::core::option::Option::Some(#t))
        }
        None => quote!(::core::option::Option::None),
    };
    quote! {
        static #site: #private::ValueSite = #private::ValueSite::new(#entity, #options, #negative_ttl);
    }
}

/// The user's body as a future with the function's output type. An async block (not the bare
/// block) so that `return` and `?` in the body leave the body, not the wrapper around it.
// Input:  { self.db.product(id).await }
// Output: async move { let __cache_ret: Result<Product, DbError> = { self.db.product(id).await }; __cache_ret }
pub(crate) fn body_future(item: &ItemFn) -> TokenStream {
    let ret = local("__cache_ret");
    let block = &item.block;
    match &item.sig.output {
        // Nothing to annotate: a unit body needs no help with `?` inference.
        ReturnType::Default => quote!(async move #block),
        ReturnType::Type(_, ty) => quote! {
            async move {
                let #ret: #ty = #block;
                #ret
            }
        },
    }
}

/// The function with its signature and attributes as written and a new body.
pub(crate) fn with_body(item: &ItemFn, body: TokenStream) -> TokenStream {
    let ItemFn {
        attrs, vis, sig, ..
    } = item;
    quote! {
        #(#attrs)*
        #vis #sig {
            #body
        }
    }
}
