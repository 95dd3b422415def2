//! The envelope around every stored value: what freshness and validity logic need, then the
//! codec's bytes.
//!
//! Layout (little endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0 | envelope format (`2`) |
//! | 1 | codec id ([`CodecKind::id`](crate::CodecKind::id)) |
//! | 2 | flags: bit 0 compressed, bit 1 negative (a cached absence), bit 2 id token, bit 3 tags, bit 4 revision |
//! | 3..11 | created at, ms since the Unix epoch |
//! | 11..19 | fresh until (logical expiry), ms since the Unix epoch |
//! | 19..23 | recompute cost of the value, ms |
//! | 23..31 | invalidation epoch the value was loaded under (see docs/invalidation.md) |
//! | 8 bytes | with bit 2: the token of the id's variants the value was written under |
//! | 1 + n bytes | with bit 4: the revision of an ordered write, as n ASCII decimal digits (so the ordered-write script compares it as the revision records always were) |
//! | 1 + n × (2 + len) bytes | with bit 3: the number of tags, then each tag's length and bytes |
//! | … | payload |
//! | last 8 bytes | xxh3-64 of every byte before it |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use twox_hash::XxHash3_64;

const FORMAT: u8 = 2;
const CHECKSUM_LEN: usize = 8;
const HEADER_LEN: usize = 31;
const FLAG_COMPRESSED: u8 = 1;
const FLAG_NEGATIVE: u8 = 1 << 1;
const FLAG_ID_TOKEN: u8 = 1 << 2;
const FLAG_TAGS: u8 = 1 << 3;
const FLAG_REVISION: u8 = 1 << 4;
/// Flags this version writes; a value with any other was written by a newer one.
const KNOWN_FLAGS: u8 = FLAG_COMPRESSED | FLAG_NEGATIVE | FLAG_ID_TOKEN | FLAG_TAGS | FLAG_REVISION;

/// The most tags one value may carry.
pub const MAX_TAGS: usize = u8::MAX as usize;
/// The longest tag accepted, in bytes.
pub const MAX_TAG_LEN: usize = u16::MAX as usize;

/// The decoded header of a stored value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Codec that produced the payload.
    pub codec: u8,
    /// Whether the payload is compressed.
    pub compressed: bool,
    /// Whether the value records an absence (negative caching).
    pub negative: bool,
    /// When the value was written, ms since the Unix epoch.
    pub created_at_ms: u64,
    /// When the value stops being fresh, ms since the Unix epoch.
    pub fresh_until_ms: u64,
    /// How long computing the value took, ms.
    pub cost_ms: u32,
    /// The invalidation epoch the writer knew when its load started: the value is valid only
    /// while it is at least its entity's and its tags' invalidation marks.
    pub epoch: u64,
    /// For a variant key: the token its id's variants had when it was written; the value is
    /// valid only while the id still has that token.
    pub id_token: Option<u64>,
    /// For an ordered write (`set_ordered`, `#[cache_put(revision = …)]`): its revision. A
    /// later ordered write with a lower one is refused.
    pub revision: Option<u64>,
}

/// The tags a stored value carries, read in place.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tags<'a> {
    raw: &'a [u8],
    count: u8,
}

impl<'a> Tags<'a> {
    /// Whether the value carries no tag.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The tags, in the order they were written.
    pub fn iter(&self) -> impl Iterator<Item = &'a str> + 'a {
        let mut rest = self.raw;
        (0..self.count).map_while(move |_| {
            let (len, tail) = rest.split_first_chunk::<2>()?;
            let len = usize::from(u16::from_le_bytes(*len));
            let tag = tail.get(..len)?;
            rest = &tail[len..];
            std::str::from_utf8(tag).ok()
        })
    }
}

/// What [`Header::unwrap`] splits stored bytes into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Envelope<'a> {
    /// The fixed fields.
    pub header: Header,
    /// The tags the value carries.
    pub tags: Tags<'a>,
    /// The codec's bytes (compressed if the header says so).
    pub payload: &'a [u8],
}

impl Header {
    /// A header for a value written now that stays fresh for `ttl`.
    pub fn new(codec: u8, ttl: Duration, cost: Duration) -> Self {
        let now = unix_ms(SystemTime::now());
        Self {
            codec,
            compressed: false,
            negative: false,
            created_at_ms: now,
            fresh_until_ms: now.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX)),
            cost_ms: u32::try_from(cost.as_millis()).unwrap_or(u32::MAX),
            epoch: 0,
            id_token: None,
            revision: None,
        }
    }

    /// The header of a value written at `now_ms` (the cache's clock), fresh for `ttl`.
    pub(crate) fn written_at(mut self, now_ms: u64, ttl: Duration) -> Self {
        self.created_at_ms = now_ms;
        self.fresh_until_ms =
            now_ms.saturating_add(u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX));
        self
    }

    /// Writes the header, `tags` and `payload`. Tags beyond [`MAX_TAGS`] or longer than
    /// [`MAX_TAG_LEN`] are rejected by the caller before this.
    pub fn wrap(&self, tags: &[String], payload: &[u8]) -> Vec<u8> {
        let tag_bytes: usize = tags.iter().map(|t| t.len() + 2).sum();
        let mut out = Vec::with_capacity(HEADER_LEN + 30 + tag_bytes + payload.len());
        let mut flags = 0;
        if self.compressed {
            flags |= FLAG_COMPRESSED;
        }
        if self.negative {
            flags |= FLAG_NEGATIVE;
        }
        if self.id_token.is_some() {
            flags |= FLAG_ID_TOKEN;
        }
        if !tags.is_empty() {
            flags |= FLAG_TAGS;
        }
        if self.revision.is_some() {
            flags |= FLAG_REVISION;
        }
        out.extend_from_slice(&[FORMAT, self.codec, flags]);
        out.extend_from_slice(&self.created_at_ms.to_le_bytes());
        out.extend_from_slice(&self.fresh_until_ms.to_le_bytes());
        out.extend_from_slice(&self.cost_ms.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        if let Some(token) = self.id_token {
            out.extend_from_slice(&token.to_le_bytes());
        }
        if let Some(revision) = self.revision {
            let digits = revision.to_string();
            // At most 20 digits: a u64.
            out.push(u8::try_from(digits.len()).unwrap_or(u8::MAX));
            out.extend_from_slice(digits.as_bytes());
        }
        if !tags.is_empty() {
            out.push(u8::try_from(tags.len()).unwrap_or(u8::MAX));
            for tag in tags.iter().take(MAX_TAGS) {
                let len = u16::try_from(tag.len()).unwrap_or(u16::MAX);
                out.extend_from_slice(&len.to_le_bytes());
                out.extend_from_slice(&tag.as_bytes()[..usize::from(len)]);
            }
        }
        out.extend_from_slice(payload);
        let checksum = XxHash3_64::oneshot(&out);
        out.extend_from_slice(&checksum.to_le_bytes());
        out
    }

    /// Splits stored bytes into header, tags and payload, after checking their checksum (a
    /// value corrupted in Redis or on the way is refused, not decoded into another value).
    pub fn unwrap(bytes: &[u8]) -> Result<Envelope<'_>, &'static str> {
        let (bytes, checksum) = bytes
            .split_last_chunk::<CHECKSUM_LEN>()
            .ok_or("value shorter than the envelope")?;
        if XxHash3_64::oneshot(bytes) != u64::from_le_bytes(*checksum) {
            return Err("checksum mismatch: the stored value is corrupt");
        }
        Self::parse(bytes)
    }

    /// [`Self::unwrap`] of bytes whose checksum was already checked (or that this process
    /// wrote): the local tier keeps only such bytes, and hashing 1 KiB again at every local hit
    /// cost a tenth of it.
    pub(crate) fn unwrap_verified(bytes: &[u8]) -> Result<Envelope<'_>, &'static str> {
        let (bytes, _) = bytes
            .split_last_chunk::<CHECKSUM_LEN>()
            .ok_or("value shorter than the envelope")?;
        Self::parse(bytes)
    }

    /// The header, tags and payload of checksummed bytes (the checksum cut off).
    fn parse(bytes: &[u8]) -> Result<Envelope<'_>, &'static str> {
        let (head, mut rest) = bytes
            .split_first_chunk::<HEADER_LEN>()
            .ok_or("value shorter than the envelope header")?;
        if head[0] != FORMAT {
            return Err("unknown envelope format");
        }
        let u64_at = |at: usize| {
            let mut b = [0; 8];
            b.copy_from_slice(&head[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let mut cost = [0; 4];
        cost.copy_from_slice(&head[19..23]);
        let flags = head[2];
        if flags & !KNOWN_FLAGS != 0 {
            return Err("unknown envelope flags: the value was written by a newer version");
        }
        let id_token = if flags & FLAG_ID_TOKEN != 0 {
            let (token, tail) = rest
                .split_first_chunk::<8>()
                .ok_or("value shorter than its id token")?;
            rest = tail;
            Some(u64::from_le_bytes(*token))
        } else {
            None
        };
        let revision = if flags & FLAG_REVISION != 0 {
            let (&len, tail) = rest
                .split_first()
                .ok_or("value shorter than its revision")?;
            let digits = tail
                .get(..usize::from(len))
                .ok_or("value shorter than its revision")?;
            rest = &tail[usize::from(len)..];
            let revision = std::str::from_utf8(digits)
                .ok()
                .and_then(|digits| digits.parse::<u64>().ok())
                .ok_or("revision not a number")?;
            Some(revision)
        } else {
            None
        };
        let mut tags = Tags::default();
        if flags & FLAG_TAGS != 0 {
            let (&count, tail) = rest.split_first().ok_or("value shorter than its tags")?;
            let mut end = 0;
            for _ in 0..count {
                let len = tail
                    .get(end..end + 2)
                    .ok_or("value shorter than its tags")?;
                end += 2 + usize::from(u16::from_le_bytes([len[0], len[1]]));
            }
            let raw = tail.get(..end).ok_or("value shorter than its tags")?;
            tags = Tags { raw, count };
            rest = &tail[end..];
        }
        let header = Self {
            codec: head[1],
            compressed: flags & FLAG_COMPRESSED != 0,
            negative: flags & FLAG_NEGATIVE != 0,
            created_at_ms: u64_at(3),
            fresh_until_ms: u64_at(11),
            cost_ms: u32::from_le_bytes(cost),
            epoch: u64_at(23),
            id_token,
            revision,
        };
        Ok(Envelope {
            header,
            tags,
            payload: rest,
        })
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_with_flags() {
        let mut header = Header::new(1, Duration::from_secs(60), Duration::from_millis(12));
        header.compressed = true;
        header.negative = true;
        header.epoch = 1_700_000_000_000_123;
        let bytes = header.wrap(&[], b"payload");
        assert_eq!(bytes.len(), HEADER_LEN + 7 + CHECKSUM_LEN);
        let envelope = Header::unwrap(&bytes).expect("decodes");
        assert_eq!(
            (envelope.header, envelope.payload),
            (header, &b"payload"[..])
        );
        assert!(envelope.tags.is_empty());
        assert_eq!(header.fresh_until_ms - header.created_at_ms, 60_000);
        assert_eq!(header.cost_ms, 12);
    }

    #[test]
    fn id_token_and_tags_round_trip() {
        let mut header = Header::new(1, Duration::from_secs(1), Duration::ZERO);
        header.id_token = Some(0xfeed);
        header.revision = Some(u64::MAX);
        let tags = ["category:7".to_owned(), "brand:%3A".to_owned()];
        let bytes = header.wrap(&tags, b"p");
        let envelope = Header::unwrap(&bytes).expect("decodes");
        assert_eq!(envelope.header, header);
        assert_eq!(
            envelope.tags.iter().collect::<Vec<_>>(),
            ["category:7", "brand:%3A"]
        );
        assert_eq!(envelope.payload, b"p");
    }

    /// Values stored by earlier releases (checksummed with xxhash-rust) still verify.
    #[test]
    fn the_checksum_is_the_xxh3_of_earlier_releases() {
        for len in 0..4_096_usize {
            let bytes: Vec<u8> = (0..len).map(|i| (i * 31 + len) as u8).collect();
            assert_eq!(
                XxHash3_64::oneshot(&bytes),
                xxhash_rust::xxh3::xxh3_64(&bytes),
                "{len} bytes"
            );
        }
    }

    #[test]
    fn foreign_and_truncated_bytes_are_rejected() {
        assert!(Header::unwrap(b"short").is_err());
        assert!(Header::unwrap(&[9; 40]).is_err());
        let mut header = Header::new(1, Duration::from_secs(1), Duration::ZERO);
        header.id_token = Some(1);
        header.revision = Some(42);
        let bytes = header.wrap(&["tag".to_owned()], b"");
        for len in 0..bytes.len() {
            assert!(Header::unwrap(&bytes[..len]).is_err(), "{len} bytes");
        }
    }

    /// The ordered-write script reads the revision at a fixed place: after the fixed header
    /// and the id token, a length byte and decimal digits.
    #[test]
    fn the_revision_follows_the_id_token_as_decimal_digits() {
        let mut header = Header::new(1, Duration::from_secs(1), Duration::ZERO);
        header.id_token = Some(5);
        header.revision = Some(1234);
        let bytes = header.wrap(&[], b"p");
        assert_eq!(bytes[2] & FLAG_REVISION, FLAG_REVISION);
        assert_eq!(&bytes[HEADER_LEN + 8..HEADER_LEN + 13], b"\x041234");
    }

    #[test]
    fn a_value_with_flags_of_a_newer_version_is_refused() {
        let header = Header::new(1, Duration::from_secs(1), Duration::ZERO);
        let mut bytes = header.wrap(&[], b"p");
        bytes[2] |= 1 << 7;
        let body = bytes.len() - CHECKSUM_LEN;
        let checksum = XxHash3_64::oneshot(&bytes[..body]);
        bytes[body..].copy_from_slice(&checksum.to_le_bytes());
        assert!(Header::unwrap(&bytes).is_err());
    }

    #[test]
    fn every_single_byte_corruption_is_refused() {
        let mut header = Header::new(1, Duration::from_secs(1), Duration::ZERO);
        header.epoch = 7;
        let bytes = header.wrap(&["group:1".to_owned()], b"a payload of some length");
        for at in 0..bytes.len() {
            for flip in [1u8, 0x80, 0xff] {
                let mut corrupt = bytes.clone();
                corrupt[at] ^= flip;
                assert!(Header::unwrap(&corrupt).is_err(), "byte {at} ^ {flip:#x}");
            }
        }
    }
}
