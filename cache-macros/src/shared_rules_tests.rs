//! The macros and the runtime accept and reject the same entity names, template text and
//! durations: a name the macros let through but the runtime refused would leave the function
//! running uncached, with one warning in the logs.
//!
//! Each input goes through a whole `#[cached]` expansion on one side and the runtime's public
//! API on the other, so a check added to either pipeline alone makes this test fail.

use proc_macro2::TokenStream;
use quote::quote;

const CASES: usize = 1_000;

/// A small deterministic generator (xorshift64*), so every run tries the same inputs.
struct Inputs(u64);

impl Inputs {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn pick<'a>(&mut self, choices: &[&'a str]) -> &'a str {
        choices[self.below(choices.len())]
    }

    /// Mostly characters of `common`, sometimes one of `rare`, up to `max_len` characters.
    fn text(&mut self, common: &str, rare: &str, max_len: usize) -> String {
        let common: Vec<char> = common.chars().collect();
        let rare: Vec<char> = rare.chars().collect();
        let len = self.below(max_len + 1);
        (0..len)
            .map(|_| {
                if self.below(12) == 0 {
                    rare[self.below(rare.len())]
                } else {
                    common[self.below(common.len())]
                }
            })
            .collect()
    }
}

/// How many inputs each side of a rule saw: the generator must cover both.
#[derive(Default)]
struct Tally {
    accepted: usize,
    rejected: usize,
}

impl Tally {
    fn count(&mut self, accepted: bool) {
        if accepted {
            self.accepted += 1;
        } else {
            self.rejected += 1;
        }
    }

    fn assert_both_sides_covered(&self) {
        assert!(
            self.accepted > 100 && self.rejected > 100,
            "{} accepted, {} rejected",
            self.accepted,
            self.rejected
        );
    }
}

/// Whether `#[cached(<args>)]` on a plain async function expands without a compile error.
fn macro_accepts(args: TokenStream) -> (bool, String) {
    let out = crate::cached::expand(
        args,
        quote!(
            async fn load(id: u64) -> u64 {
                id
            }
        ),
    )
    .to_string();
    (!out.contains("compile_error"), out)
}

fn with_runtime<R>(f: impl FnOnce() -> R) -> R {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    let _entered = runtime.enter();
    f()
}

#[test]
fn entity_names_are_accepted_alike() {
    with_runtime(|| {
        // Nothing listens there: the cache connects lazily and only its names are used here.
        let config = cache_runtime::CacheConfig::builder()
            .app_prefix("app")
            .redis_url("redis://127.0.0.1:1")
            .build()
            .expect("config");
        let cache = cache_runtime::Cache::new(config).expect("cache");
        let mut inputs = Inputs(0x5EED_0001);
        let mut tally = Tally::default();
        for _ in 0..CASES {
            let name = inputs.text("abcxyz019_-", "AZ .:%{}é\t*", 70);
            let (by_macro, out) = macro_accepts(quote!(entity = #name, key = "{id}"));
            let by_runtime = cache.entity(&name).is_ok();
            assert_eq!(by_macro, by_runtime, "entity {name:?}: {out}");
            tally.count(by_runtime);
        }
        tally.assert_both_sides_covered();
    });
}

/// The runtime leaves literal template text as it is exactly when escaping would not change
/// it; `:` is the one character the macros render themselves.
fn runtime_keeps_literal(text: &str) -> bool {
    let without_colons = text.replace(':', "");
    let mut escaped = String::new();
    cache_runtime::escape_into(&mut escaped, &without_colons);
    escaped == without_colons
}

#[test]
fn template_text_is_accepted_alike() {
    let mut inputs = Inputs(0x5EED_0002);
    let mut tally = Tally::default();
    for _ in 0..CASES {
        let literal = inputs.text("p:_-.=/#@aZ9", "%*?[]\\ \t\u{7f}é\u{a0}\u{1}", 12);
        let template = format!("{literal}{{id}}");
        let (by_macro, out) = macro_accepts(quote!(entity = "product", key = #template));
        let by_runtime = runtime_keeps_literal(&literal);
        assert_eq!(by_macro, by_runtime, "template {template:?}: {out}");
        tally.count(by_runtime);
    }
    tally.assert_both_sides_covered();
}

/// The milliseconds a `ttl` expansion carries, or the class it names.
fn expanded_ttl(out: &str) -> String {
    let site = out.split("Ttl ::").nth(1).unwrap_or_default();
    if let Some(ms) = site.split("from_millis (").nth(1) {
        let ms = ms.split(')').next().unwrap_or_default().trim();
        return ms.trim_end_matches("u64").to_owned();
    }
    let class = site.split_whitespace().next().unwrap_or_default();
    class.trim_end_matches(')').to_owned()
}

fn duration_text(inputs: &mut Inputs) -> String {
    let number = inputs.text("0123456789", "-+. x", 22);
    let unit = inputs.pick(&["ms", "s", "m", "h", "d", "", "S", "sec", "us", "short"]);
    let core = match inputs.below(6) {
        0 => inputs
            .pick(&["short", "medium", "long", "Short", "mediu", "long "])
            .to_owned(),
        _ => format!("{number}{unit}"),
    };
    let pad = inputs.pick(&["", "", "", " ", "\t"]);
    format!("{pad}{core}{pad}")
}

#[test]
fn ttls_are_accepted_alike_and_mean_the_same() {
    let mut inputs = Inputs(0x5EED_0003);
    let mut tally = Tally::default();
    for _ in 0..CASES {
        let text = duration_text(&mut inputs);
        let (by_macro, out) = macro_accepts(quote!(entity = "product", key = "{id}", ttl = #text));
        let by_runtime = text.parse::<cache_runtime::Ttl>();
        assert_eq!(by_macro, by_runtime.is_ok(), "ttl {text:?}: {out}");
        if let Ok(ttl) = by_runtime {
            let meaning = match ttl {
                cache_runtime::Ttl::Fixed(d) => d.as_millis().to_string(),
                class => format!("{class:?}"),
            };
            assert_eq!(expanded_ttl(&out), meaning, "ttl {text:?}: {out}");
        }
        tally.count(by_runtime.is_ok());
    }
    tally.assert_both_sides_covered();
}

#[test]
fn literal_durations_are_accepted_alike() {
    let mut inputs = Inputs(0x5EED_0004);
    let mut tally = Tally::default();
    for _ in 0..CASES {
        let text = duration_text(&mut inputs);
        let (by_macro, out) =
            macro_accepts(quote!(entity = "product", key = "{id}", stale = #text));
        let by_runtime = cache_runtime::parse_duration(&text).is_ok();
        assert_eq!(by_macro, by_runtime, "stale {text:?}: {out}");
        tally.count(by_runtime);
    }
    tally.assert_both_sides_covered();
}
