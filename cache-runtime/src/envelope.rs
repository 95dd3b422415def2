//! The envelope around every stored value: what freshness logic needs, then the codec's bytes.
//!
//! Layout (little endian):
//!
//! | bytes | field |
//! | --- | --- |
//! | 0 | envelope format (`1`) |
//! | 1 | codec id ([`CodecKind::id`](crate::CodecKind::id)) |
//! | 2 | flags: bit 0 compressed, bit 1 negative (a cached absence) |
//! | 3..11 | created at, ms since the Unix epoch |
//! | 11..19 | fresh until (logical expiry), ms since the Unix epoch |
//! | 19..23 | recompute cost of the value, ms |
//! | 23.. | payload |

use std::time::{Duration, SystemTime, UNIX_EPOCH};

const FORMAT: u8 = 1;
const HEADER_LEN: usize = 23;
const FLAG_COMPRESSED: u8 = 1;
const FLAG_NEGATIVE: u8 = 1 << 1;

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
        }
    }

    /// Writes the header followed by `payload`.
    pub fn wrap(&self, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + payload.len());
        let mut flags = 0;
        if self.compressed {
            flags |= FLAG_COMPRESSED;
        }
        if self.negative {
            flags |= FLAG_NEGATIVE;
        }
        out.extend_from_slice(&[FORMAT, self.codec, flags]);
        out.extend_from_slice(&self.created_at_ms.to_le_bytes());
        out.extend_from_slice(&self.fresh_until_ms.to_le_bytes());
        out.extend_from_slice(&self.cost_ms.to_le_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// Splits stored bytes into header and payload.
    pub fn unwrap(bytes: &[u8]) -> Result<(Self, &[u8]), &'static str> {
        let (head, payload) = bytes
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
        let header = Self {
            codec: head[1],
            compressed: head[2] & FLAG_COMPRESSED != 0,
            negative: head[2] & FLAG_NEGATIVE != 0,
            created_at_ms: u64_at(3),
            fresh_until_ms: u64_at(11),
            cost_ms: u32::from_le_bytes(cost),
        };
        Ok((header, payload))
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
        let bytes = header.wrap(b"payload");
        assert_eq!(bytes.len(), HEADER_LEN + 7);
        assert_eq!(Header::unwrap(&bytes), Ok((header, &b"payload"[..])));
        assert_eq!(header.fresh_until_ms - header.created_at_ms, 60_000);
        assert_eq!(header.cost_ms, 12);
    }

    #[test]
    fn foreign_bytes_are_rejected() {
        assert!(Header::unwrap(b"short").is_err());
        assert!(Header::unwrap(&[9; 40]).is_err());
    }
}
