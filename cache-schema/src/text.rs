//! Which characters a key may hold as they are, and which must be percent-encoded.

/// Whether `b` must be percent-encoded inside an interpolated key value.
///
/// `%` keeps the encoding reversible (so injective), `:` separates key parts, `* ? [ ] \` are
/// glob metacharacters that could widen an invalidation pattern, braces are Redis Cluster hash
/// tags, and whitespace and control bytes make keys unreadable in tools.
pub fn needs_escape(b: u8) -> bool {
    matches!(
        b,
        b'%' | b':' | b'*' | b'?' | b'[' | b']' | b'\\' | b'{' | b'}' | b' ' | 0x7f
    ) || b < 0x20
}

/// Whether the literal text of a key template (`"p{page}"`, `"category:{id}"`) may hold `c`:
/// exactly the characters a value keeps unescaped, and `:`, which the macros render apart
/// from a value's own `:`. Anything else would let two templates produce colliding keys, or a
/// literal widen an invalidation pattern.
///
/// ```
/// assert!(cache_schema::allowed_in_literal('p'));
/// assert!(cache_schema::allowed_in_literal(':'));
/// assert!(!cache_schema::allowed_in_literal('*'));
/// assert!(!cache_schema::allowed_in_literal(' '));
/// ```
pub fn allowed_in_literal(c: char) -> bool {
    c == ':' || !u8::try_from(c).is_ok_and(needs_escape)
}
