//! Stage 2: turns raw Kafka payloads into records with an event time, a
//! stream (tenant, app, labels) and the token hashes for the bloom filter.
//!
//! JSON goes through simd-json on a scratch copy (simd-json parses in place,
//! and the original bytes are what we store), into a tape that is reused
//! from record to record, so a record costs no allocation. Anything that is not a JSON
//! object, or not UTF-8, is kept as a plain-text line with the Kafka
//! timestamp; it is counted, never dropped.
//!
//! Beside the stage: `time.rs` (event times), `streams.rs` (tenant, app
//! and labels, and the table that keeps them), `words.rs` (the JSON words
//! for the bloom filter).

mod streams;
mod time;
mod words;

use std::fmt::Write as _;
use std::ops::Range;

use simd_json::prelude::{TypedValue, ValueAsScalar};
use simd_json::{Buffers, Tape, ValueType};
use skidder_common::format::layout::{now_ns, searchable_time};
use skidder_common::format::tokens::flatten_key;

use super::{StageError, StageExit};
use crate::config::{AppSource, ParseConfig, TenantSource};
use crate::dead_letter::{DeadLetters, Reason, Refused};
use crate::failpoints::crash_point;
use crate::metrics::Metrics;
use crate::models::template::{AppTemplate, TemplateError};
use crate::models::{Item, ParsedBatch, ParsedRecord, RawBatch};
use crate::queue::{Receiver, Sender};
use crate::span_words::SpanWords;
use streams::{StreamTable, KNOWN_STREAMS};
use time::parse_time;
use words::{is_float, nested_cuts};

/// A parsed JSON value: a view into the reused tape.
type Value<'t, 'i> = simd_json::value::tape::Value<'t, 'i>;

/// Parsing rules compiled from the config.
pub struct Parser {
    cfg: ParseConfig,
    app_template: Option<AppTemplate>,
    label_paths: Vec<(String, Vec<String>)>,
    ts_paths: Vec<Vec<String>>,
    tenant_path: Option<Vec<String>>,
    /// Reused buffers: nothing below allocates per record once warm.
    scratch: Vec<u8>,
    streams: StreamTable,
    buffers: Buffers,
    /// Empty between records; its nodes borrow `scratch` while one parses.
    tape: Option<Tape<'static>>,
    key_buf: String,
    value_buf: String,
    /// Word hashes of repeated nested values, and this line's cuts.
    span_words: SpanWords,
    cuts: Vec<Range<usize>>,
    pub plain_text: u64,
    /// Records refused by a limit in the last batch, for the dead-letter prefix.
    pub refused: Vec<Refused>,
}

fn split_path(p: &str) -> Vec<String> {
    p.split('.').map(String::from).collect()
}

fn lookup<'t, 'i>(obj: Value<'t, 'i>, path: &[String]) -> Option<Value<'t, 'i>> {
    let mut cur = obj;
    for seg in path {
        cur = cur.as_object()?.get(seg.as_str())?;
    }
    Some(cur)
}

/// Writes a scalar's text form (Loki's `| json` view of it) into `out`.
fn scalar_text(v: Value<'_, '_>, out: &mut String) -> bool {
    out.clear();
    match (v.value_type(), v) {
        (ValueType::String, v) => out.push_str(v.as_str().unwrap_or_default()),
        (ValueType::I64, v) => {
            let _ = write!(out, "{}", v.as_i64().unwrap_or_default());
        }
        (ValueType::U64, v) => {
            let _ = write!(out, "{}", v.as_u64().unwrap_or_default());
        }
        (ValueType::F64, v) => {
            let _ = write!(out, "{}", v.as_f64().unwrap_or_default());
        }
        (ValueType::Bool, v) => out.push_str(if v.as_bool().unwrap_or_default() {
            "true"
        } else {
            "false"
        }),
        _ => return false,
    }
    true
}

impl Parser {
    pub fn new(cfg: ParseConfig) -> Result<Self, TemplateError> {
        let app_template = match &cfg.app {
            AppSource::Template(t) => Some(AppTemplate::parse(t)?),
            AppSource::Fixed(_) => None,
        };
        let mut label_paths: Vec<(String, Vec<String>)> = cfg
            .label_fields
            .iter()
            .map(|f| {
                let path = split_path(f);
                (flatten_key(path.iter().map(String::as_str)), path)
            })
            .collect();
        label_paths.sort_by(|a, b| a.0.cmp(&b.0));
        label_paths.dedup_by(|a, b| a.0 == b.0);
        Ok(Parser {
            ts_paths: cfg.timestamp_fields.iter().map(|p| split_path(p)).collect(),
            tenant_path: match &cfg.tenant {
                TenantSource::Field(f) => Some(split_path(f)),
                _ => None,
            },
            cfg,
            app_template,
            label_paths,
            scratch: Vec::new(),
            streams: StreamTable::default(),
            buffers: Buffers::default(),
            tape: Some(Tape::null()),
            key_buf: String::new(),
            value_buf: String::new(),
            span_words: SpanWords::default(),
            cuts: Vec::new(),
            plain_text: 0,
            refused: Vec::new(),
        })
    }

    /// Parses one batch. Every input line becomes exactly one record.
    pub fn parse_batch(&mut self, raw: &RawBatch) -> ParsedBatch {
        let mut out = ParsedBatch {
            topic: raw.topic.clone(),
            partition: raw.partition,
            first_offset: raw.first_offset().unwrap_or(0),
            last_offset: raw.messages.last().map(|m| m.offset).unwrap_or(0),
            lines: Vec::with_capacity(raw.payload.len()),
            // About one word per 8 bytes: reserved once, not grown.
            tokens: Vec::with_capacity(raw.payload.len() / 8),
            ..Default::default()
        };
        self.refused.clear();
        let mut table = std::mem::take(&mut self.streams);
        table.batch += 1;
        if table.known.len() > KNOWN_STREAMS {
            table.known = Default::default();
        }
        let now_ns = now_ns();
        for m in &raw.messages {
            let fallback_ns = m
                .timestamp_ms
                .map(|t| t.saturating_mul(1_000_000))
                .filter(|&t| searchable_time(t))
                .unwrap_or(now_ns);
            let payload = raw.payload_of(m);
            let mut rest = payload;
            let mut line_no = 0u32;
            while !rest.is_empty() {
                let (line, next) = match memchr::memchr(b'\n', rest) {
                    Some(i) => (&rest[..i], &rest[i + 1..]),
                    None => (rest, &rest[rest.len()..]),
                };
                rest = next;
                line_no += 1;
                let line = line.trim_ascii();
                if line.is_empty() {
                    continue;
                }
                let at = (m.offset, line_no - 1);
                if let Err(reason) =
                    self.parse_line(line, at.0, fallback_ns, &raw.topic, &mut table, &mut out)
                {
                    self.refused.push(Refused {
                        offset: at.0,
                        line: at.1,
                        reason,
                        bytes: line.to_vec(),
                    });
                }
            }
        }
        out.streams = std::mem::take(&mut table.streams);
        self.streams = table;
        out
    }

    fn parse_line(
        &mut self,
        line: &[u8],
        offset: i64,
        fallback_ns: i64,
        topic: &str,
        table: &mut StreamTable,
        out: &mut ParsedBatch,
    ) -> Result<(), Reason> {
        if line.len() > self.cfg.max_line_bytes {
            return Err(Reason::LineTooLong);
        }
        let tokens_start = out.tokens.len() as u32;
        let line_start = out.lines.len() as u32;
        // simd-json parses in place, and the original bytes are what we
        // store, so only JSON candidates are copied to the scratch buffer.
        let mut scratch = std::mem::take(&mut self.scratch);
        let mut tape = self.tape.take().unwrap_or_else(Tape::null).reset();
        self.cuts.clear();
        // simd-json validates UTF-8 itself, so only lines that are not JSON
        // objects are checked here. The scratch copy carries the padding
        // simd-json reads past the end, which spares it a copy of its own.
        let mut base = 0;
        let parsed = line[0] == b'{' && {
            scratch.clear();
            scratch.extend_from_slice(line);
            scratch.resize(line.len() + simd_json::INPUT_PADDING, 0);
            base = scratch.as_ptr() as usize;
            simd_json::fill_tape_padded(&mut scratch, line.len(), &mut self.buffers, &mut tape)
                .is_ok()
        };
        // Most lines have no float and no escape, and then no value needs
        // words of its own: a scan of the tape spares the walk.
        let escaped = parsed && line.contains(&b'\\');
        let walk = escaped || (parsed && tape.0.iter().any(is_float));
        let root = Some(tape.as_value()).filter(|v| parsed && v.is_object());
        let found = match root {
            Some(v) => self.stream_of(Some(v), topic, table).map(|stream| {
                out.lines.extend_from_slice(line);
                let time = self
                    .ts_paths
                    .iter()
                    .find_map(|p| {
                        lookup(v, p)
                            .and_then(|t| parse_time(t, &self.cfg.timestamp_format))
                            .filter(|&t| searchable_time(t))
                    })
                    .unwrap_or(fallback_ns);
                if walk {
                    self.json_tokens(v, escaped, &mut out.tokens);
                }
                nested_cuts(v, line.len(), base, &mut self.cuts);
                (time, stream)
            }),
            None => self.stream_of(None, topic, table).map(|stream| {
                self.plain_text += 1;
                if std::str::from_utf8(line).is_ok() {
                    out.lines.extend_from_slice(line);
                } else {
                    out.lines
                        .extend_from_slice(String::from_utf8_lossy(line).as_bytes());
                }
                (fallback_ns, stream)
            }),
        };
        self.tape = Some(tape.reset());
        self.scratch = scratch;
        let (time_ns, stream) = found?;
        let line_len = out.lines.len() as u32 - line_start;
        let stored = &out.lines[line_start as usize..];
        let repeats_start = out.repeats.len() as u32;
        self.span_words
            .push_words(stored, &self.cuts, &mut out.tokens, &mut out.repeats);
        out.records.push(ParsedRecord {
            offset,
            time_ns,
            stream,
            line_start,
            line_len,
            tokens_start,
            tokens_len: out.tokens.len() as u32 - tokens_start,
            repeats_start,
            repeats_len: out.repeats.len() as u32 - repeats_start,
        });
        Ok(())
    }
}

/// The stage loop: parses each raw batch, passes controls on.
pub fn run(
    mut parser: Parser,
    dead_letters: &DeadLetters,
    input: Receiver<Item<RawBatch>>,
    output: Sender<Item<ParsedBatch>>,
    metrics: &Metrics,
) -> StageExit {
    super::map_stage(input, output, |raw| {
        crash_point("parser::batch");
        let before = parser.plain_text;
        let hits_before = parser.span_words.hits;
        let parsed = parser.parse_batch(&raw);
        // Stored before the batch moves on: its hold covers them till then.
        for r in parser.refused.drain(..) {
            dead_letters
                .write(&raw.topic, raw.partition, r)
                .map_err(StageError::Store)?;
        }
        metrics
            .plain_text_records
            .inc_by(parser.plain_text - before);
        metrics
            .repeated_value_hits
            .inc_by(parser.span_words.hits - hits_before);
        metrics.stage(
            "parser",
            raw.messages.len() as u64,
            raw.payload.len() as u64,
            parsed.records.len() as u64,
            parsed.lines.len() as u64,
        );
        Ok(parsed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use skidder_common::format::tokens::{for_each_word_hash, token_hash};

    fn parse(cfg: ParseConfig, lines: &[&[u8]]) -> ParsedBatch {
        let mut raw = RawBatch::new("logs".into(), 0);
        for (i, l) in lines.iter().enumerate() {
            raw.push(i as i64, Some(1_000), l);
        }
        Parser::new(cfg).unwrap().parse_batch(&raw)
    }

    #[test]
    fn json_fields_become_time_stream_and_tokens() {
        let cfg = ParseConfig {
            app: AppSource::Template("{kubernetes.namespace}-{service}".into()),
            tenant: TenantSource::Field("org".into()),
            label_fields: vec!["level".into(), "kubernetes.pod".into()],
            ..Default::default()
        };
        let b = parse(
            cfg,
            &[br#"{"ts":"2026-11-21T13:00:00.5Z","org":"acme","service":"api","level":"ERROR","kubernetes":{"namespace":"shop","pod":"p-1"},"http":{"status":503},"msg":"Disk FULL"}"#],
        );
        let r = &b.records[0];
        assert_eq!(r.time_ns, 1_795_266_000_500_000_000);
        let s = &b.streams[r.stream as usize];
        assert_eq!((&*s.tenant, &*s.app), ("acme", "shop-api"));
        assert_eq!(
            &*s.labels,
            &[
                ("kubernetes_pod".to_owned(), "p-1".to_owned()),
                ("level".to_owned(), "ERROR".to_owned())
            ]
        );
        let toks = b.tokens_of(r);
        for t in ["503", "error", "shop", "disk", "full"] {
            assert!(
                toks.contains(&token_hash(t.as_bytes())),
                "missing token {t}"
            );
        }
    }

    #[test]
    fn non_json_and_invalid_utf8_fall_back_to_plain_text() {
        let b = parse(
            ParseConfig::default(),
            &[b"plain \xff line", b"[1,2]", b"{broken"],
        );
        assert_eq!(b.records.len(), 3);
        assert_eq!(b.line(&b.records[0]), "plain \u{fffd} line".as_bytes());
        assert!(b.records.iter().all(|r| r.time_ns == 1_000_000_000));
        assert_eq!(&*b.streams[0].app, "unknown");
    }

    #[test]
    fn multi_record_messages_and_epoch_times() {
        let b = parse(
            ParseConfig::default(),
            &[b"{\"ts\":1521911721.926318,\"app\":\"z\"}\n{\"ts\":1700000000123}\n\n"],
        );
        assert_eq!(b.records.len(), 2);
        assert_eq!(b.records[0].time_ns, 1_521_911_721_926_318_000);
        assert_eq!(b.records[1].time_ns, 1_700_000_000_123_000_000);
        assert_eq!(b.records[0].offset, b.records[1].offset);
    }

    #[test]
    fn values_the_raw_line_spells_differently_add_their_words() {
        // An escape splits words differently in the raw line, and a float
        // prints differently from how it was written.
        let b = parse(
            ParseConfig::default(),
            &[br#"{"msg":"tab\there caf\u00e9","f":1e3,"n":2.50,"deep":{"x":"y"}}"#],
        );
        let toks = b.tokens_of(&b.records[0]);
        for t in ["here", "caf\u{e9}", "1000", "2", "5", "y", "msg"] {
            assert!(
                toks.contains(&token_hash(t.as_bytes())),
                "missing token {t}"
            );
        }
    }

    #[test]
    fn repeated_nested_values_give_the_same_words_from_the_cache() {
        // A long `kubernetes` object on every line, in the middle and last;
        // the third line differs in it by one byte.
        let meta = format!(
            r#"{{"pod":"api-1","labels":{{"team":"{}"}}}}"#,
            "pay ".repeat(80)
        );
        let other = meta.replace("api-1", "api-2");
        let lines = [
            format!(r#"{{"msg":"a 1","kubernetes":{meta},"n":1}}"#),
            format!(r#"{{"msg":"b 2","kubernetes":{meta},"n":2}}"#),
            format!(r#"{{"msg":"c 3","kubernetes":{other},"n":3}}"#),
            format!(r#"{{"msg":"d 4","kubernetes":{meta}}}"#),
            format!(r#"{{"msg":"e 5","kubernetes":{meta},"n":5}}"#),
        ];
        let refs: Vec<&[u8]> = lines.iter().map(|l| l.as_bytes()).collect();
        let b = parse(ParseConfig::default(), &refs);
        for (r, line) in b.records.iter().zip(&lines) {
            let mut got = b.tokens_of(r).to_vec();
            let mut want = Vec::new();
            for_each_word_hash(line.as_bytes(), |h| want.push(h));
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "{line}");
        }
        // Remembered on its second sighting, then reused; the last line's
        // span runs to the line's end, so it is another span.
        let ids: Vec<Vec<u64>> = b
            .records
            .iter()
            .map(|r| {
                let reps = &b.repeats[r.repeats_start as usize..][..r.repeats_len as usize];
                reps.iter().map(|x| x.id).collect()
            })
            .collect();
        assert_eq!(ids[0], Vec::<u64>::new());
        assert_eq!(ids[1].len(), 1);
        assert_eq!(ids[4], ids[1]);
        assert_eq!(ids[2], Vec::<u64>::new());
    }

    #[test]
    fn deep_nesting_does_not_overflow() {
        let deep = format!("{}1{}", "{\"a\":".repeat(10_000), "}".repeat(10_000));
        let b = parse(ParseConfig::default(), &[deep.as_bytes()]);
        assert_eq!(b.records.len(), 1);
    }

    fn parse_keep(cfg: ParseConfig, lines: &[&[u8]]) -> (ParsedBatch, Vec<Refused>) {
        let mut raw = RawBatch::new("logs".into(), 0);
        for (i, l) in lines.iter().enumerate() {
            raw.push(i as i64, Some(1_000), l);
        }
        let mut p = Parser::new(cfg).unwrap();
        let b = p.parse_batch(&raw);
        (b, std::mem::take(&mut p.refused))
    }

    #[test]
    fn limits_refuse_records_whole_and_keep_the_rest() {
        let cfg = ParseConfig {
            tenant: TenantSource::Field("org".into()),
            label_fields: vec!["pod".into()],
            max_line_bytes: 200,
            max_label_value_bytes: 20,
            ..Default::default()
        };
        let long_line = format!(r#"{{"msg":"{}"}}"#, "x".repeat(300));
        let long_app = format!(r#"{{"app":"{}"}}"#, "a".repeat(129));
        let lines: Vec<&[u8]> = vec![
            br#"{"org":"ok","msg":"kept"}"#,
            long_line.as_bytes(),
            b"{\"org\":\"../b\"}\n{\"org\":\"a|b\"}\n{\"org\":\"\"}",
            long_app.as_bytes(),
            br#"{"pod":"this-value-is-longer-than-twenty"}"#,
            br#"{"app":"../..","org":"ok"}"#,
        ];
        let (b, refused) = parse_keep(cfg, &lines);
        let got: Vec<(i64, u32, Reason)> = refused
            .iter()
            .map(|r| (r.offset, r.line, r.reason))
            .collect();
        assert_eq!(
            got,
            [
                (1, 0, Reason::LineTooLong),
                (2, 0, Reason::InvalidTenant),
                (2, 1, Reason::InvalidTenant),
                (3, 0, Reason::AppTooLong),
                (4, 0, Reason::LabelTooLong),
            ]
        );
        assert_eq!(refused[0].bytes, long_line.as_bytes(), "kept whole");
        // Kept: line 0, the empty tenant (the default one), the `../..` app
        // (key encoding makes it safe).
        let kept: Vec<(i64, &str, &str)> = b
            .records
            .iter()
            .map(|r| {
                let s = &b.streams[r.stream as usize];
                (r.offset, &*s.tenant, &*s.app)
            })
            .collect();
        assert_eq!(
            kept,
            [
                (0, "ok", "unknown"),
                (2, "default", "unknown"),
                (5, "ok", "../..")
            ]
        );
        for r in &b.records {
            assert!(!b.line(r).is_empty());
        }
    }

    #[test]
    fn hostile_values_are_stored_not_refused() {
        let lines: Vec<&[u8]> = vec![
            b"nul \0 and \x07 bell \x1b[31m",
            br#"{"n":123456789012345678901234567890,"f":1e400,"g":-1e-400}"#,
            br#"{"dup":1,"dup":2,"ts":"garbage"}"#,
            br#"{"ts":"1900-01-01T00:00:00Z"}"#,
            br#"{"ts":"2200-01-01T00:00:00Z"}"#,
            br#"{"ts":"0001-01-01T00:00:00Z"}"#,
            br#"{"ts":99999999999999999999999}"#,
        ];
        let (b, refused) = parse_keep(ParseConfig::default(), &lines);
        assert!(refused.is_empty());
        assert_eq!(b.records.len(), lines.len());
        let times: Vec<i64> = b.records.iter().map(|r| r.time_ns).collect();
        // Unparseable or unrepresentable times fall back to Kafka's (1 s).
        assert_eq!(times[2], 1_000_000_000);
        // 1900 and 2200 are outside what a query can reach (1970 to 2116).
        assert_eq!(times[3], 1_000_000_000);
        assert_eq!(times[4], 1_000_000_000);
        assert_eq!(times[5], 1_000_000_000);
        assert_eq!(times[6], 1_000_000_000);
    }
}
