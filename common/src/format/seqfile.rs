//! Hadoop SequenceFile (version 6), block-compressed with `Lz4Codec`.
//!
//! Data blocks use this format so that Hive and Spark read them with no
//! plug-in: keys are `LongWritable` event times in nanoseconds since the Unix
//! epoch, values are `Text` log lines. Skidder's own metadata (tenant, app,
//! the label-set dictionary) rides in the SequenceFile metadata map.
//! See `docs/FORMAT.md` for the byte layout.

use super::hadoop_lz4;
use super::vint::{write_text, write_vlong, Cursor};
use super::FormatError;

pub const MAGIC: &[u8; 3] = b"SEQ";
pub const VERSION: u8 = 6;
pub const KEY_CLASS: &str = "org.apache.hadoop.io.LongWritable";
pub const VALUE_CLASS: &str = "org.apache.hadoop.io.Text";
pub const CODEC_CLASS: &str = "org.apache.hadoop.io.compress.Lz4Codec";
/// Hadoop's `SYNC_ESCAPE`: a record-block boundary, followed by the sync marker.
const SYNC_ESCAPE: i32 = -1;
/// Uncompressed value bytes per record block (Hadoop's default
/// `io.seqfile.compress.blocksize`).
pub const RECORD_BLOCK_BYTES: usize = 1_000_000;
/// Largest decompressed buffer a reader accepts; bounds memory on corrupt input.
pub const MAX_BUFFER: usize = 256 * 1024 * 1024;

/// Builds a SequenceFile in memory, one record block at a time.
pub struct SeqFileWriter {
    out: Vec<u8>,
    sync: [u8; 16],
    key_lens: Vec<u8>,
    keys: Vec<u8>,
    val_lens: Vec<u8>,
    vals: Vec<u8>,
    /// Compression output, reused across record blocks.
    scratch: Vec<u8>,
    buffered: i64,
    records: u64,
}

impl SeqFileWriter {
    /// Starts a file with the given metadata (written in the order given) and
    /// sync marker. Reuses `out`'s allocation.
    pub fn new(mut out: Vec<u8>, metadata: &[(&str, &str)], sync: [u8; 16]) -> Self {
        out.clear();
        out.extend_from_slice(MAGIC);
        out.push(VERSION);
        write_text(&mut out, KEY_CLASS.as_bytes());
        write_text(&mut out, VALUE_CLASS.as_bytes());
        out.push(1); // compressed
        out.push(1); // block-compressed
        write_text(&mut out, CODEC_CLASS.as_bytes());
        out.extend_from_slice(&(metadata.len() as i32).to_be_bytes());
        for (k, v) in metadata {
            write_text(&mut out, k.as_bytes());
            write_text(&mut out, v.as_bytes());
        }
        out.extend_from_slice(&sync);
        SeqFileWriter {
            out,
            sync,
            key_lens: Vec::new(),
            keys: Vec::new(),
            val_lens: Vec::new(),
            vals: Vec::new(),
            scratch: Vec::new(),
            buffered: 0,
            records: 0,
        }
    }

    /// Appends one record. `line` must be valid UTF-8 (Hadoop `Text`).
    pub fn append(&mut self, time_ns: i64, line: &[u8]) {
        write_vlong(&mut self.key_lens, 8);
        self.keys.extend_from_slice(&time_ns.to_be_bytes());
        let before = self.vals.len();
        write_text(&mut self.vals, line);
        write_vlong(&mut self.val_lens, (self.vals.len() - before) as i64);
        self.buffered += 1;
        self.records += 1;
        if self.vals.len() >= RECORD_BLOCK_BYTES {
            self.flush_block();
        }
    }

    fn flush_block(&mut self) {
        if self.buffered == 0 {
            return;
        }
        self.out.extend_from_slice(&SYNC_ESCAPE.to_be_bytes());
        self.out.extend_from_slice(&self.sync);
        write_vlong(&mut self.out, self.buffered);
        let scratch = &mut self.scratch;
        for buf in [
            &mut self.key_lens,
            &mut self.keys,
            &mut self.val_lens,
            &mut self.vals,
        ] {
            scratch.clear();
            hadoop_lz4::compress(buf, scratch);
            write_vlong(&mut self.out, scratch.len() as i64);
            self.out.extend_from_slice(scratch);
            buf.clear();
        }
        self.buffered = 0;
    }

    pub fn records(&self) -> u64 {
        self.records
    }

    /// Finishes the last record block and returns the file's bytes.
    pub fn finish(mut self) -> Vec<u8> {
        self.flush_block();
        self.out
    }
}

/// A parsed SequenceFile header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeqFileHeader {
    pub metadata: Vec<(String, String)>,
    pub sync: [u8; 16],
}

impl SeqFileHeader {
    pub fn get(&self, key: &str) -> Option<&str> {
        self.metadata
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads a block-compressed Lz4 SequenceFile one record block at a time.
pub struct SeqFileReader<'a> {
    cursor: Cursor<'a>,
    header: SeqFileHeader,
}

/// One decompressed record block; reused across blocks to avoid allocation.
#[derive(Default)]
pub struct RecordBlock {
    key_lens: Vec<u8>,
    keys: Vec<u8>,
    val_lens: Vec<u8>,
    vals: Vec<u8>,
    count: usize,
}

impl<'a> SeqFileReader<'a> {
    pub fn new(bytes: &'a [u8]) -> Result<Self, FormatError> {
        let mut c = Cursor::new(bytes);
        c.magic(MAGIC)?;
        FormatError::check_version(c.u8()? as u32, VERSION as u32, VERSION as u32)?;
        for (what, want) in [("key class", KEY_CLASS), ("value class", VALUE_CLASS)] {
            let at = c.position();
            let got = c.text()?;
            if got != want {
                return Err(FormatError::corrupt(
                    at,
                    format!("{what} is {got:?}, expected {want:?}"),
                ));
            }
        }
        let at = c.position();
        let (compressed, block) = (c.u8()?, c.u8()?);
        if (compressed, block) != (1, 1) {
            return Err(FormatError::corrupt(at, "file is not block-compressed"));
        }
        let at = c.position();
        let codec = c.text()?;
        if codec != CODEC_CLASS {
            return Err(FormatError::corrupt(
                at,
                format!("codec is {codec:?}, expected {CODEC_CLASS:?}"),
            ));
        }
        let at = c.position();
        let n = c.i32_be()?;
        if n < 0 || n as usize > c.remaining() {
            return Err(FormatError::corrupt(
                at,
                format!("metadata count {n} is impossible"),
            ));
        }
        let mut metadata = Vec::with_capacity(n as usize);
        for _ in 0..n {
            metadata.push((c.text()?.to_owned(), c.text()?.to_owned()));
        }
        let sync = c.array::<16>()?;
        Ok(SeqFileReader {
            cursor: c,
            header: SeqFileHeader { metadata, sync },
        })
    }

    pub fn header(&self) -> &SeqFileHeader {
        &self.header
    }

    /// Decompresses the next record block into `block`. Returns false at the
    /// end of the file.
    pub fn next_block(&mut self, block: &mut RecordBlock) -> Result<bool, FormatError> {
        let c = &mut self.cursor;
        if c.is_empty() {
            return Ok(false);
        }
        let at = c.position();
        if c.i32_be()? != SYNC_ESCAPE || c.array::<16>()? != self.header.sync {
            return Err(FormatError::corrupt(
                at,
                "record block does not start with the sync marker",
            ));
        }
        let at = c.position();
        let count = c.vlong()?;
        if count <= 0 || count as usize > MAX_BUFFER {
            return Err(FormatError::corrupt(
                at,
                format!("record count {count} is impossible"),
            ));
        }
        block.count = count as usize;
        for buf in [
            &mut block.key_lens,
            &mut block.keys,
            &mut block.val_lens,
            &mut block.vals,
        ] {
            let len = c.vlen()?;
            let base = c.position();
            buf.clear();
            hadoop_lz4::decompress(c.take(len)?, base, MAX_BUFFER, buf)?;
        }
        block.validate(at)?;
        Ok(true)
    }

    /// Reads every record: a convenience for tools and tests.
    pub fn read_all(bytes: &'a [u8]) -> Result<(SeqFileHeader, Vec<(i64, String)>), FormatError> {
        let mut reader = SeqFileReader::new(bytes)?;
        let mut block = RecordBlock::default();
        let mut out = Vec::new();
        while reader.next_block(&mut block)? {
            for (t, line) in block.records() {
                out.push((t, String::from_utf8_lossy(line).into_owned()));
            }
        }
        Ok((reader.header, out))
    }
}

impl RecordBlock {
    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Checks that the four buffers agree, so that [`RecordBlock::records`]
    /// can walk them without further checks.
    fn validate(&self, at: usize) -> Result<(), FormatError> {
        let bad = |why: &str| Err(FormatError::corrupt(at, format!("record block: {why}")));
        if self.keys.len() != self.count * 8 {
            return bad("key buffer length does not match the record count");
        }
        let mut kl = Cursor::new(&self.key_lens);
        let mut vl = Cursor::new(&self.val_lens);
        let mut vals = Cursor::new(&self.vals);
        for _ in 0..self.count {
            if kl.vlong()? != 8 {
                return bad("key length is not 8");
            }
            let n = vl.vlong()?;
            if n < 0 {
                return bad("negative value length");
            }
            let mut text = Cursor::new(vals.take(n as usize)?);
            let inner = text.vlen()?;
            if text.remaining() != inner {
                return bad("Text length does not match the value length");
            }
            if simdutf8::basic::from_utf8(text.take(inner)?).is_err() {
                return bad("value is not UTF-8");
            }
        }
        if !kl.is_empty() || !vl.is_empty() || !vals.is_empty() {
            return bad("trailing bytes after the last record");
        }
        Ok(())
    }

    /// The block's records as (event time in ns, line bytes).
    pub fn records(&self) -> impl Iterator<Item = (i64, &[u8])> + '_ {
        let mut vl = Cursor::new(&self.val_lens);
        let mut vals = Cursor::new(&self.vals);
        self.keys.chunks_exact(8).map(move |k| {
            // validate() proved every read below in bounds.
            let time = i64::from_be_bytes(k.try_into().unwrap_or([0; 8]));
            let n = vl.vlong().unwrap_or(0).max(0) as usize;
            let mut text = Cursor::new(vals.take(n).unwrap_or(&[]));
            let inner = text.vlen().unwrap_or(0);
            (time, text.take(inner).unwrap_or(&[]))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn build(records: &[(i64, String)], meta: &[(&str, &str)]) -> Vec<u8> {
        let mut w = SeqFileWriter::new(Vec::new(), meta, [9; 16]);
        for (t, l) in records {
            w.append(*t, l.as_bytes());
        }
        w.finish()
    }

    proptest! {
        #[test]
        fn round_trips(records in proptest::collection::vec((any::<i64>(), ".{0,300}"), 0..300)) {
            let bytes = build(&records, &[("skidder.app", "x"), ("k", "é")]);
            let (header, got) = SeqFileReader::read_all(&bytes).unwrap();
            prop_assert_eq!(header.get("skidder.app"), Some("x"));
            prop_assert_eq!(header.get("k"), Some("é"));
            prop_assert_eq!(got, records);
        }

        #[test]
        fn flipped_bits_are_errors_not_panics(pos in any::<prop::sample::Index>(), bit in 0u8..8) {
            let records: Vec<(i64, String)> = (0..50).map(|i| (i, format!("line {i} of the test"))).collect();
            let mut bytes = build(&records, &[]);
            let i = pos.index(bytes.len());
            bytes[i] ^= 1 << bit;
            // Either detected, or (when the flip lands in a literal) a
            // different but well-formed result; never a panic.
            let _ = SeqFileReader::read_all(&bytes);
        }
    }

    #[test]
    fn large_files_span_several_record_blocks() {
        let records: Vec<(i64, String)> = (0..20_000).map(|i| (i, format!("{i:0>100}"))).collect();
        let bytes = build(&records, &[]);
        let mut r = SeqFileReader::new(&bytes).unwrap();
        let mut b = RecordBlock::default();
        let mut blocks = 0;
        while r.next_block(&mut b).unwrap() {
            blocks += 1;
        }
        assert!(blocks > 1);
        assert_eq!(SeqFileReader::read_all(&bytes).unwrap().1, records);
    }

    #[test]
    fn truncation_is_reported() {
        let records: Vec<(i64, String)> = (0..50).map(|i| (i, "x".repeat(i as usize))).collect();
        let bytes = build(&records, &[]);
        for cut in [3, 10, bytes.len() / 2, bytes.len() - 1] {
            assert!(
                SeqFileReader::read_all(&bytes[..cut]).is_err(),
                "cut at {cut}"
            );
        }
    }
}
