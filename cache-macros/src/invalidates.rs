//! `#[invalidates]`: drop cached values after (and optionally before) a mutating function.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::{ItemFn, LitStr};

use crate::args::Args;
use crate::errors::Errors;
use crate::expand::{body_future, entity_site, local, render_id, rendered_list, with_body};
use crate::signature::{Function, Returns};
use crate::template::Template;

const VALID: &[&str] = &["entity", "key", "all", "tags", "before", "version", "crate"];

enum Target {
    /// One id with all its variants.
    Id(Template),
    /// The whole entity.
    All,
    /// Every key carrying one of these tags.
    Tags(Vec<Template>),
}

struct Invalidates {
    private: TokenStream,
    /// `None` for tags given without an entity: tags span entities.
    entity: Option<LitStr>,
    target: Target,
    before: bool,
    version: Option<u32>,
    returns: Returns,
}

fn parse(args: TokenStream, item: &ItemFn) -> syn::Result<Invalidates> {
    let mut errors = Errors::default();
    let function = Function::analyze(item, "invalidates", &mut errors);
    let mut args = Args::parse(args, "invalidates", VALID, &mut errors);
    // Tags span entities: they need none, and an entity given with them changes nothing.
    let entity = (args.has("entity") || !args.has("tags")).then(|| args.entity(&mut errors));
    let key_written = args.has("key");
    let key = args.template("key", &function.params, &mut errors);
    let all = args.flag("all", &mut errors);
    let tags = args.templates("tags", &function.params, &mut errors);
    let chosen =
        usize::from(key_written) + usize::from(all.is_some()) + usize::from(tags.is_some());
    let target = match (key, all, tags) {
        _ if chosen > 1 => {
            errors.at(
                all.unwrap_or_else(Span::call_site),
                "#[invalidates] takes one of `key` (one id with all its variants), `all` (the whole entity) or `tags`",
            );
            None
        }
        (Some(key), None, None) => Some(Target::Id(key)),
        (None, Some(_), None) => Some(Target::All),
        (None, None, Some(tags)) => Some(Target::Tags(tags)),
        _ if key_written => None,
        _ => {
            errors.at(
                Span::call_site(),
                "#[invalidates] needs `key = \"...\"` (one id with all its variants), `all` (the whole entity) or `tags = [...]`",
            );
            None
        }
    };
    let before = args.flag("before", &mut errors).is_some();
    if entity.is_none()
        && let Some(span) = args.span("version")
    {
        errors.at(
            span,
            "`version` is an entity's schema version: give `entity = \"...\"` with it, or leave it out (tags span entities and versions)",
        );
    }
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

/// The expansion; `snapshots/invalidates.rs` shows one as `cargo expand` prints it.
fn generate(inv: &Invalidates, item: &ItemFn) -> TokenStream {
    let Invalidates { private, .. } = inv;
    let target_ident = local("__cache_target");
    let ret = local("__cache_ret");
    let succeeded = local("__cache_succeeded");
    let site_ident = local("__CACHE_SITE");
    let (site, target) = match &inv.entity {
        Some(entity) => {
            let entity_site = entity_site(private, entity, inv.version, &item.sig.ident);
            let target = match &inv.target {
                Target::Id(template) => {
                    let id = render_id(private, template);
                    quote!(#private::Target::Id(#id))
                }
                Target::All => quote!(#private::Target::All),
                Target::Tags(templates) => {
                    let tags = rendered_list(private, templates);
                    quote!(#private::Target::Tags(#tags))
                }
            };
            (
                quote!(static #site_ident: #private::EntitySite = #entity_site;),
                target,
            )
        }
        // Tags given alone (parsing allows no other target without an entity).
        None => {
            let templates = match &inv.target {
                Target::Tags(templates) => templates.as_slice(),
                Target::Id(_) | Target::All => &[],
            };
            (TokenStream::new(), rendered_list(private, templates))
        }
    };
    let call = |target: TokenStream| match &inv.entity {
        Some(_) => quote! {
            #private::invalidate(&#site_ident, ::core::option::Option::Some(#target)).await;
        },
        None => quote! {
            #private::invalidate_tags(::core::option::Option::Some(#target)).await;
        },
    };
    let invalidate = call(quote!(#target_ident));
    let before = inv.before.then(|| call(quote!(#target_ident.clone())));
    let after = match inv.returns {
        Returns::Result => quote!(if #ret.is_ok() { #invalidate }),
        Returns::Option => invalidate,
        // A `Result` under another name is told apart by its type (see `return_kind`).
        Returns::Plain => quote! {
            let #succeeded = {
                use #private::{SucceededAsAny as _, SucceededAsResult as _};
                (&&#private::Kind(&#ret)).succeeded()
            };
            if #succeeded { #invalidate }
        },
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
