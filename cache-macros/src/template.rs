//! Key templates: `"{id}"`, `"{user.id}:{page}"`, `"p{page}"`, checked against the parameters.

use proc_macro2::Span;
use syn::{Expr, LitStr};

use crate::errors::Errors;

/// One piece of a template.
pub(crate) enum Segment {
    /// Text kept as written.
    Literal(String),
    /// An expression rooted at a parameter, rendered and escaped at run time.
    Value(Expr),
}

pub(crate) struct Template {
    pub(crate) segments: Vec<Segment>,
    /// The template's string literal: errors about its values point there.
    pub(crate) span: Span,
}

impl Template {
    /// Parses `lit`, reporting every problem into `errors`; `params` are the names a value may
    /// start with.
    pub(crate) fn parse(lit: &LitStr, params: &[String], errors: &mut Errors) -> Self {
        let text = lit.value();
        let span = lit.span();
        let mut segments = Vec::new();
        let mut rest = text.as_str();
        if rest.is_empty() {
            errors.at(span, "empty key template; write e.g. `\"{id}\"`");
        }
        while !rest.is_empty() {
            let literal_end = rest.find(['{', '}']).unwrap_or(rest.len());
            let literal = &rest[..literal_end];
            if let Some(bad) = literal
                .chars()
                .find(|c| !cache_schema::allowed_in_literal(*c))
            {
                errors.at(
                    span,
                    format!("{bad:?} is not allowed in the literal text of a key template: values escape it (`%`, `*`, `?`, `[`, `]`, `\\`, spaces and control characters), so a literal one could collide with a value or widen a pattern"),
                );
            } else if !literal.is_empty() {
                segments.push(Segment::Literal(literal.to_owned()));
            }
            rest = &rest[literal_end..];
            if rest.starts_with('}') {
                errors.at(span, "unmatched `}` in key template");
                break;
            }
            if rest.is_empty() {
                break;
            }
            let Some(close) = rest.find('}') else {
                errors.at(span, "unclosed `{` in key template");
                break;
            };
            let inner = &rest[1..close];
            if let Some(expr) = parse_value(inner, span, params, errors) {
                segments.push(Segment::Value(expr));
            }
            rest = &rest[close + 1..];
        }
        Self { segments, span }
    }
}

fn parse_value(inner: &str, span: Span, params: &[String], errors: &mut Errors) -> Option<Expr> {
    if inner.trim().is_empty() {
        errors.at(
            span,
            "empty `{}` in key template; name a parameter, e.g. `{id}`",
        );
        return None;
    }
    // Located at the literal, resolved as if written at the call site: errors point at the
    // template, and rustc offers no fix-it that would rewrite the whole string literal into
    // the one token it thinks is wrong (`key = id` for a typo in `"{r.idd}"`).
    let located = Span::call_site().located_at(span);
    let expr: Expr = match LitStr::new(inner, located).parse() {
        Ok(expr) => expr,
        Err(error) => {
            errors.at(span, format!("`{{{inner}}}` is not an expression: {error}"));
            return None;
        }
    };
    match root(&expr) {
        Some(name) if params.contains(&name) => Some(expr),
        Some(name) => {
            let listed = if params.is_empty() {
                "this function has none".to_owned()
            } else {
                format!("parameters: {}", params.join(", "))
            };
            errors.at(
                span,
                format!("`{name}` in `{{{inner}}}` is not a parameter of this function; {listed}"),
            );
            None
        }
        None => {
            errors.at(
                span,
                format!("`{{{inner}}}` must start with a parameter, e.g. `{{id}}`, `{{user.id}}`, `{{q.to_lowercase()}}`"),
            );
            None
        }
    }
}

/// The parameter an interpolation starts from: `user` in `user.id`, `q` in `q.trim()`.
fn root(expr: &Expr) -> Option<String> {
    match expr {
        Expr::Path(path) if path.qself.is_none() => path.path.get_ident().map(ToString::to_string),
        Expr::Field(field) => root(&field.base),
        Expr::MethodCall(call) => root(&call.receiver),
        Expr::Index(index) => root(&index.expr),
        Expr::Paren(paren) => root(&paren.expr),
        Expr::Reference(reference) => root(&reference.expr),
        _ => None,
    }
}

/// The names `{...}` values in `text` start with that are not in `params`, each once, in
/// order (a batch key's element); text that does not parse is left to [`Template::parse`].
pub(crate) fn unknown_roots(text: &str, params: &[String]) -> Vec<String> {
    let mut unknown: Vec<String> = Vec::new();
    let mut rest = text;
    while let Some(open) = rest.find('{') {
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let inner = &rest[open + 1..open + close];
        if let Some(name) = syn::parse_str::<Expr>(inner).ok().as_ref().and_then(root)
            && !params.contains(&name)
            && !unknown.contains(&name)
        {
            unknown.push(name);
        }
        rest = &rest[open + close + 1..];
    }
    unknown
}
