//! Loki's patterns: literal text and `<name>` captures (`<_>` captures
//! nothing), as the `pattern` parser and the `|>` / `!>` line filters use
//! them. Matching follows Loki's matcher: a leading literal must start the
//! line; each capture runs to the next occurrence of the literal after
//! it; the last capture takes the rest of the line.

/// One piece of a pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    Literal(String),
    /// A capture, `None` for `<_>`.
    Capture(Option<String>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pattern {
    nodes: Vec<Node>,
}

impl Pattern {
    /// Reads `text`; `Err` says why it is not a pattern: no capture at
    /// all, two captures in a row (nothing tells where one ends), or a
    /// capture name that is not a label name.
    pub fn parse(text: &str) -> Result<Pattern, String> {
        let mut nodes = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while !rest.is_empty() {
            if let Some(name) = capture_at(rest) {
                if !literal.is_empty() {
                    nodes.push(Node::Literal(std::mem::take(&mut literal)));
                }
                if matches!(nodes.last(), Some(Node::Capture(_))) {
                    return Err(format!(
                        "consecutive captures are not allowed in pattern {text:?}"
                    ));
                }
                rest = &rest[name.len() + 2..];
                nodes.push(Node::Capture((name != "_").then(|| name.to_owned())));
            } else {
                let c = rest.chars().next().unwrap_or_default();
                literal.push(c);
                rest = &rest[c.len_utf8()..];
            }
        }
        if !literal.is_empty() {
            nodes.push(Node::Literal(literal));
        }
        let pattern = Pattern { nodes };
        if !pattern.nodes.iter().any(|n| matches!(n, Node::Capture(_))) {
            return Err(format!(
                "pattern {text:?} has no capture, like <name> or <_>"
            ));
        }
        Ok(pattern)
    }

    /// A pattern for a line filter (`|> "…"`), which needs no capture: a
    /// pattern of only text matches a line that is exactly that text.
    pub fn parse_filter(text: &str) -> Result<Pattern, String> {
        match Pattern::parse(text) {
            Err(e) if e.ends_with("has no capture, like <name> or <_>") => Ok(Pattern {
                nodes: if text.is_empty() {
                    Vec::new()
                } else {
                    vec![Node::Literal(text.to_owned())]
                },
            }),
            other => other,
        }
    }

    /// Whether the pattern names at least one capture (the parser needs
    /// one; a line filter does not).
    pub fn has_named_capture(&self) -> bool {
        self.nodes
            .iter()
            .any(|n| matches!(n, Node::Capture(Some(_))))
    }

    /// The named captures of `line`, in order; those past a literal the
    /// line lacks are missing. `None` if a leading literal does not start
    /// the line.
    pub fn captures<'a>(&'a self, line: &'a str) -> Option<Vec<(&'a str, &'a str)>> {
        let mut out = Vec::new();
        let mut rest = line;
        let mut nodes = &self.nodes[..];
        if let Some(Node::Literal(l)) = nodes.first() {
            rest = rest.strip_prefix(l.as_str())?;
            nodes = &nodes[1..];
        }
        while let Some(Node::Capture(name)) = nodes.first() {
            let Some(Node::Literal(l)) = nodes.get(1) else {
                // The last capture takes the rest.
                if let Some(n) = name {
                    out.push((n.as_str(), rest));
                }
                return Some(out);
            };
            nodes = &nodes[2..];
            let Some(i) = rest.find(l.as_str()) else {
                if let Some(n) = name {
                    out.push((n.as_str(), rest));
                }
                return Some(out);
            };
            if let Some(n) = name {
                out.push((n.as_str(), &rest[..i]));
            }
            rest = &rest[i + l.len()..];
        }
        Some(out)
    }

    /// Whether `line` matches the whole pattern: every literal found in
    /// order, and nothing left after a trailing literal.
    pub fn test(&self, line: &str) -> bool {
        let mut rest = line;
        let mut nodes = &self.nodes[..];
        if let Some(Node::Literal(l)) = nodes.first() {
            let Some(r) = rest.strip_prefix(l.as_str()) else {
                return false;
            };
            rest = r;
            nodes = &nodes[1..];
        }
        while let Some(Node::Capture(_)) = nodes.first() {
            let Some(Node::Literal(l)) = nodes.get(1) else {
                return true;
            };
            nodes = &nodes[2..];
            let Some(i) = rest.find(l.as_str()) else {
                return false;
            };
            rest = &rest[i + l.len()..];
        }
        rest.is_empty()
    }
}

/// The name of a capture `<name>` at the start of `s`: `_` or a label
/// name.
fn capture_at(s: &str) -> Option<&str> {
    let inner = s.strip_prefix('<')?;
    let end = inner.find('>')?;
    let name = &inner[..end];
    let valid = !name.is_empty()
        && name
            .chars()
            .enumerate()
            .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
    valid.then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loki's documentation's example, on an Nginx access line.
    #[test]
    fn captures_run_to_the_next_literal() {
        let p = Pattern::parse(
            r#"<ip> - - <_> "<method> <uri> <_>" <status> <size> <_> "<agent>" <_>"#,
        )
        .unwrap();
        let line = r#"10.0.0.1 - - [06/Dec/2026:01:02:03 +0000] "GET /cart HTTP/1.1" 503 1024 "-" "curl/8.0" "-""#;
        assert_eq!(
            p.captures(line).unwrap(),
            [
                ("ip", "10.0.0.1"),
                ("method", "GET"),
                ("uri", "/cart"),
                ("status", "503"),
                ("size", "1024"),
                ("agent", "curl/8.0"),
            ]
        );
        assert!(p.test(line));
    }

    #[test]
    fn a_missing_literal_ends_the_captures_and_a_leading_one_must_start_the_line() {
        let p = Pattern::parse("level=<level> msg=<msg>").unwrap();
        assert_eq!(
            p.captures("level=warn msg=disk full").unwrap(),
            [("level", "warn"), ("msg", "disk full")]
        );
        // No " msg=": the level runs to the end.
        assert_eq!(p.captures("level=warn").unwrap(), [("level", "warn")]);
        assert!(!p.test("level=warn"));
        assert_eq!(p.captures("x level=warn"), None);
        assert!(!p.test("x level=warn"));
        // A trailing literal must end the line for a filter.
        let q = Pattern::parse("<_> error <_> done").unwrap();
        assert!(q.test("disk error 42 done"));
        assert!(!q.test("disk error 42 done later"));
    }

    #[test]
    fn bad_patterns_say_why() {
        for (p, says) in [("no captures", "no capture"), ("<a><b>", "consecutive")] {
            assert!(Pattern::parse(p).unwrap_err().contains(says), "{p}");
        }
        // `<1a>` is not a capture: it is literal text.
        assert!(Pattern::parse("<1a> <_>").is_ok());
        assert!(!Pattern::parse("<_> <_>").unwrap().has_named_capture());
    }
}
