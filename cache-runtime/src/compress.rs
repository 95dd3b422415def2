//! LZ4 compression of large encoded values (lz4_flex, pure Rust; chosen in BENCHMARKS.md).

/// Default size above which encoded values are compressed.
pub const DEFAULT_COMPRESSION_THRESHOLD: usize = 4 * 1024;

/// Compresses `bytes`, prefixing the uncompressed length.
pub(crate) fn compress(bytes: &[u8]) -> Vec<u8> {
    lz4_flex::compress_prepend_size(bytes)
}

/// Decompresses what [`compress`] produced, refusing to allocate more than `limit` bytes: the
/// length prefix comes from Redis and a corrupted one must not trigger a huge allocation.
pub(crate) fn decompress(bytes: &[u8], limit: usize) -> Result<Vec<u8>, &'static str> {
    let (len, body) = bytes
        .split_first_chunk::<4>()
        .ok_or("compressed value shorter than its length prefix")?;
    let len = usize::try_from(u32::from_le_bytes(*len)).map_err(|_| "length overflow")?;
    if len > limit {
        return Err("compressed value claims more than the maximum value size");
    }
    let out = lz4_flex::decompress(body, len).map_err(|_| "corrupt compressed value")?;
    if out.len() != len {
        return Err("compressed value length mismatch");
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        let data = b"abcabcabcabcabcabcabcabc".repeat(100);
        let packed = compress(&data);
        assert!(packed.len() < data.len());
        assert_eq!(decompress(&packed, data.len()).as_deref(), Ok(&data[..]));
    }

    #[test]
    fn a_forged_length_prefix_is_refused_before_allocating() {
        let mut packed = compress(b"hello hello hello");
        packed[..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(decompress(&packed, 1 << 20).is_err());
        assert!(decompress(&[1, 2], 1 << 20).is_err());
    }
}
