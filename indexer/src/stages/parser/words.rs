//! The words of a JSON line for its block's bloom filter, beyond the raw
//! line's own: the words of values the raw line spells differently, and
//! the cuts around long nested values that [`SpanWords`](crate::span_words::SpanWords) may take from its
//! cache instead.

use std::ops::Range;

use simd_json::prelude::TypedValue;
use simd_json::tape::Node;
use simd_json::{StaticNode, ValueType};
use skidder_common::format::tokens::{for_each_word_hash, MAX_FIELD_DEPTH};

use super::{scalar_text, Parser, Value};
use crate::span_words::MIN_SPAN;

impl Parser {
    /// Pushes the word hashes of every scalar field value that the line's
    /// own words may not already hold (see [`Walk`]).
    pub(super) fn json_tokens(&mut self, v: Value<'_, '_>, escaped: bool, tokens: &mut Vec<u64>) {
        let mut walk = Walk {
            escaped,
            value: std::mem::take(&mut self.value_buf),
            max_len: self.cfg.max_token_value_len,
            tokens,
        };
        walk.object(v, 0);
        self.value_buf = walk.value;
    }
}

pub(super) fn is_float(node: &Node<'_>) -> bool {
    matches!(node, Node::Static(StaticNode::F64(_)))
}

/// Where a line may be cut around its long nested values, for
/// [`SpanWords`](crate::span_words::SpanWords): from the quote before a top-level key whose value is an
/// object or an array to the quote before the next key, or to the line's
/// end. simd-json leaves each key in place in the scratch copy that starts
/// at `base`, so its address gives its offset in the line; `SpanWords`
/// checks every cut's edges against the line itself.
pub(super) fn nested_cuts(
    root: Value<'_, '_>,
    len: usize,
    base: usize,
    cuts: &mut Vec<Range<usize>>,
) {
    let Some(o) = root.as_object() else { return };
    let mut open: Option<usize> = None;
    for (key, value) in o.iter() {
        let at = (key.as_ptr() as usize)
            .checked_sub(base + 1)
            .filter(|&at| at < len);
        if let (Some(start), Some(end)) = (open, at) {
            if end >= start + MIN_SPAN {
                cuts.push(start..end);
            }
        }
        open = at.filter(|_| matches!(value.value_type(), ValueType::Object | ValueType::Array));
    }
    if let Some(start) = open.filter(|&s| len >= s + MIN_SPAN) {
        cuts.push(start..len);
    }
}

/// Index format v2's field rule: the words of each scalar value (as the
/// searcher's field extraction prints it) are in the bloom filter. Most of
/// them are words of the raw line already, which the caller indexes anyway:
/// a string's raw bytes equal its value unless the line has a backslash
/// escape, and an integer or a boolean prints as written. So only floats,
/// and every value of a line with escapes, are hashed here.
struct Walk<'t> {
    escaped: bool,
    value: String,
    max_len: usize,
    tokens: &'t mut Vec<u64>,
}

impl Walk<'_> {
    fn object(&mut self, v: Value<'_, '_>, depth: usize) {
        let Some(o) = v.as_object() else { return };
        if depth >= MAX_FIELD_DEPTH {
            return;
        }
        for (_, child) in o.iter() {
            match child.value_type() {
                ValueType::Object => self.object(child, depth + 1),
                ValueType::Array => {}
                ValueType::F64 => self.value_words(child),
                _ if self.escaped => self.value_words(child),
                _ => {}
            }
        }
    }

    fn value_words(&mut self, v: Value<'_, '_>) {
        if scalar_text(v, &mut self.value) && self.value.len() <= self.max_len {
            let tokens = &mut *self.tokens;
            for_each_word_hash(self.value.as_bytes(), |h| tokens.push(h));
        }
    }
}
