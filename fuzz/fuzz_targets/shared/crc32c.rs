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
