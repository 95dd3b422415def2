//! What the macros need to know about the annotated function.

use syn::{FnArg, ItemFn, Pat, ReturnType, Type};

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
        Self {
            params,
            returns: returns(&item.sig.output),
        }
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
