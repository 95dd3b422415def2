//! `#[cached(batch)]`: what the function's ids, their element and its answer look like, and
//! the expansion that reads them through together.
//!
//! The ids are the one parameter written `&[T]`, `Vec<T>` or `&Vec<T>`; the key template names
//! one of them by a name that is no parameter (`key = "{id}"` for `ids: &[u64]`). The function
//! answers `HashMap<Id, T>` or `Vec<Option<T>>` (one per id, in order), in a `Result` or not.

use proc_macro2::{Span, TokenStream};
use quote::{quote, quote_spanned};
use syn::spanned::Spanned as _;
use syn::{FnArg, GenericArgument, Ident, ItemFn, LitStr, Pat, PathArguments, ReturnType, Type};

use crate::errors::Errors;
use crate::expand::local;
use crate::template::unknown_roots;

/// The parameter holding a batch's ids.
pub(crate) struct BatchIds {
    pub(crate) name: Ident,
    /// Its type as written.
    pub(crate) ty: Type,
    /// The type of one id.
    pub(crate) id: Type,
    /// Whether the parameter is a reference (`&[T]`, `&Vec<T>`) rather than a `Vec<T>`.
    borrowed: bool,
    /// The name the key template gives one id.
    pub(crate) element: String,
    /// The type the function caches per id.
    pub(crate) value: Type,
    /// Whether the answer is inside a `Result`.
    pub(crate) fallible: bool,
}

const SHAPES: &str = "a batch function takes its ids as `&[T]`, `Vec<T>` or `&Vec<T>`";

impl BatchIds {
    /// Finds the ids, the element's name in `key` and the answer's shape; `None` after
    /// reporting what is wrong.
    pub(crate) fn analyze(
        item: &ItemFn,
        key: Option<&LitStr>,
        params: &[String],
        flag: Span,
        errors: &mut Errors,
    ) -> Option<Self> {
        let mut found = None;
        for arg in &item.sig.inputs {
            let FnArg::Typed(typed) = arg else { continue };
            let (Pat::Ident(pat), Some((id, borrowed))) = (&*typed.pat, id_type(&typed.ty)) else {
                continue;
            };
            if found.is_some() {
                errors.at(
                    typed.span(),
                    "`batch` reads one parameter of ids; this is a second one (take the other by value, or in a struct)",
                );
                return None;
            }
            found = Some((pat.ident.clone(), (*typed.ty).clone(), id, borrowed));
        }
        let Some((name, ty, id, borrowed)) = found else {
            errors.at(flag, format!("`batch` needs the ids: {SHAPES}"));
            return None;
        };
        let key = key?;
        let unknown = unknown_roots(&key.value(), params);
        let named = unknown_roots(&key.value(), &[]);
        let element = match unknown.first() {
            _ if named.contains(&name.to_string()) => {
                errors.at(
                    key.span(),
                    format!("`{{{name}}}` is the whole batch: a batch key names one of its ids, e.g. `key = \"{{id}}\"`"),
                );
                return None;
            }
            Some(element) => element.clone(),
            None => {
                errors.at(
                    key.span(),
                    format!("a batch key names one id of `{name}` by a name of its own, e.g. `key = \"{{id}}\"`"),
                );
                return None;
            }
        };
        let Some((value, fallible)) = answer(&item.sig.output) else {
            let span = match &item.sig.output {
                ReturnType::Type(_, ty) => ty.span(),
                ReturnType::Default => item.sig.ident.span(),
            };
            errors.at(
                span,
                "a batch function answers `HashMap<Id, T>` or `Vec<Option<T>>` (one per id, in order), in a `Result` or not",
            );
            return None;
        };
        Some(Self {
            name,
            ty,
            id,
            borrowed,
            element,
            value,
            fallible,
        })
    }

    /// The call that replaces the body: `parts` renders one id's `KeyParts`.
    // Output: cached_batch_result(&SITE, ids, |id: &u64| KeyParts {..}, |missing| { clones; async move { let ids: &[u64] = &missing; body } }).await
    pub(crate) fn call(
        &self,
        private: &TokenStream,
        item: &ItemFn,
        parts: &TokenStream,
    ) -> TokenStream {
        let Self { name, ty, id, .. } = self;
        let site = local("__CACHE_SITE");
        let (ids, key, body, missing, ret) = (
            local("__cache_ids"),
            local("__cache_key"),
            local("__cache_body"),
            local("__cache_missing"),
            local("__cache_ret"),
        );
        let element = Ident::new(&self.element, Span::call_site());
        let block = &item.block;
        let output = match &item.sig.output {
            ReturnType::Type(_, ty) => quote!(#ty),
            ReturnType::Default => quote!(()),
        };
        let given = match self.borrowed {
            true => quote!(&#missing),
            false => quote!(#missing),
        };
        // Each call of the body gets its own copy of the other inputs: it may be called again
        // for ids whose awaited load failed.
        let copies = item.sig.inputs.iter().filter_map(|arg| match arg {
            FnArg::Typed(typed) => match &*typed.pat {
                Pat::Ident(pat) if pat.ident != *name => {
                    let (mutability, input) = (&pat.mutability, &pat.ident);
                    Some(quote_spanned! {typed.span()=>
                        #[allow(unused_variables, unused_mut)]
                        let #mutability #input = ::core::clone::Clone::clone(&#input);
                    })
                }
                _ => None,
            },
            FnArg::Receiver(_) => None,
        });
        let entry = match self.fallible {
            true => quote!(cached_batch_result),
            false => quote!(cached_batch_value),
        };
        quote! {
            let #ids: &[#id] = &#name;
            let #key = |#element: &#id| #parts;
            let #body = |#missing: ::std::vec::Vec<#id>| {
                #(#copies)*
                async move {
                    let #name: #ty = #given;
                    let #ret: #output = #block;
                    #ret
                }
            };
            #private::#entry(&#site, #ids, #key, #body).await
        }
    }
}

/// `T` and whether the parameter borrows, for `&[T]`, `Vec<T>` and `&Vec<T>`.
fn id_type(ty: &Type) -> Option<(Type, bool)> {
    match ty {
        Type::Reference(reference) => match &*reference.elem {
            Type::Slice(slice) => Some(((*slice.elem).clone(), true)),
            inner => vec_item(inner).map(|id| (id, true)),
        },
        other => vec_item(other).map(|id| (id, false)),
    }
}

/// `T` of `Vec<T>`.
fn vec_item(ty: &Type) -> Option<Type> {
    generic_args(ty, "Vec").and_then(|args| args.first().cloned())
}

/// The type arguments of a path type whose last segment is `name`.
fn generic_args(ty: &Type, name: &str) -> Option<Vec<Type>> {
    let Type::Path(path) = ty else { return None };
    let last = path.path.segments.last()?;
    if last.ident != name {
        return None;
    }
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    let types = args.args.iter().filter_map(|arg| match arg {
        GenericArgument::Type(ty) => Some(ty.clone()),
        _ => None,
    });
    Some(types.collect())
}

/// The cached value type and whether the answer is in a `Result`.
fn answer(output: &ReturnType) -> Option<(Type, bool)> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let (answer, fallible) = match generic_args(ty, "Result") {
        Some(args) => (args.first()?.clone(), true),
        None => ((**ty).clone(), false),
    };
    if let Some(args) = generic_args(&answer, "HashMap") {
        return Some((args.get(1)?.clone(), fallible));
    }
    let item = vec_item(&answer)?;
    let value = generic_args(&item, "Option")?.first()?.clone();
    Some((value, fallible))
}
