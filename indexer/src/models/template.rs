//! App-id templates such as `{kubernetes.namespace}-{service}`.

/// A parsed template: literal text and dotted field paths, alternating.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTemplate {
    pub parts: Vec<TemplatePart>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplatePart {
    Literal(String),
    /// A dotted path, split into segments.
    Field(Vec<String>),
}

impl AppTemplate {
    pub fn parse(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| format!("template {s:?}: '{{' at {open} is never closed"))?;
            let path = &rest[open + 1..open + close];
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(format!("template {s:?}: bad field path {path:?}"));
            }
            parts.push(TemplatePart::Field(
                path.split('.').map(String::from).collect(),
            ));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(format!("template {s:?}: '}}' without '{{'"));
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err("template is empty".into());
        }
        Ok(AppTemplate { parts })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_literals() {
        let t = AppTemplate::parse("{kubernetes.namespace}-{service}").unwrap();
        assert_eq!(
            t.parts,
            vec![
                TemplatePart::Field(vec!["kubernetes".into(), "namespace".into()]),
                TemplatePart::Literal("-".into()),
                TemplatePart::Field(vec!["service".into()]),
            ]
        );
        assert!(AppTemplate::parse("{a").is_err());
        assert!(AppTemplate::parse("a}").is_err());
        assert!(AppTemplate::parse("{a..b}").is_err());
    }
}
