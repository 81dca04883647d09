//! CRC32C (Castagnoli), bitwise, for the targets that fix up a mutated
//! input's checksum: a fuzz crate does not need the `crc32c` crate for a
//! few hundred bytes per input.

pub fn crc32c(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82f6_3b78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// `data` with its last 4 bytes replaced by the CRC32C of the bytes
/// before them, or `None` if it is shorter than that: the CRC rejects
/// almost every mutation before a decoder's own checks run, so targets
/// also decode the input re-signed.
#[allow(dead_code)] // the index and slices targets re-sign their own way
pub fn resigned(data: &[u8]) -> Option<Vec<u8>> {
    let body = data.get(..data.len().checked_sub(4)?)?;
    let mut fixed = body.to_vec();
    fixed.extend_from_slice(&crc32c(body).to_le_bytes());
    Some(fixed)
}
