//! Attribute arguments: parsed generically as `name [= value]`, then checked into typed structs.

use proc_macro2::{Span, TokenStream};
use quote::quote;
use syn::ext::IdentExt;
use syn::parse::{Parse, ParseStream};
use syn::punctuated::Punctuated;
use syn::{Expr, ExprLit, Ident, Lit, LitStr, Path, Token};

use crate::duration::{LiteralDuration, Ttl, parse_ttl};
use crate::errors::Errors;
use crate::template::Template;

/// One `name` or `name = value` as written.
struct RawArg {
    name: Ident,
    value: Option<Expr>,
}

impl Parse for RawArg {
    fn parse(input: ParseStream<'_>) -> syn::Result<Self> {
        // `Ident::parse_any` so that `crate` is accepted as a name.
        let name = Ident::parse_any(input)?;
        let value = if input.peek(Token![=]) {
            input.parse::<Token![=]>()?;
            Some(input.parse()?)
        } else {
            None
        };
        Ok(Self { name, value })
    }
}

/// Parsed arguments, each taken at most once.
pub(crate) struct Args {
    args: Vec<RawArg>,
    macro_name: &'static str,
    valid: &'static [&'static str],
}

impl Args {
    pub(crate) fn parse(
        tokens: TokenStream,
        macro_name: &'static str,
        valid: &'static [&'static str],
        errors: &mut Errors,
    ) -> Self {
        let parsed =
            syn::parse::Parser::parse2(Punctuated::<RawArg, Token![,]>::parse_terminated, tokens);
        let mut args: Vec<RawArg> = Vec::new();
        match parsed {
            Ok(list) => {
                for arg in list {
                    let name = arg.name.to_string();
                    if !valid.contains(&name.as_str()) {
                        let hint = suggestion(&name)
                            .filter(|s| valid.contains(s))
                            .map(|s| format!(" (did you mean `{s}`?)"))
                            .unwrap_or_default();
                        errors.at(
                            arg.name.span(),
                            format!(
                                "unknown argument `{name}` of #[{macro_name}]{hint}; valid arguments: {}",
                                valid.join(", ")
                            ),
                        );
                    } else if args.iter().any(|a| a.name == arg.name) {
                        errors.at(arg.name.span(), format!("`{name}` set multiple times"));
                    } else {
                        args.push(arg);
                    }
                }
            }
            Err(error) => errors.push(error),
        }
        Self {
            args,
            macro_name,
            valid,
        }
    }

    /// Whether `name` was written (with a value of any type).
    pub(crate) fn has(&self, name: &str) -> bool {
        self.args.iter().any(|a| a.name == name)
    }

    /// Where `name` was written, if it was.
    pub(crate) fn span(&self, name: &str) -> Option<Span> {
        self.args
            .iter()
            .find(|a| a.name == name)
            .map(|a| a.name.span())
    }

    /// `name = "..."` as written, left in place for its own parsing.
    pub(crate) fn peek_string(&self, name: &str) -> Option<LitStr> {
        match &self.args.iter().find(|a| a.name == name)?.value {
            Some(Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            })) => Some(lit.clone()),
            _ => None,
        }
    }

    fn take(&mut self, name: &str) -> Option<RawArg> {
        debug_assert!(self.valid.contains(&name), "{name} is not declared valid");
        let at = self.args.iter().position(|a| a.name == name)?;
        Some(self.args.remove(at))
    }

    /// `name = "..."`.
    pub(crate) fn string(&mut self, name: &str, errors: &mut Errors) -> Option<LitStr> {
        let arg = self.take(name)?;
        match arg.value {
            Some(Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            })) => Some(lit),
            Some(other) => {
                errors.push(syn::Error::new_spanned(
                    other,
                    format!("`{name}` takes a string, e.g. `{name} = \"...\"`"),
                ));
                None
            }
            None => {
                errors.at(
                    arg.name.span(),
                    format!("`{name}` takes a string, e.g. `{name} = \"...\"`"),
                );
                None
            }
        }
    }

    /// A bare flag (`all`, `before`); also returns the flag's span.
    pub(crate) fn flag(&mut self, name: &str, errors: &mut Errors) -> Option<Span> {
        let arg = self.take(name)?;
        if let Some(value) = arg.value {
            errors.push(syn::Error::new_spanned(
                value,
                format!("`{name}` takes no value; write just `{name}`"),
            ));
        }
        Some(arg.name.span())
    }

    /// A flag that may carry a string (`cache_none` or `cache_none = "30s"`).
    pub(crate) fn flag_or_string(
        &mut self,
        name: &str,
        errors: &mut Errors,
    ) -> Option<(Span, Option<LitStr>)> {
        let arg = self.take(name)?;
        let span = arg.name.span();
        match arg.value {
            None => Some((span, None)),
            Some(Expr::Lit(ExprLit {
                lit: Lit::Str(lit), ..
            })) => Some((span, Some(lit))),
            Some(other) => {
                errors.push(syn::Error::new_spanned(
                    other,
                    format!(
                        "`{name}` takes a duration string, e.g. `{name} = \"30s\"`, or no value"
                    ),
                ));
                None
            }
        }
    }

    /// `version = N`.
    pub(crate) fn version(&mut self, errors: &mut Errors) -> Option<u32> {
        let arg = self.take("version")?;
        match &arg.value {
            Some(Expr::Lit(ExprLit {
                lit: Lit::Int(int), ..
            })) => match int.base10_parse::<u32>() {
                Ok(version) => Some(version),
                Err(error) => {
                    errors.push(error);
                    None
                }
            },
            _ => {
                errors.at(
                    arg.name.span(),
                    "`version` takes an integer, e.g. `version = 4`",
                );
                None
            }
        }
    }

    /// `condition = <expr>`, `revision = <expr>`; `example` completes "e.g. `name = …`".
    pub(crate) fn expr(&mut self, name: &str, example: &str, errors: &mut Errors) -> Option<Expr> {
        let arg = self.take(name)?;
        if arg.value.is_none() {
            errors.at(
                arg.name.span(),
                format!("`{name}` takes an expression, e.g. `{name} = {example}`"),
            );
        }
        arg.value
    }

    /// `crate = path`: where the runtime is, for crates that re-export it.
    pub(crate) fn private_path(&mut self, errors: &mut Errors) -> TokenStream {
        let krate = match self.take("crate") {
            None => None,
            Some(RawArg {
                value: Some(Expr::Path(path)),
                ..
            }) => Some(path.path),
            Some(arg) => {
                errors.at(
                    arg.name.span(),
                    "`crate` takes a path, e.g. `crate = ::my_crate::cache`",
                );
                None
            }
        };
        let krate = krate.unwrap_or_else(|| syn::parse_quote!(::cache_runtime));
        private_of(&krate)
    }

    /// `entity = "name"`, required and checked against the key schema.
    pub(crate) fn entity(&mut self, errors: &mut Errors) -> LitStr {
        let written = self.has("entity");
        match self.string("entity", errors) {
            Some(lit) => {
                if let Err(error) = cache_schema::validate_name("entity", &lit.value()) {
                    errors.at(lit.span(), error.to_string());
                }
                lit
            }
            None => {
                if !written {
                    errors.at(
                        Span::call_site(),
                        format!("#[{}] needs `entity = \"...\"`: the kind of value, e.g. `entity = \"product\"`", self.macro_name),
                    );
                }
                LitStr::new("invalid", Span::call_site())
            }
        }
    }

    /// `ttl = "..."`, defaulting to `medium`.
    pub(crate) fn ttl(&mut self, name: &str, errors: &mut Errors) -> Option<Ttl> {
        let lit = self.string(name, errors)?;
        match parse_ttl(&lit.value()) {
            Ok(ttl) => Some(ttl),
            Err(message) => {
                errors.at(lit.span(), message);
                None
            }
        }
    }

    /// A literal duration argument (`stale = "5m"`).
    pub(crate) fn duration(&mut self, name: &str, errors: &mut Errors) -> Option<LiteralDuration> {
        let lit = self.string(name, errors)?;
        match LiteralDuration::parse(&lit.value()) {
            Ok(duration) => Some(duration),
            Err(message) => {
                errors.at(lit.span(), message);
                None
            }
        }
    }

    /// `early_refresh` (β = 1) or `early_refresh = 2.0`.
    pub(crate) fn beta(&mut self, name: &str, errors: &mut Errors) -> Option<f64> {
        let arg = self.take(name)?;
        let beta = match &arg.value {
            None => return Some(1.0),
            Some(Expr::Lit(ExprLit {
                lit: Lit::Float(f), ..
            })) => f.base10_parse::<f64>().ok(),
            Some(Expr::Lit(ExprLit {
                lit: Lit::Int(i), ..
            })) => i.base10_parse::<f64>().ok(),
            Some(_) => None,
        };
        match beta {
            Some(beta) if beta.is_finite() && beta > 0.0 => Some(beta),
            _ => {
                errors.at(arg.name.span(), format!("`{name}` takes a positive number (β, e.g. `{name} = 1.5`) or no value (β = 1)"));
                None
            }
        }
    }

    /// `name = ["template", …]`: tag templates.
    pub(crate) fn templates(
        &mut self,
        name: &str,
        params: &[String],
        errors: &mut Errors,
    ) -> Option<Vec<Template>> {
        let arg = self.take(name)?;
        let help = format!(
            "`{name}` takes a list of strings, e.g. `{name} = [\"category:{{category}}\"]`"
        );
        let Some(Expr::Array(array)) = arg.value else {
            errors.at(arg.name.span(), help);
            return None;
        };
        let mut templates = Vec::new();
        for element in array.elems {
            match element {
                Expr::Lit(ExprLit {
                    lit: Lit::Str(lit), ..
                }) => templates.push(Template::parse(&lit, params, errors)),
                other => errors.push(syn::Error::new_spanned(other, help.clone())),
            }
        }
        Some(templates)
    }

    /// A key template argument.
    pub(crate) fn template(
        &mut self,
        name: &str,
        params: &[String],
        errors: &mut Errors,
    ) -> Option<Template> {
        let lit = self.string(name, errors)?;
        Some(Template::parse(&lit, params, errors))
    }
}

/// The argument a common misspelling or another library's name most likely meant.
fn suggestion(name: &str) -> Option<&'static str> {
    Some(match name {
        "expire" | "expiry" | "expires" | "expiration" | "time" | "duration" | "ttl_secs" => "ttl",
        "name" | "namespace" | "prefix" | "kind" => "entity",
        "id" | "keys" | "key_template" | "convert" => "key",
        "cache_null" | "negative" | "cache_miss" => "cache_none",
        "when" | "if" | "unless" => "condition",
        "pre" | "before_call" => "before",
        "entire" | "everything" | "wildcard" => "all",
        _ => return None,
    })
}

/// Where `#[cached]` and `#[cache_put]` keep a value: the arguments they share.
pub(crate) struct Placement {
    pub(crate) entity: LitStr,
    pub(crate) ttl: Ttl,
    pub(crate) key: Template,
    pub(crate) variant: Option<Template>,
    pub(crate) version: Option<u32>,
    pub(crate) tags: Vec<Template>,
}

impl Args {
    /// `entity`, `ttl` (default `medium`), `key` (required; `key_help` says what to write),
    /// `variant` and `version`.
    pub(crate) fn placement(
        &mut self,
        params: &[String],
        key_help: &str,
        errors: &mut Errors,
    ) -> Placement {
        let entity = self.entity(errors);
        let ttl = self.ttl("ttl", errors).unwrap_or(Ttl::Medium);
        let key_written = self.has("key");
        let key = self.template("key", params, errors).unwrap_or_else(|| {
            if !key_written {
                errors.at(
                    Span::call_site(),
                    format!("#[{}] needs {key_help}", self.macro_name),
                );
            }
            // Never expanded: an error was reported.
            Template {
                segments: Vec::new(),
                span: Span::call_site(),
            }
        });
        Placement {
            entity,
            ttl,
            key,
            variant: self.template("variant", params, errors),
            version: self.version(errors),
            tags: self.templates("tags", params, errors).unwrap_or_default(),
        }
    }
}

fn private_of(krate: &Path) -> TokenStream {
    quote!(#krate::__private)
}
