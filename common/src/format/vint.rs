//! Hadoop's variable-length integers (`WritableUtils.writeVLong`), plus a
//! bounds-checked cursor that every decoder in this module reads through.

use super::FormatError;

/// Appends `value` in Hadoop's zero-compressed VLong encoding.
pub fn write_vlong(out: &mut Vec<u8>, value: i64) {
    if (-112..=127).contains(&value) {
        out.push(value as u8);
        return;
    }
    let mut len: i32 = -112;
    let mut v = value;
    if v < 0 {
        v ^= -1;
        len = -120;
    }
    let mut tmp = v;
    while tmp != 0 {
        tmp >>= 8;
        len -= 1;
    }
    out.push(len as i8 as u8);
    let nbytes = if len < -120 {
        -(len + 120)
    } else {
        -(len + 112)
    };
    for idx in (0..nbytes).rev() {
        out.push((v >> (idx * 8)) as u8);
    }
}

/// A read position over a byte slice. Every read is bounds-checked and
/// reports the offset it failed at.
#[derive(Debug, Clone)]
pub struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Cursor { buf, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    pub fn is_empty(&self) -> bool {
        self.remaining() == 0
    }

    /// Reads `magic.len()` bytes and checks that they are `magic`.
    pub fn magic(&mut self, magic: &[u8]) -> Result<(), FormatError> {
        let found = self.take(magic.len())?;
        if found != magic {
            return Err(FormatError::BadMagic {
                expected: magic.to_vec(),
                found: found.to_vec(),
            });
        }
        Ok(())
    }

    /// Reads the start the packer's objects share: `magic`, a u16 LE
    /// version that must be `version`, and u16 LE flags that must be 0 (no
    /// flag is defined: a set one means a writer this reader predates).
    pub fn object_start(&mut self, magic: &[u8], version: u16) -> Result<(), FormatError> {
        self.magic(magic)?;
        FormatError::check_version(self.u16_le()? as u32, version as u32, version as u32)?;
        let at = self.position();
        let flags = self.u16_le()?;
        if flags != 0 {
            return Err(FormatError::corrupt(
                at,
                format!("unknown flags {flags:#06x}"),
            ));
        }
        Ok(())
    }

    pub fn take(&mut self, n: usize) -> Result<&'a [u8], FormatError> {
        if n > self.remaining() {
            return Err(FormatError::Truncated {
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], FormatError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    pub fn u8(&mut self) -> Result<u8, FormatError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u16_le(&mut self) -> Result<u16, FormatError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    pub fn u32_le(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64_le(&mut self) -> Result<u64, FormatError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    pub fn i32_le(&mut self) -> Result<i32, FormatError> {
        Ok(i32::from_le_bytes(self.array()?))
    }

    pub fn i64_le(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_le_bytes(self.array()?))
    }

    pub fn i32_be(&mut self) -> Result<i32, FormatError> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    pub fn u32_be(&mut self) -> Result<u32, FormatError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    pub fn i64_be(&mut self) -> Result<i64, FormatError> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// Reads a Hadoop VLong.
    pub fn vlong(&mut self) -> Result<i64, FormatError> {
        let first = self.u8()? as i8;
        if first >= -112 {
            return Ok(first as i64);
        }
        let negative = first < -120;
        let nbytes = if negative {
            -(first as i32 + 120)
        } else {
            -(first as i32 + 112)
        } as usize;
        let mut v: i64 = 0;
        for &b in self.take(nbytes)? {
            v = (v << 8) | b as i64;
        }
        Ok(if negative { v ^ -1 } else { v })
    }

    /// Reads a VLong that must be a length: non-negative and no larger than
    /// what is left, so a corrupt length can never trigger a huge allocation.
    pub fn vlen(&mut self) -> Result<usize, FormatError> {
        let at = self.pos;
        let v = self.vlong()?;
        if v < 0 || v as u64 > self.remaining() as u64 {
            return Err(FormatError::corrupt(
                at,
                format!("length {v} exceeds the {} bytes left", self.remaining()),
            ));
        }
        Ok(v as usize)
    }

    /// Reads a little-endian u32 length followed by that many bytes.
    pub fn bytes_u32(&mut self) -> Result<&'a [u8], FormatError> {
        let n = self.u32_le()? as usize;
        self.take(n)
    }

    /// Reads a u32-length-prefixed UTF-8 string.
    pub fn str_u32(&mut self) -> Result<&'a str, FormatError> {
        let at = self.pos;
        let b = self.bytes_u32()?;
        std::str::from_utf8(b).map_err(|e| FormatError::corrupt(at, format!("invalid UTF-8: {e}")))
    }

    /// Reads a Hadoop `Text`: a VLong length followed by UTF-8 bytes.
    pub fn text(&mut self) -> Result<&'a str, FormatError> {
        let at = self.pos;
        let n = self.vlen()?;
        let b = self.take(n)?;
        std::str::from_utf8(b).map_err(|e| FormatError::corrupt(at, format!("invalid UTF-8: {e}")))
    }
}

/// Appends the CRC32C (Castagnoli) of everything in `out`, as a u32 LE.
pub fn push_crc32c(out: &mut Vec<u8>) {
    let crc = crc32c::crc32c(out);
    out.extend_from_slice(&crc.to_le_bytes());
}

/// Checks the CRC32C (Castagnoli) stored as a u32 LE in the 4 bytes at
/// `at` against every byte before them; the caller has checked that they
/// are there.
pub fn check_crc32c_at(bytes: &[u8], at: usize) -> Result<(), FormatError> {
    let stored = bytes
        .get(at..at.saturating_add(4))
        .and_then(|b| <[u8; 4]>::try_from(b).ok())
        .map(u32::from_le_bytes)
        .ok_or(FormatError::Truncated {
            offset: at,
            needed: 4,
            available: bytes.len().saturating_sub(at),
        })?;
    let computed = crc32c::crc32c(&bytes[..at]);
    if stored != computed {
        return Err(FormatError::Checksum { stored, computed });
    }
    Ok(())
}

/// Appends a Hadoop `Text`: VLong length, then the bytes.
pub fn write_text(out: &mut Vec<u8>, s: &[u8]) {
    write_vlong(out, s.len() as i64);
    out.extend_from_slice(s);
}

/// Appends a u32-LE-length-prefixed byte string.
pub fn write_bytes_u32(out: &mut Vec<u8>, b: &[u8]) {
    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    out.extend_from_slice(b);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vlong_matches_hadoop_reference_bytes() {
        // Reference bytes from Hadoop's WritableUtils for these values.
        let cases: &[(i64, &[u8])] = &[
            (0, &[0x00]),
            (127, &[0x7f]),
            (-112, &[0x90]),
            (128, &[0x8f, 0x80]),
            (255, &[0x8f, 0xff]),
            (256, &[0x8e, 0x01, 0x00]),
            (-113, &[0x87, 0x70]),
            (-1000, &[0x86, 0x03, 0xe7]),
        ];
        for (v, want) in cases {
            let mut out = Vec::new();
            write_vlong(&mut out, *v);
            assert_eq!(&out[..], *want, "encoding {v}");
            assert_eq!(Cursor::new(want).vlong().unwrap(), *v);
        }
    }

    proptest! {
        #[test]
        fn vlong_round_trips(v in any::<i64>()) {
            let mut out = Vec::new();
            write_vlong(&mut out, v);
            let mut c = Cursor::new(&out);
            prop_assert_eq!(c.vlong().unwrap(), v);
            prop_assert!(c.is_empty());
        }

        #[test]
        fn cursor_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..32)) {
            let mut c = Cursor::new(&bytes);
            let _ = c.vlen();
            let _ = c.text();
            let _ = c.str_u32();
        }
    }
}
