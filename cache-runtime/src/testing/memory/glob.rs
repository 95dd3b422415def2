//! Redis' glob patterns (`SCAN … MATCH`, `KEYS`): `*`, `?`, `[…]` with ranges and `^`, `\`.

pub(crate) fn matches(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|skip| matches(rest, &text[skip..])),
        Some((b'?', rest)) => !text.is_empty() && matches(rest, &text[1..]),
        Some((b'[', rest)) => {
            let Some((&first, tail)) = text.split_first() else {
                return false;
            };
            let (hit, after) = class(rest, first);
            hit && matches(after, tail)
        }
        Some((b'\\', rest)) if !rest.is_empty() => {
            text.first() == Some(&rest[0]) && matches(&rest[1..], &text[1..])
        }
        Some((&literal, rest)) => text.first() == Some(&literal) && matches(rest, &text[1..]),
    }
}

/// Whether `byte` is in the class starting after `[`, and the pattern after its `]`.
fn class(mut pattern: &[u8], byte: u8) -> (bool, &[u8]) {
    let negated = pattern.first() == Some(&b'^');
    if negated {
        pattern = &pattern[1..];
    }
    let mut hit = false;
    loop {
        match pattern {
            [] => return (hit != negated, pattern),
            [b']', rest @ ..] => return (hit != negated, rest),
            [b'\\', c, rest @ ..] => {
                hit |= *c == byte;
                pattern = rest;
            }
            [a, b'-', b, rest @ ..] if *b != b']' => {
                let (low, high) = if a <= b { (*a, *b) } else { (*b, *a) };
                hit |= (low..=high).contains(&byte);
                pattern = rest;
            }
            [c, rest @ ..] => {
                hit |= *c == byte;
                pattern = rest;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_match_as_in_redis() {
        assert!(matches(b"app:v1:*", b"app:v1:product:1"));
        assert!(!matches(b"app:v1:*", b"app:v2:product:1"));
        assert!(matches(b"a?c", b"abc"));
        assert!(matches(b"\\{x\\}*", b"{x}:1"));
        assert!(matches(b"k[0-9]", b"k7"));
        assert!(!matches(b"k[^0-9]", b"k7"));
        assert!(matches(b"*", b""));
    }
}
