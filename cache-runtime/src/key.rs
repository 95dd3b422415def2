//! The key schema `{app}:v{version}:{entity}:{id}[:{variant}]`, its escaping and its patterns.
//!
//! Every key and every pattern is built here, so the escaping that keeps distinct argument
//! tuples apart is the same escaping that keeps invalidation patterns inside their entity.

use std::fmt::{self, Write as _};

use cache_schema::needs_escape;
pub use cache_schema::{NameError, validate_name};

/// Appends `value` to `out`, percent-encoding `%`, `:`, the glob metacharacters `* ? [ ] \`,
/// braces, space and control bytes (as `%XX`), so no value can forge a key part or a pattern.
pub fn escape_into(out: &mut String, value: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut clean_from = 0;
    for (i, b) in value.bytes().enumerate() {
        if needs_escape(b) {
            out.push_str(&value[clean_from..i]);
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
            clean_from = i + 1;
        }
    }
    out.push_str(&value[clean_from..]);
}

/// A value that can be interpolated into a key's id or variant.
///
/// Implementations append an escaped rendering; two distinct values of one type must render
/// differently. Implement it for your own id types by delegating to a field.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be part of a cache key",
    label = "`{Self}` is used in this key template",
    note = "key by a field that can (`key = \"{{order.id}}\"`: integers, strings, `bool`, `char`, `uuid::Uuid` with the `uuid` feature), or implement `cache_runtime::KeyPart` for `{Self}` by appending one of its fields"
)]
pub trait KeyPart {
    /// Appends this value, escaped, to `key`.
    fn append_to(&self, key: &mut String);
}

macro_rules! key_part_via_display {
    ($($ty:ty),*) => {$(
        impl KeyPart for $ty {
            fn append_to(&self, key: &mut String) {
                // Numbers and bools render without characters that need escaping.
                let _ = write!(key, "{self}");
            }
        }
    )*};
}
key_part_via_display!(u128, i128, bool);

/// Appends the decimal digits of `n`: ids are rendered on every call, and `fmt`'s machinery
/// costs several times this loop.
fn push_decimal(key: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    key.extend(digits[start..].iter().map(|&digit| char::from(digit)));
}

macro_rules! key_part_for_unsigned {
    ($($ty:ty),*) => {$(
        impl KeyPart for $ty {
            // Lossless: none of these is wider than 64 bits (u64 and usize are that already).
            #[allow(clippy::unnecessary_cast)]
            fn append_to(&self, key: &mut String) {
                push_decimal(key, *self as u64);
            }
        }
    )*};
}
key_part_for_unsigned!(u8, u16, u32, u64, usize);

macro_rules! key_part_for_signed {
    ($($ty:ty),*) => {$(
        impl KeyPart for $ty {
            // Lossless: none of these is wider than 64 bits.
            #[allow(clippy::unnecessary_cast)]
            fn append_to(&self, key: &mut String) {
                if *self < 0 {
                    key.push('-');
                }
                push_decimal(key, self.unsigned_abs() as u64);
            }
        }
    )*};
}
key_part_for_signed!(i8, i16, i32, i64, isize);

impl KeyPart for str {
    fn append_to(&self, key: &mut String) {
        escape_into(key, self);
    }
}

impl KeyPart for String {
    fn append_to(&self, key: &mut String) {
        escape_into(key, self);
    }
}

impl KeyPart for char {
    fn append_to(&self, key: &mut String) {
        escape_into(key, self.encode_utf8(&mut [0; 4]));
    }
}

#[cfg(feature = "uuid")]
impl KeyPart for uuid::Uuid {
    fn append_to(&self, key: &mut String) {
        // Hex digits and hyphens only: nothing to escape.
        key.push_str(
            self.hyphenated()
                .encode_lower(&mut uuid::Uuid::encode_buffer()),
        );
    }
}

impl<T: KeyPart + ?Sized> KeyPart for &T {
    fn append_to(&self, key: &mut String) {
        (**self).append_to(key);
    }
}

/// The key namespace of one entity: `{app}:v{version}:{entity}:`.
///
/// Built by [`Cache::entity`](crate::Cache::entity); keys and patterns of the entity all start
/// with this prefix.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct EntityPrefix {
    prefix: String,
    entity_start: usize,
    version: u32,
}

impl EntityPrefix {
    /// The prefix of `entity` under `app` at schema `version`, after validating both names.
    pub fn new(app: &str, version: u32, entity: &str) -> Result<Self, NameError> {
        validate_name("app prefix", app)?;
        validate_name("entity", entity)?;
        let mut prefix = format!("{app}:v{version}:");
        let entity_start = prefix.len();
        prefix.push_str(entity);
        prefix.push(':');
        Ok(Self {
            prefix,
            entity_start,
            version,
        })
    }

    /// The schema version in the prefix.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The entity name.
    pub fn entity(&self) -> &str {
        &self.prefix[self.entity_start..self.prefix.len() - 1]
    }

    /// The key of `id`: `{app}:v{N}:{entity}:{id}`.
    pub fn key(&self, id: &(impl KeyPart + ?Sized)) -> String {
        let mut key = String::with_capacity(self.prefix.len() + 16);
        key.push_str(&self.prefix);
        id.append_to(&mut key);
        key
    }

    /// The length of the prefix, where the id starts in every key.
    pub(crate) fn len(&self) -> usize {
        self.prefix.len()
    }

    /// The key of `id` with `variant`: `{app}:v{N}:{entity}:{id}:{variant}`, and the offset of
    /// the `:` before the variant.
    pub fn variant_key(
        &self,
        id: &(impl KeyPart + ?Sized),
        variant: &(impl KeyPart + ?Sized),
    ) -> (String, usize) {
        let mut key = self.key(id);
        let variant_at = key.len();
        key.push(':');
        variant.append_to(&mut key);
        (key, variant_at)
    }

    /// [`Self::key_from_escaped`] reusing the id's buffer (one allocation per key on the
    /// macros' path: [`KeyWriter`](crate::__private::KeyWriter) reserves room for the prefix).
    pub(crate) fn key_from_escaped_id(
        &self,
        mut id: String,
        variant: Option<&str>,
    ) -> (String, Option<usize>) {
        id.insert_str(0, &self.prefix);
        let variant_at = variant.map(|variant| {
            let at = id.len();
            id.push(':');
            id.push_str(variant);
            at
        });
        (id, variant_at)
    }

    /// The key of an id and optional variant that are already escaped (built by
    /// [`KeyWriter`](crate::__private::KeyWriter)); returns the key and, with a variant, the
    /// offset of the `:` before it.
    pub(crate) fn key_from_escaped(
        &self,
        id: &str,
        variant: Option<&str>,
    ) -> (String, Option<usize>) {
        let mut key = String::with_capacity(
            self.prefix.len() + id.len() + variant.map_or(0, |v| v.len() + 1),
        );
        key.push_str(&self.prefix);
        key.push_str(id);
        let variant_at = variant.map(|variant| {
            let at = key.len();
            key.push(':');
            key.push_str(variant);
            at
        });
        (key, variant_at)
    }

    /// The key holding the token of `id`'s variants: a variant is served only while its id
    /// still has the token it was written under, so invalidating an id is one `UNLINK` however
    /// many variants it has. The braces make it share the Redis Cluster hash slot of the id's
    /// own key (a key without braces hashes whole); `%v` cannot come out of escaping.
    pub(crate) fn variants_token_key(&self, escaped_id: &str) -> String {
        format!("{{{}{escaped_id}}}:%variants", self.prefix)
    }

    /// The key of this entity's invalidation mark (see `marks`). `%m` cannot come out of
    /// escaping, so no id collides with it.
    pub(crate) fn mark_key(&self) -> String {
        format!("{}%mark", self.prefix)
    }

    /// The glob matching every key of this entity (and no key of another entity).
    pub fn pattern(&self) -> String {
        format!("{}*", self.prefix)
    }

    /// The glob matching every variant of `id` (the key of `id` itself is [`Self::key`]).
    ///
    /// Escaping guarantees the id contains no glob metacharacter and no `:`, so this matches
    /// only keys of this very id.
    pub fn variants_pattern(&self, id: &(impl KeyPart + ?Sized)) -> String {
        let mut pattern = self.key(id);
        pattern.push_str(":*");
        pattern
    }
}

impl fmt::Debug for EntityPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("EntityPrefix").field(&self.prefix).finish()
    }
}

/// The key of `tag`'s invalidation mark under `app`: tags span entities and versions, so the
/// mark does too. `%` keeps it apart from every versioned key.
pub(crate) fn tag_mark_key(app: &str, tag: &str) -> String {
    format!("{app}:%tag:{tag}")
}

/// The key of the mark that invalidates every value of `app`, all entities and versions.
pub(crate) fn app_mark_key(app: &str) -> String {
    format!("{app}:%mark")
}

/// Whether `key` is one of the cache's own bookkeeping keys (a mark, lease, variants token,
/// revision record) rather than a value. Bookkeeping parts are `:%` and a lowercase name
/// (`%mark`, `%lease`); an escaped value's `%` is followed by uppercase hex digits.
pub(crate) fn is_bookkeeping(key: &str) -> bool {
    key.split(":%")
        .skip(1)
        .any(|rest| rest.starts_with(|c: char| c.is_ascii_lowercase()))
}

/// The key naming the Redis process `app` was last fenced for (see `cache::fence`). Its hash
/// tag is the app mark's name, so on Redis Cluster the fence script, which sets both, reaches
/// them in one slot.
pub(crate) fn fence_key(app: &str) -> String {
    format!("{{{app}:%mark}}:%fence")
}

/// The key of `app`'s invalidation epoch, the counter marks are drawn from (in the app mark's
/// slot, like the fence).
pub(crate) fn epoch_key(app: &str) -> String {
    format!("{{{app}:%mark}}:%epoch")
}

#[cfg(test)]
mod tests;
