use thiserror::Error;

/// Why a byte slice is not a valid Skidder object.
///
/// Decoders report *what* is wrong and *where*; callers add *which file*.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FormatError {
    #[error("truncated: needed {needed} bytes at offset {offset}, {available} available")]
    Truncated {
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("bad magic: expected {expected:?}, found {found:?}")]
    BadMagic { expected: Vec<u8>, found: Vec<u8> },
    #[error("unsupported format version {found} (this reader accepts {min}..={max})")]
    UnsupportedVersion { found: u32, min: u32, max: u32 },
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum { stored: u32, computed: u32 },
    #[error("corrupt at offset {offset}: {reason}")]
    Corrupt { offset: usize, reason: String },
    #[error("LZ4 decompression failed at offset {offset}: {reason}")]
    Lz4 { offset: usize, reason: String },
}

impl FormatError {
    /// Accepts a format version in `min..=max`.
    pub(crate) fn check_version(found: u32, min: u32, max: u32) -> Result<(), Self> {
        if (min..=max).contains(&found) {
            Ok(())
        } else {
            Err(FormatError::UnsupportedVersion { found, min, max })
        }
    }

    pub(crate) fn corrupt(offset: usize, reason: impl Into<String>) -> Self {
        FormatError::Corrupt {
            offset,
            reason: reason.into(),
        }
    }
}
