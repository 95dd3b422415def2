//! Redis Cluster's hash slot of a key: CRC16 (XMODEM) of the key, or of its hash tag (the part
//! between the first `{` and the next `}`, when not empty), modulo 16384.

/// How many hash slots a cluster has.
pub(crate) const SLOTS: usize = 16_384;

/// The slot `key` hashes to.
pub(crate) fn slot(key: &[u8]) -> u16 {
    (crc16(hash_tag(key)) % SLOTS as u16) & 0x3fff
}

/// The bytes of `key` that are hashed.
fn hash_tag(key: &[u8]) -> &[u8] {
    let Some(open) = key.iter().position(|&b| b == b'{') else {
        return key;
    };
    match key[open + 1..].iter().position(|&b| b == b'}') {
        Some(0) | None => key,
        Some(len) => &key[open + 1..open + 1 + len],
    }
}

/// CRC16-CCITT (XMODEM: polynomial 0x1021, initial value 0), what Redis Cluster uses.
fn crc16(bytes: &[u8]) -> u16 {
    bytes.iter().fold(0u16, |crc, &byte| {
        let index = usize::from((crc >> 8) ^ u16::from(byte));
        (crc << 8) ^ TABLE[index]
    })
}

static TABLE: [u16; 256] = {
    let mut table = [0u16; 256];
    let mut i = 0;
    while i < 256 {
        let mut crc = (i as u16) << 8;
        let mut bit = 0;
        while bit < 8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
            bit += 1;
        }
        table[i] = crc;
        i += 1;
    }
    table
};

#[cfg(test)]
mod tests {
    use super::slot;

    #[test]
    fn slots_match_redis() {
        // `CLUSTER KEYSLOT` on Redis 7.0 for each of these.
        assert_eq!(slot(b"foo"), 12182);
        assert_eq!(slot(b"123456789"), 12739);
        assert_eq!(
            slot(b"shop:v1:product:42"),
            slot(b"{shop:v1:product:42}:%lease")
        );
        assert_eq!(slot(b"{user1000}.following"), slot(b"{user1000}.followers"));
        // An empty tag hashes the whole key; only the first `{` counts.
        assert_eq!(slot(b"foo{}{bar}"), 8363);
        assert_eq!(slot(b"foo{{bar}}zap"), 4015);
        assert_eq!(slot(b""), 0);
    }
}
