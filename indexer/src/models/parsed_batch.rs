use std::sync::Arc;

/// The stream a record belongs to: tenant, app and label set. A batch keeps
/// each distinct one once; records refer to it by index.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct StreamKey {
    pub tenant: Arc<str>,
    pub app: Arc<str>,
    /// Sorted by name.
    pub labels: Arc<[(String, String)]>,
}

#[derive(Debug, Clone, Copy)]
pub struct ParsedRecord {
    pub offset: i64,
    pub time_ns: i64,
    /// Index into [`ParsedBatch::streams`].
    pub stream: u32,
    /// Range of [`ParsedBatch::lines`].
    pub line_start: u32,
    pub line_len: u32,
    /// Range of [`ParsedBatch::tokens`].
    pub tokens_start: u32,
    pub tokens_len: u32,
    /// Range of [`ParsedBatch::repeats`]: runs of this record's tokens.
    pub repeats_start: u32,
    pub repeats_len: u32,
}

/// A run of a record's tokens that are the words of a repeated nested
/// value (see `span_words`). `id` stands for the value's exact bytes, so a
/// block that holds one copy of these words can skip the others.
#[derive(Debug, Clone, Copy)]
pub struct RepeatedWords {
    pub id: u64,
    /// Range of [`ParsedBatch::tokens`].
    pub start: u32,
    pub len: u32,
}

/// Parsed records of one partition. Lines and token hashes live in two
/// shared arenas.
#[derive(Debug, Default)]
pub struct ParsedBatch {
    pub topic: Arc<str>,
    pub partition: i32,
    /// The batch's first message offset; held in the offset tracker.
    pub first_offset: i64,
    pub last_offset: i64,
    pub records: Vec<ParsedRecord>,
    pub streams: Vec<StreamKey>,
    pub lines: Vec<u8>,
    pub tokens: Vec<u64>,
    pub repeats: Vec<RepeatedWords>,
}

impl ParsedBatch {
    pub fn line(&self, r: &ParsedRecord) -> &[u8] {
        &self.lines[r.line_start as usize..(r.line_start + r.line_len) as usize]
    }

    pub fn tokens_of(&self, r: &ParsedRecord) -> &[u64] {
        &self.tokens[r.tokens_start as usize..(r.tokens_start + r.tokens_len) as usize]
    }

    /// Calls `f` with each run of the record's tokens, in order: a
    /// repeated value's words with its id, the others with `None`.
    pub fn for_each_token_run(&self, r: &ParsedRecord, mut f: impl FnMut(Option<u64>, &[u64])) {
        let end = (r.tokens_start + r.tokens_len) as usize;
        let repeats = &self.repeats[r.repeats_start as usize..][..r.repeats_len as usize];
        let mut done = r.tokens_start as usize;
        for rep in repeats {
            let (start, len) = (rep.start as usize, rep.len as usize);
            f(None, &self.tokens[done..start]);
            f(Some(rep.id), &self.tokens[start..start + len]);
            done = start + len;
        }
        f(None, &self.tokens[done..end]);
    }
}

impl crate::queue::Weighted for ParsedBatch {
    fn weight(&self) -> usize {
        self.lines.len()
            + self.tokens.len() * 8
            + self.repeats.len() * std::mem::size_of::<RepeatedWords>()
            + self.records.len() * std::mem::size_of::<ParsedRecord>()
    }
}
