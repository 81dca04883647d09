//! Rule files in Loki's (Prometheus-style) format, and where they live:
//! `<rules_dir>/<tenant>/<namespace>.yaml` per tenant, and
//! `<rules_dir>/<namespace>.yaml` for the default tenant.
//!
//! ```yaml
//! groups:
//!   - name: checkout
//!     interval: 1m
//!     rules:
//!       - alert: HighErrorRate
//!         expr: sum by (level) (count_over_time({__app__="checkout"} |= "error" [5m])) > 10
//!         for: 2m
//!         labels: { severity: page }
//!         annotations: { summary: "{{ $value }} errors in 5 minutes" }
//!       - record: checkout:lines:rate5m
//!         expr: sum by (level) (rate({__app__="checkout"}[5m]))
//! ```

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::logql::{self, MetricExpr, Query};
use crate::time::parse_duration;

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleFile {
    pub groups: Vec<RuleGroup>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleGroup {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    pub rules: Vec<RuleDef>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RuleDef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alert: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub record: Option<String>,
    pub expr: String,
    #[serde(default, rename = "for", skip_serializing_if = "Option::is_none")]
    pub for_: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

#[derive(Debug, Error)]
pub enum RuleError {
    #[error("reading {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// A checked rule, ready to evaluate.
#[derive(Debug, Clone)]
pub struct Rule {
    pub def: RuleDef,
    pub expr: MetricExpr,
    /// `for`, in ns (0 when absent).
    pub for_ns: i64,
}

impl Rule {
    pub fn name(&self) -> &str {
        self.def
            .alert
            .as_deref()
            .or(self.def.record.as_deref())
            .unwrap_or_default()
    }

    pub fn is_alert(&self) -> bool {
        self.def.alert.is_some()
    }
}

/// A checked group of one tenant's namespace (file).
#[derive(Debug, Clone)]
pub struct Group {
    pub tenant: String,
    pub namespace: String,
    pub file: String,
    pub def: RuleGroup,
    pub interval_ns: i64,
    pub rules: Vec<Rule>,
}

fn valid_metric_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_' || c == b':')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_' || c == b':')
}

fn valid_label_name(s: &str) -> bool {
    let mut b = s.bytes();
    matches!(b.next(), Some(c) if c.is_ascii_alphabetic() || c == b'_')
        && b.all(|c| c.is_ascii_alphanumeric() || c == b'_')
}

/// Checks one file's text: every rule an alert or a record (not both),
/// its expression a LogQL metric query, durations and names valid.
pub fn parse_file(
    tenant: &str,
    namespace: &str,
    path: &str,
    text: &str,
    default_interval_ns: i64,
) -> Result<Vec<Group>, RuleError> {
    let bad = |message: String| RuleError::Invalid {
        path: path.to_owned(),
        message,
    };
    let file: RuleFile =
        serde_yaml_ng::from_str(text).map_err(|e| bad(format!("not a rule file: {e}")))?;
    let mut groups = Vec::new();
    let mut names = std::collections::BTreeSet::new();
    for g in file.groups {
        if g.name.is_empty() || !names.insert(g.name.clone()) {
            return Err(bad(format!("group name {:?} is empty or repeated", g.name)));
        }
        let interval_ns = match &g.interval {
            None => default_interval_ns,
            Some(i) => parse_duration(i)
                .filter(|&d| d > 0)
                .ok_or_else(|| bad(format!("group {}: invalid interval {i:?}", g.name)))?,
        };
        let mut rules = Vec::new();
        for r in &g.rules {
            let what = format!(
                "group {}, rule {:?}",
                g.name,
                r.alert.as_ref().or(r.record.as_ref())
            );
            match (&r.alert, &r.record) {
                (Some(a), None) if !a.is_empty() => {}
                (None, Some(rec)) if valid_metric_name(rec) => {
                    if r.for_.is_some() || !r.annotations.is_empty() {
                        return Err(bad(format!(
                            "{what}: a recording rule has no for or annotations"
                        )));
                    }
                }
                _ => {
                    return Err(bad(format!(
                        "{what}: a rule needs exactly one of alert or record (a valid metric name)"
                    )))
                }
            }
            if let Some(l) = r.labels.keys().find(|l| !valid_label_name(l)) {
                return Err(bad(format!("{what}: invalid label name {l:?}")));
            }
            let expr = match logql::parse(&r.expr) {
                Ok(Query::Metric(m)) => m,
                Ok(Query::Log(_)) => {
                    return Err(bad(format!(
                        "{what}: expr must be a metric query, not a log query"
                    )))
                }
                Err(e) => return Err(bad(format!("{what}: {e}"))),
            };
            let for_ns = match &r.for_ {
                None => 0,
                Some(f) => parse_duration(f)
                    .filter(|&d| d >= 0)
                    .ok_or_else(|| bad(format!("{what}: invalid for {f:?}")))?,
            };
            rules.push(Rule {
                def: r.clone(),
                expr,
                for_ns,
            });
        }
        groups.push(Group {
            tenant: tenant.to_owned(),
            namespace: namespace.to_owned(),
            file: path.to_owned(),
            interval_ns,
            def: g,
            rules,
        });
    }
    Ok(groups)
}

/// Every group under `dir`: files directly in it belong to
/// `default_tenant`, files in a subfolder to the tenant it is named after.
/// A file that does not check out fails the whole load, so a bad rule is
/// seen at start, not skipped.
pub fn load_dir(
    dir: &Path,
    default_tenant: &str,
    default_interval_ns: i64,
) -> Result<Vec<Group>, RuleError> {
    let io = |p: &Path, source| RuleError::Io {
        path: p.display().to_string(),
        source,
    };
    let mut out = Vec::new();
    let load = |tenant: &str, folder: &Path, out: &mut Vec<Group>| -> Result<(), RuleError> {
        let mut files: Vec<_> = std::fs::read_dir(folder)
            .map_err(|e| io(folder, e))?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect();
        files.sort();
        for f in files {
            let text = std::fs::read_to_string(&f).map_err(|e| io(&f, e))?;
            let namespace = f
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_default();
            out.extend(parse_file(
                tenant,
                &namespace,
                &f.display().to_string(),
                &text,
                default_interval_ns,
            )?);
        }
        Ok(())
    };
    load(default_tenant, dir, &mut out)?;
    let mut tenants: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.is_dir())
        .collect();
    tenants.sort();
    for t in tenants {
        let tenant = t
            .file_name()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_default();
        if !crate::auth::valid_tenant(&tenant) {
            return Err(RuleError::Invalid {
                path: t.display().to_string(),
                message: "a rule folder is named after its tenant, which this is not".into(),
            });
        }
        load(&tenant, &t, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
groups:
  - name: web
    interval: 30s
    rules:
      - alert: ManyErrors
        expr: sum by (level) (count_over_time({__app__="web"} |= "error" [5m])) > 10
        for: 2m
        labels: { severity: page }
        annotations: { summary: "{{ $value }} errors" }
      - record: web:lines:rate5m
        expr: sum(rate({__app__="web"}[5m]))
"#;

    #[test]
    fn a_rule_file_parses_with_its_durations() {
        let g = parse_file("acme", "web", "web.yaml", GOOD, 60_000_000_000).unwrap();
        assert_eq!(g.len(), 1);
        assert_eq!(g[0].interval_ns, 30_000_000_000);
        assert_eq!(g[0].rules.len(), 2);
        assert!(g[0].rules[0].is_alert());
        assert_eq!(g[0].rules[0].for_ns, 120_000_000_000);
        assert_eq!(g[0].rules[1].name(), "web:lines:rate5m");
        assert_eq!(g[0].rules[1].for_ns, 0);
    }

    #[test]
    fn bad_rules_are_refused_with_their_place() {
        for (text, why) in [
            (
                GOOD.replace("alert: ManyErrors", "alert: ManyErrors\n        record: x"),
                "exactly one",
            ),
            (
                GOOD.replace("sum(rate({__app__=\"web\"}[5m]))", "'{__app__=\"web\"}'"),
                "not a log query",
            ),
            (GOOD.replace("for: 2m", "for: soon"), "invalid for"),
            (GOOD.replace("web:lines:rate5m", "web lines"), "exactly one"),
            (
                GOOD.replace("interval: 30s", "interval: 0s"),
                "invalid interval",
            ),
            (
                GOOD.replace("severity: page", "bad-name: page"),
                "invalid label name",
            ),
            (GOOD.replace("expr: sum(", "expr: sum(("), "group web"),
            ("groups: [".to_owned(), "not a rule file"),
        ] {
            let e = parse_file("acme", "web", "web.yaml", &text, 60_000_000_000)
                .unwrap_err()
                .to_string();
            assert!(e.contains(why) && e.starts_with("web.yaml"), "{why}: {e}");
        }
    }
}
