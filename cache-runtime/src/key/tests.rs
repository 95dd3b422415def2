use super::*;
use proptest::prelude::*;

/// Redis' glob semantics (`stringmatchlen`): `*`, `?`, `[...]` with `^` and ranges, `\` escape.
fn glob_matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_matches(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_matches(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some((&c, text_rest)) = text.split_first() else {
                return false;
            };
            let (negate, mut class) = match rest.split_first() {
                Some((b'^', r)) => (true, r),
                _ => (false, rest),
            };
            let mut matched = false;
            while let Some((&p, r)) = class.split_first() {
                if p == b']' {
                    class = r;
                    break;
                }
                if p == b'\\' && !r.is_empty() {
                    matched |= r[0] == c;
                    class = &r[1..];
                } else if r.len() >= 2 && r[0] == b'-' {
                    matched |= (p.min(r[1])..=p.max(r[1])).contains(&c);
                    class = &r[2..];
                } else {
                    matched |= p == c;
                    class = r;
                }
            }
            matched != negate && glob_matches(class, text_rest)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && glob_matches(&rest[1..], &text[1..])
        }
        Some((&p, rest)) => text.first() == Some(&p) && glob_matches(rest, &text[1..]),
    }
}

fn product() -> EntityPrefix {
    EntityPrefix::new("shop", 3, "product").expect("valid names")
}

#[test]
fn keys_follow_the_schema() {
    let p = product();
    assert_eq!(p.key(&42u64), "shop:v3:product:42");
    assert_eq!(p.variant_key(&7u32, "p2").0, "shop:v3:product:7:p2");
    assert_eq!(p.entity(), "product");
    assert_eq!(p.pattern(), "shop:v3:product:*");
    assert_eq!(p.variants_pattern(&42u64), "shop:v3:product:42:*");
}

#[test]
fn integers_render_as_their_decimal_display() {
    fn rendered(part: &dyn KeyPart) -> String {
        let mut key = String::new();
        part.append_to(&mut key);
        key
    }
    assert_eq!(rendered(&0u8), "0");
    assert_eq!(rendered(&u64::MAX), u64::MAX.to_string());
    assert_eq!(rendered(&usize::MAX), usize::MAX.to_string());
    assert_eq!(rendered(&1_000_000u32), "1000000");
    assert_eq!(rendered(&i64::MIN), i64::MIN.to_string());
    assert_eq!(rendered(&-7i8), "-7");
    assert_eq!(rendered(&i8::MIN), "-128");
    assert_eq!(rendered(&u128::MAX), u128::MAX.to_string());
}

#[test]
fn separators_globs_and_whitespace_are_percent_encoded() {
    let p = product();
    assert_eq!(p.key("a:b"), "shop:v3:product:a%3Ab");
    assert_eq!(p.key("*?[]\\"), "shop:v3:product:%2A%3F%5B%5D%5C");
    assert_eq!(p.key("{x} y\n%"), "shop:v3:product:%7Bx%7D%20y%0A%25");
    assert_eq!(p.key("héllo"), "shop:v3:product:héllo");
}

#[test]
fn names_outside_the_identifier_alphabet_are_rejected_with_the_reason() {
    let err = EntityPrefix::new("shop", 1, "Product").expect_err("uppercase");
    assert_eq!(
        err.to_string(),
        "invalid entity `Product`: use only lowercase ASCII letters, digits, `_` and `-`"
    );
    assert!(EntityPrefix::new("", 1, "product").is_err());
    assert!(EntityPrefix::new("shop", 1, "a:b").is_err());
    assert!(EntityPrefix::new("shop", 1, &"x".repeat(65)).is_err());
    assert!(EntityPrefix::new("shop-eu_2", 1, "product_list").is_ok());
}

#[test]
fn the_test_glob_matcher_agrees_with_redis_on_known_cases() {
    assert!(glob_matches(b"a*", b"abc"));
    assert!(!glob_matches(b"a?", b"a"));
    assert!(glob_matches(b"[a-c]x", b"bx"));
    assert!(!glob_matches(b"[^a-c]x", b"bx"));
    assert!(glob_matches(b"\\*", b"*"));
    assert!(!glob_matches(b"\\*", b"a"));
}

proptest! {
    #[test]
    fn distinct_ids_never_share_a_key(a in ".{0,12}", b in ".{0,12}") {
        prop_assume!(a != b);
        let p = product();
        prop_assert_ne!(p.key(a.as_str()), p.key(b.as_str()));
    }

    #[test]
    fn distinct_id_variant_pairs_never_share_a_key(
        a in ".{0,8}", av in ".{0,8}", b in ".{0,8}", bv in ".{0,8}",
    ) {
        prop_assume!((&a, &av) != (&b, &bv));
        let p = product();
        prop_assert_ne!(p.variant_key(a.as_str(), av.as_str()).0, p.variant_key(b.as_str(), bv.as_str()).0);
    }

    #[test]
    fn an_entity_pattern_never_matches_another_entitys_keys(
        id in ".{0,12}", variant in ".{0,6}", other in "[a-z0-9_-]{1,12}",
    ) {
        let p = product();
        prop_assume!(other != "product");
        let q = EntityPrefix::new("shop", 3, &other).expect("valid");
        for key in [q.key(id.as_str()), q.variant_key(id.as_str(), variant.as_str()).0] {
            prop_assert!(!glob_matches(p.pattern().as_bytes(), key.as_bytes()), "{key}");
        }
        prop_assert!(glob_matches(p.pattern().as_bytes(), p.key(id.as_str()).as_bytes()));
    }

    #[test]
    fn a_variants_pattern_matches_only_its_own_id(
        id in ".{0,10}", other in ".{0,10}", variant in ".{0,6}",
    ) {
        let p = product();
        let pattern = p.variants_pattern(id.as_str());
        prop_assert!(glob_matches(pattern.as_bytes(), p.variant_key(id.as_str(), variant.as_str()).0.as_bytes()));
        if other != id {
            let foreign = p.variant_key(other.as_str(), variant.as_str()).0;
            prop_assert!(!glob_matches(pattern.as_bytes(), foreign.as_bytes()), "{foreign}");
        }
    }
}
