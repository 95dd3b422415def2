//! What the macros need to know about the annotated function.

use syn::{FnArg, GenericArgument, ItemFn, Pat, PathArguments, ReturnType, Type};

use crate::errors::Errors;

/// How the return type is cached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Returns {
    /// `Result<T, E>`: `Ok` is cached.
    Result,
    /// `Option<T>`: `Some` is cached (and `None` with `cache_none`).
    Option,
    /// Anything else, cached as is.
    Plain,
}

/// The checked function.
pub(crate) struct Function {
    /// Parameter names a key template may start with (`self` included for methods).
    pub(crate) params: Vec<String>,
    pub(crate) returns: Returns,
    /// Whether the body owns everything it uses (no receiver, no references, no lifetimes, no
    /// generics): only then can its future outlive the call, so refreshes may run in the
    /// background. Lifetimes cannot be told apart by trait selection, hence this syntactic test.
    pub(crate) owns_its_inputs: bool,
    /// Whether the error type of a `Result` return has no reference or lifetime written in it:
    /// only then may the macros probe whether it can be shared (see the runtime's `probes`).
    pub(crate) error_is_owned: bool,
}

impl Function {
    pub(crate) fn analyze(item: &ItemFn, macro_name: &str, errors: &mut Errors) -> Self {
        if item.sig.asyncness.is_none() {
            errors.at(
                item.sig.fn_token.span,
                format!(
                    "#[{macro_name}] needs an `async fn`: the cache is reached over the network"
                ),
            );
        }
        let params = item
            .sig
            .inputs
            .iter()
            .filter_map(|arg| match arg {
                FnArg::Receiver(_) => Some("self".to_owned()),
                FnArg::Typed(typed) => match &*typed.pat {
                    Pat::Ident(ident) => Some(ident.ident.to_string()),
                    _ => None,
                },
            })
            .collect();
        let owns_its_inputs = item.sig.generics.params.is_empty()
            && item.sig.inputs.iter().all(|arg| match arg {
                FnArg::Receiver(_) => false,
                FnArg::Typed(typed) => is_owned(&typed.ty),
            });
        Self {
            params,
            returns: returns(&item.sig.output),
            owns_its_inputs,
            error_is_owned: error_type(&item.sig.output).is_none_or(is_owned),
        }
    }
}

/// A type with no reference, lifetime or `impl`/`dyn` trait in it.
fn is_owned(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => {
            path.qself.is_none()
                && path
                    .path
                    .segments
                    .iter()
                    .all(|segment| match &segment.arguments {
                        PathArguments::None => true,
                        PathArguments::AngleBracketed(args) => {
                            args.args.iter().all(|arg| match arg {
                                GenericArgument::Type(ty) => is_owned(ty),
                                GenericArgument::Const(_) => true,
                                _ => false,
                            })
                        }
                        PathArguments::Parenthesized(_) => false,
                    })
        }
        Type::Tuple(tuple) => tuple.elems.iter().all(is_owned),
        Type::Array(array) => is_owned(&array.elem),
        Type::Paren(paren) => is_owned(&paren.elem),
        Type::Group(group) => is_owned(&group.elem),
        _ => false,
    }
}

/// `E` of a return type written `Result<T, E>`; `None` when it is not written (`io::Result<T>`).
fn error_type(output: &ReturnType) -> Option<&Type> {
    let ReturnType::Type(_, ty) = output else {
        return None;
    };
    let Type::Path(path) = &**ty else {
        return None;
    };
    let last = path.path.segments.last()?;
    let PathArguments::AngleBracketed(args) = &last.arguments else {
        return None;
    };
    match args.args.iter().nth(1)? {
        GenericArgument::Type(error) => Some(error),
        _ => None,
    }
}

fn returns(output: &ReturnType) -> Returns {
    let ReturnType::Type(_, ty) = output else {
        return Returns::Plain;
    };
    let Type::Path(path) = &**ty else {
        return Returns::Plain;
    };
    match path
        .path
        .segments
        .last()
        .map(|s| s.ident.to_string())
        .as_deref()
    {
        Some("Result") => Returns::Result,
        Some("Option") => Returns::Option,
        _ => Returns::Plain,
    }
}
