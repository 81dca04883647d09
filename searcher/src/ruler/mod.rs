//! The ruler: evaluates LogQL alerting and recording rules on a timer, as
//! Loki's ruler does, with the searcher's own engine, so a rule's `expr`
//! means exactly what the same query means in Explore.
//!
//! - `rules`: the rule files (Prometheus-style YAML), per tenant;
//! - `notify`: alerts to Alertmanager, recorded samples by remote write;
//! - this file: the evaluation loop and the alert states (inactive,
//!   pending for `for`, firing, resolved), read by the rules and alerts
//!   APIs (`api/rules.rs`).
//!
//! Each group runs on its own task every `interval`, its rules in order,
//! each as an instant query at the evaluation time. Rules read stored
//! blocks, so a line counts once its block is stored: an alert fires at
//! most the indexer's flush interval plus the group's interval (plus
//! `for`) after its lines are produced (`docs/DESIGN.md`, "Ruler").

pub mod notify;
pub mod rules;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::SecondsFormat;
use regex::Regex;
use serde_json::{json, Value};
use skidder_common::format::layout::now_ns;

use crate::api::responses::{labels_json, value_str};
use crate::engine::Engine;
use crate::logql::eval::Labels;
use notify::{alert_json, post_alerts, post_remote_write, Recorded};
use rules::{load_dir, Group, Rule, RuleError};

/// `[ruler]` in the searcher's config.
#[derive(Debug, Clone)]
pub struct RulerConfig {
    pub rules_dir: PathBuf,
    pub default_tenant: String,
    /// Alertmanager's base URL (`http://alertmanager:9093`); none: alerts
    /// are only shown by the alerts API.
    pub alertmanager_url: Option<String>,
    /// Where recorded samples go (`http://prometheus:9090/api/v1/write`).
    pub remote_write_url: Option<String>,
    /// For groups that name no interval.
    pub evaluation_interval: Duration,
    /// The base of each alert's `generatorURL` (a Grafana Explore link).
    pub external_url: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertState {
    Pending,
    Firing,
}

impl AlertState {
    pub fn as_str(self) -> &'static str {
        match self {
            AlertState::Pending => "pending",
            AlertState::Firing => "firing",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Alert {
    pub labels: Labels,
    pub annotations: BTreeMap<String, String>,
    pub state: AlertState,
    pub active_at_ns: i64,
    pub value: f64,
}

/// What the last evaluation of a rule did.
#[derive(Debug, Clone, Default)]
pub struct RuleStatus {
    pub health: &'static str,
    pub last_error: String,
    pub last_evaluation_ns: i64,
    pub evaluation_secs: f64,
    /// By the alert's label set.
    pub alerts: BTreeMap<Labels, Alert>,
}

pub struct Ruler {
    cfg: RulerConfig,
    pub groups: Vec<Group>,
    /// `status[g][r]`: group `g`'s rule `r`.
    status: Mutex<Vec<Vec<RuleStatus>>>,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for Ruler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ruler")
            .field("groups", &self.groups.len())
            .finish()
    }
}

fn rfc3339(ns: i64) -> String {
    crate::time::rfc3339(ns, SecondsFormat::Millis)
}

/// Fills `{{ $value }}` and `{{ $labels.name }}` in an annotation, the
/// two forms rule files use most; anything else is left as written.
fn expand(template: &str, labels: &Labels, value: f64) -> String {
    static VALUE: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    static LABEL: std::sync::OnceLock<Regex> = std::sync::OnceLock::new();
    let value_re = VALUE.get_or_init(|| Regex::new(r"\{\{\s*\$value\s*\}\}").expect("valid"));
    let label_re = LABEL.get_or_init(|| {
        Regex::new(r"\{\{\s*\$labels\.([a-zA-Z_][a-zA-Z0-9_]*)\s*\}\}").expect("valid")
    });
    let s = value_re.replace_all(template, value.to_string().as_str());
    label_re
        .replace_all(&s, |c: &regex::Captures| {
            labels
                .iter()
                .find(|(k, _)| k == &c[1])
                .map(|(_, v)| v.clone())
                .unwrap_or_default()
        })
        .into_owned()
}

impl Ruler {
    /// Loads the rules (a bad file is an error here, not at evaluation)
    /// and starts one task per group on the current runtime.
    pub fn start(engine: Arc<Engine>, cfg: RulerConfig) -> Result<Arc<Ruler>, RuleError> {
        let interval = i64::try_from(cfg.evaluation_interval.as_nanos()).unwrap_or(i64::MAX);
        let groups = load_dir(&cfg.rules_dir, &cfg.default_tenant, interval)?;
        let status = groups
            .iter()
            .map(|g| {
                g.rules
                    .iter()
                    .map(|_| RuleStatus {
                        health: "unknown",
                        ..Default::default()
                    })
                    .collect()
            })
            .collect();
        let ruler = Arc::new(Ruler {
            cfg,
            groups,
            status: Mutex::new(status),
            engine,
        });
        tracing::info!(groups = ruler.groups.len(), "ruler started");
        for gi in 0..ruler.groups.len() {
            let r = ruler.clone();
            tokio::spawn(async move { r.run_group(gi).await });
        }
        Ok(ruler)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<RuleStatus>>> {
        self.status.lock().unwrap_or_else(|p| p.into_inner())
    }

    async fn run_group(self: Arc<Self>, gi: usize) {
        let g = &self.groups[gi];
        let every = Duration::from_nanos(g.interval_ns.max(1) as u64);
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.evaluate_group(gi).await;
        }
    }

    /// One evaluation of group `gi`, at the current time.
    pub async fn evaluate_group(&self, gi: usize) {
        let g = &self.groups[gi];
        let t = now_ns();
        let mut recorded = Vec::new();
        let mut to_send = Vec::new();
        for (ri, rule) in g.rules.iter().enumerate() {
            let started = std::time::Instant::now();
            let result = self
                .engine
                .metric(&g.tenant, &rule.expr, t, t, 1, true)
                .await;
            let mut st = self.lock();
            let s = &mut st[gi][ri];
            s.last_evaluation_ns = t;
            s.evaluation_secs = started.elapsed().as_secs_f64();
            let samples: Vec<(Labels, f64)> = match result {
                Ok((m, _)) => {
                    s.health = "ok";
                    s.last_error.clear();
                    m.into_iter()
                        .filter_map(|(l, p)| Some((l, *p.get(&0)?)))
                        .collect()
                }
                Err(e) => {
                    s.health = "err";
                    s.last_error = e.to_string();
                    tracing::warn!(tenant = %g.tenant, group = %g.def.name, rule = rule.name(), error = %e, "rule evaluation failed");
                    continue;
                }
            };
            if let Some(limit) = g.def.limit.filter(|&l| l > 0 && samples.len() > l) {
                s.health = "err";
                s.last_error = format!(
                    "{} series exceed the group's limit of {limit}",
                    samples.len()
                );
                continue;
            }
            if rule.is_alert() {
                to_send.extend(self.update_alerts(g, rule, s, &samples, t));
            } else {
                recorded.extend(samples.into_iter().map(|(l, v)| Recorded {
                    labels: series_labels(l, rule, "__name__", rule.name()),
                    value: v,
                    ts_ms: t / 1_000_000,
                }));
            }
        }
        let metrics = self.engine.metrics().clone();
        let (am, rw, tenant) = (
            self.cfg.alertmanager_url.clone(),
            self.cfg.remote_write_url.clone(),
            g.tenant.clone(),
        );
        if (am.is_none() || to_send.is_empty()) && (rw.is_none() || recorded.is_empty()) {
            return;
        }
        let sent = tokio::task::spawn_blocking(move || {
            let mut errors = Vec::new();
            if let (Some(url), false) = (&am, to_send.is_empty()) {
                match post_alerts(url, &to_send) {
                    Ok(()) => metrics
                        .ruler_sent
                        .with_label_values(&["alertmanager", "ok"])
                        .inc(),
                    Err(e) => {
                        metrics
                            .ruler_sent
                            .with_label_values(&["alertmanager", "failed"])
                            .inc();
                        errors.push(e);
                    }
                }
            }
            if let (Some(url), false) = (&rw, recorded.is_empty()) {
                match post_remote_write(url, &tenant, &recorded) {
                    Ok(()) => metrics
                        .ruler_sent
                        .with_label_values(&["remote_write", "ok"])
                        .inc(),
                    Err(e) => {
                        metrics
                            .ruler_sent
                            .with_label_values(&["remote_write", "failed"])
                            .inc();
                        errors.push(e);
                    }
                }
            }
            errors
        })
        .await;
        for e in sent.unwrap_or_default() {
            tracing::warn!(group = %g.def.name, error = %e, "ruler: sending failed");
        }
    }

    /// Moves a rule's alerts on by one evaluation; returns what to send to
    /// Alertmanager: every firing alert, and those just resolved.
    fn update_alerts(
        &self,
        g: &Group,
        rule: &Rule,
        s: &mut RuleStatus,
        samples: &[(Labels, f64)],
        t: i64,
    ) -> Vec<Value> {
        let mut seen = std::collections::BTreeSet::new();
        for (l, v) in samples {
            let labels = series_labels(l.clone(), rule, "alertname", rule.name());
            seen.insert(labels.clone());
            let annotations = rule
                .def
                .annotations
                .iter()
                .map(|(k, tpl)| (k.clone(), expand(tpl, &labels, *v)))
                .collect();
            let a = s.alerts.entry(labels.clone()).or_insert_with(|| Alert {
                labels,
                annotations: BTreeMap::new(),
                state: AlertState::Pending,
                active_at_ns: t,
                value: *v,
            });
            a.value = *v;
            a.annotations = annotations;
            if a.state == AlertState::Pending && t - a.active_at_ns >= rule.for_ns {
                a.state = AlertState::Firing;
            }
        }
        // Valid for four intervals; each evaluation sends it again.
        let ends = rfc3339(t + 4 * g.interval_ns.max(15_000_000_000));
        let url = format!(
            "{}/explore?expr={}",
            self.cfg.external_url.trim_end_matches('/'),
            form_urlencoded::byte_serialize(rule.def.expr.as_bytes()).collect::<String>()
        );
        let mut out = Vec::new();
        s.alerts.retain(|labels, a| {
            if seen.contains(labels) {
                if a.state == AlertState::Firing {
                    out.push(alert_json(
                        labels,
                        &a.annotations,
                        &rfc3339(a.active_at_ns),
                        &ends,
                        &url,
                    ));
                }
                return true;
            }
            if a.state == AlertState::Firing {
                // Resolved: sent once with its end, then forgotten.
                out.push(alert_json(
                    labels,
                    &a.annotations,
                    &rfc3339(a.active_at_ns),
                    &rfc3339(t),
                    &url,
                ));
            }
            false
        });
        out
    }

    /// `/prometheus/api/v1/rules`'s groups for `tenant`, with `type`
    /// (`alert`/`record`) choosing the rules, as Prometheus filters them.
    pub fn rules_json(&self, tenant: &str, only: Option<&str>) -> Value {
        let st = self.lock();
        let groups: Vec<Value> = self
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.tenant == tenant)
            .map(|(gi, g)| {
                let rules: Vec<Value> = g
                    .rules
                    .iter()
                    .enumerate()
                    .filter(|(_, r)| match only {
                        Some("alert") => r.is_alert(),
                        Some("record") => !r.is_alert(),
                        _ => true,
                    })
                    .map(|(ri, r)| rule_json(r, &st[gi][ri]))
                    .collect();
                json!({
                    "name": g.def.name,
                    "file": g.namespace,
                    "interval": g.interval_ns as f64 / 1e9,
                    "limit": g.def.limit.unwrap_or(0),
                    "rules": rules,
                    "lastEvaluation": rfc3339(st[gi].iter().map(|s| s.last_evaluation_ns).max().unwrap_or(0)),
                    "evaluationTime": st[gi].iter().map(|s| s.evaluation_secs).sum::<f64>(),
                })
            })
            .collect();
        json!({"status": "success", "data": {"groups": groups}})
    }

    /// `/prometheus/api/v1/alerts` for `tenant`: pending and firing.
    pub fn alerts_json(&self, tenant: &str) -> Value {
        let st = self.lock();
        let mut alerts = Vec::new();
        for (gi, g) in self
            .groups
            .iter()
            .enumerate()
            .filter(|(_, g)| g.tenant == tenant)
        {
            for ri in 0..g.rules.len() {
                alerts.extend(st[gi][ri].alerts.values().map(alert_state_json));
            }
        }
        json!({"status": "success", "data": {"alerts": alerts}})
    }

    /// `/loki/api/v1/rules` for `tenant`: its rule files by namespace, as
    /// YAML; `None` if it has none.
    pub fn rules_yaml(&self, tenant: &str) -> Option<String> {
        let mut by_ns: BTreeMap<&str, Vec<&rules::RuleGroup>> = BTreeMap::new();
        for g in self.groups.iter().filter(|g| g.tenant == tenant) {
            by_ns.entry(&g.namespace).or_default().push(&g.def);
        }
        if by_ns.is_empty() {
            return None;
        }
        serde_yaml_ng::to_string(&by_ns).ok()
    }
}

/// A sample's labels with the rule's labels over them and `name_label`
/// (`__name__` or `alertname`) set, sorted.
fn series_labels(mut l: Labels, rule: &Rule, name_label: &str, name: &str) -> Labels {
    l.retain(|(k, _)| k != name_label && !rule.def.labels.contains_key(k));
    l.extend(rule.def.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    l.push((name_label.to_owned(), name.to_owned()));
    l.sort();
    l
}

fn alert_state_json(a: &Alert) -> Value {
    json!({
        "labels": labels_json(&a.labels),
        "annotations": a.annotations,
        "state": a.state.as_str(),
        "activeAt": rfc3339(a.active_at_ns),
        "value": value_str(a.value),
    })
}

fn rule_json(r: &Rule, s: &RuleStatus) -> Value {
    let mut v = json!({
        "name": r.name(),
        "query": r.def.expr,
        "labels": r.def.labels,
        "health": s.health,
        "lastError": s.last_error,
        "lastEvaluation": rfc3339(s.last_evaluation_ns),
        "evaluationTime": s.evaluation_secs,
    });
    if r.is_alert() {
        let state = if s.alerts.values().any(|a| a.state == AlertState::Firing) {
            "firing"
        } else if s.alerts.is_empty() {
            "inactive"
        } else {
            "pending"
        };
        v["type"] = json!("alerting");
        v["state"] = json!(state);
        v["duration"] = json!(r.for_ns as f64 / 1e9);
        v["annotations"] = json!(r.def.annotations);
        v["alerts"] = Value::Array(s.alerts.values().map(alert_state_json).collect());
    } else {
        v["type"] = json!("recording");
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_fill_in_value_and_labels() {
        let l = vec![("level".to_owned(), "error".to_owned())];
        assert_eq!(
            expand(
                "{{ $value }} {{$labels.level}} lines, {{ $labels.none }}!",
                &l,
                12.0
            ),
            "12 error lines, !"
        );
    }
}
