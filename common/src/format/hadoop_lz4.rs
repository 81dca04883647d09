//! Hadoop's `Lz4Codec` stream framing (`BlockCompressorStream`).
//!
//! A stream is a sequence of blocks; each block is a big-endian u32
//! uncompressed length followed by one or more chunks, each a big-endian u32
//! compressed length and a raw LZ4 block. Hadoop's decompressor holds one
//! chunk, compressed and uncompressed, in 256 KiB buffers, so we write
//! chunks of at most [`CHUNK`] bytes, one chunk per block.

use super::vint::Cursor;
use super::FormatError;

/// Uncompressed bytes per chunk. Each chunk starts LZ4 with an empty
/// window, so larger chunks compress better. Hadoop's own writer takes at
/// most 256 KiB less `256 KiB / 255 + 16` bytes (261,100), so that even
/// incompressible input fits its 256 KiB buffer once compressed; this
/// stays under that.
pub const CHUNK: usize = 254 * 1024;

/// Largest uncompressed block a reader accepts: Hadoop's own buffer size.
/// Guards against decompression bombs in corrupt input.
pub const MAX_BLOCK: usize = 256 * 1024;

/// Appends `data` to `out` as a Hadoop Lz4Codec stream.
pub fn compress(data: &[u8], out: &mut Vec<u8>) {
    for chunk in data.chunks(CHUNK) {
        out.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
        let len_at = out.len();
        out.extend_from_slice(&[0; 4]);
        let start = out.len();
        out.resize(
            start + lz4_flex::block::get_maximum_output_size(chunk.len()),
            0,
        );
        // The buffer is sized by lz4_flex's own bound, so this cannot fail.
        let n = lz4_flex::block::compress_into(chunk, &mut out[start..])
            .expect("output sized by get_maximum_output_size");
        out.truncate(start + n);
        out[len_at..len_at + 4].copy_from_slice(&(n as u32).to_be_bytes());
    }
}

/// Decompresses a whole Hadoop Lz4Codec stream, appending to `out`.
///
/// `base` is the stream's offset in its file, for error messages.
/// `limit` caps the total output, so corrupt lengths cannot exhaust memory.
pub fn decompress(
    stream: &[u8],
    base: usize,
    limit: usize,
    out: &mut Vec<u8>,
) -> Result<(), FormatError> {
    let mut c = Cursor::new(stream);
    let start_len = out.len();
    while !c.is_empty() {
        let at = base + c.position();
        let block_len = c.u32_be()? as usize;
        if block_len > MAX_BLOCK || out.len() - start_len + block_len > limit {
            return Err(FormatError::corrupt(
                at,
                format!("LZ4 block of {block_len} bytes exceeds the limit"),
            ));
        }
        // Room for the whole block, zeroed once: its chunks fill it in turn.
        let block_start = out.len();
        out.resize(block_start + block_len, 0);
        let mut produced = 0;
        while produced < block_len {
            let at = base + c.position();
            let clen = c.u32_be()? as usize;
            let chunk = c.take(clen)?;
            let n = lz4_flex::block::decompress_into(chunk, &mut out[block_start + produced..])
                .map_err(|e| FormatError::Lz4 {
                    offset: at,
                    reason: e.to_string(),
                })?;
            if n == 0 {
                return Err(FormatError::corrupt(
                    at,
                    "empty LZ4 chunk in a non-empty block",
                ));
            }
            produced += n;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn round_trips(data in proptest::collection::vec(any::<u8>(), 0..200_000)) {
            let mut enc = Vec::new();
            compress(&data, &mut enc);
            let mut dec = Vec::new();
            decompress(&enc, 0, usize::MAX, &mut dec).unwrap();
            prop_assert_eq!(dec, data);
        }

        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut dec = Vec::new();
            let _ = decompress(&data, 0, 1 << 20, &mut dec);
        }
    }

    /// Hadoop's writer may split a block into several compressed chunks
    /// (ours writes one): they fill the block in turn, after what `out`
    /// already held.
    #[test]
    fn a_block_of_several_chunks_reads_whole() {
        let parts: [&[u8]; 3] = [b"first chunk, ", b"second chunk, ", b"third"];
        let whole = parts.concat();
        let mut enc = Vec::new();
        enc.extend_from_slice(&(whole.len() as u32).to_be_bytes());
        for part in parts {
            let chunk = lz4_flex::block::compress(part);
            enc.extend_from_slice(&(chunk.len() as u32).to_be_bytes());
            enc.extend_from_slice(&chunk);
        }
        let mut dec = b"kept ".to_vec();
        decompress(&enc, 0, 1 << 20, &mut dec).unwrap();
        assert_eq!(dec, [&b"kept "[..], &whole].concat());
    }

    #[test]
    fn limit_stops_bombs() {
        let data = vec![7u8; 200_000];
        let mut enc = Vec::new();
        compress(&data, &mut enc);
        let mut dec = Vec::new();
        assert!(decompress(&enc, 0, 100_000, &mut dec).is_err());
    }
}
