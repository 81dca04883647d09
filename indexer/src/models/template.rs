//! App-id templates such as `{kubernetes.namespace}-{service}`.

use thiserror::Error;

/// Why a template does not parse; `template` is the whole text.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TemplateError {
    #[error("template {template:?}: '{{' at {at} is never closed")]
    Unclosed { template: String, at: usize },
    #[error("template {template:?}: bad field path {path:?}")]
    BadPath { template: String, path: String },
    #[error("template {template:?}: '}}' without '{{'")]
    StrayClose { template: String },
    #[error("template is empty")]
    Empty,
}

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
    pub fn parse(s: &str) -> Result<Self, TemplateError> {
        let mut parts = Vec::new();
        let mut rest = s;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                parts.push(TemplatePart::Literal(rest[..open].to_owned()));
            }
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| TemplateError::Unclosed {
                    template: s.to_owned(),
                    at: open,
                })?;
            let path = &rest[open + 1..open + close];
            if path.is_empty() || path.split('.').any(str::is_empty) {
                return Err(TemplateError::BadPath {
                    template: s.to_owned(),
                    path: path.to_owned(),
                });
            }
            parts.push(TemplatePart::Field(
                path.split('.').map(String::from).collect(),
            ));
            rest = &rest[open + close + 1..];
        }
        if rest.contains('}') {
            return Err(TemplateError::StrayClose {
                template: s.to_owned(),
            });
        }
        if !rest.is_empty() {
            parts.push(TemplatePart::Literal(rest.to_owned()));
        }
        if parts.is_empty() {
            return Err(TemplateError::Empty);
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
        assert!(matches!(
            AppTemplate::parse("{a"),
            Err(TemplateError::Unclosed { at: 0, .. })
        ));
        assert!(matches!(
            AppTemplate::parse("a}"),
            Err(TemplateError::StrayClose { .. })
        ));
        assert!(matches!(
            AppTemplate::parse("{a..b}"),
            Err(TemplateError::BadPath { .. })
        ));
        assert_eq!(AppTemplate::parse(""), Err(TemplateError::Empty));
    }
}
