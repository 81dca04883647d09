//! Where the ruler's results go: alerts to Alertmanager (`POST
//! /api/v2/alerts`, its JSON), recorded series to Prometheus (or Mimir,
//! Cortex, …) by remote write (protobuf, snappy-compressed, version 0.1.0).
//! Both are plain HTTP clients run off the async threads; a failure is
//! logged and counted, and the next evaluation sends again.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::api::responses::labels_json;
use crate::logql::eval::Labels;

/// Remote write's protobuf messages (`prometheus/prompb/remote.proto`),
/// only the fields a writer sets.
mod prompb {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct WriteRequest {
        #[prost(message, repeated, tag = "1")]
        pub timeseries: Vec<TimeSeries>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TimeSeries {
        #[prost(message, repeated, tag = "1")]
        pub labels: Vec<Label>,
        #[prost(message, repeated, tag = "2")]
        pub samples: Vec<Sample>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Label {
        #[prost(string, tag = "1")]
        pub name: String,
        #[prost(string, tag = "2")]
        pub value: String,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Sample {
        #[prost(double, tag = "1")]
        pub value: f64,
        #[prost(int64, tag = "2")]
        pub timestamp: i64,
    }
}

/// One recorded sample: its labels (with `__name__`), value and time (ms).
#[derive(Debug, Clone, PartialEq)]
pub struct Recorded {
    pub labels: Labels,
    pub value: f64,
    pub ts_ms: i64,
}

/// The body of a remote-write request: the protobuf, snappy-compressed
/// (block format, as the protocol says). Labels are sorted by name, as
/// receivers require.
pub fn remote_write_body(samples: &[Recorded]) -> Vec<u8> {
    use prost::Message;
    let req = prompb::WriteRequest {
        timeseries: samples
            .iter()
            .map(|s| {
                let mut labels: Vec<prompb::Label> = s
                    .labels
                    .iter()
                    .map(|(k, v)| prompb::Label {
                        name: k.clone(),
                        value: v.clone(),
                    })
                    .collect();
                labels.sort_by(|a, b| a.name.cmp(&b.name));
                prompb::TimeSeries {
                    labels,
                    samples: vec![prompb::Sample {
                        value: s.value,
                        timestamp: s.ts_ms,
                    }],
                }
            })
            .collect(),
    };
    let raw = req.encode_to_vec();
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .expect("snappy compresses any input")
}

/// An alert as Alertmanager's API v2 takes it.
pub fn alert_json(
    labels: &Labels,
    annotations: &BTreeMap<String, String>,
    starts_at: &str,
    ends_at: &str,
    generator_url: &str,
) -> Value {
    json!({
        "labels": labels_json(labels),
        "annotations": annotations,
        "startsAt": starts_at,
        "endsAt": ends_at,
        "generatorURL": generator_url,
    })
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(10)))
        .build()
        .into()
}

/// POSTs alerts to Alertmanager; the error says why not.
pub fn post_alerts(base: &str, alerts: &[Value]) -> Result<(), String> {
    let url = format!("{}/api/v2/alerts", base.trim_end_matches('/'));
    let body = serde_json::to_vec(alerts).map_err(|e| e.to_string())?;
    let resp = agent()
        .post(&url)
        .header("Content-Type", "application/json")
        .send(&body[..])
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        return Err(format!("{url}: {}", resp.status()));
    }
    Ok(())
}

/// Sends recorded samples by remote write; the error says why not.
pub fn post_remote_write(url: &str, tenant: &str, samples: &[Recorded]) -> Result<(), String> {
    let body = remote_write_body(samples);
    let mut resp = agent()
        .post(url)
        .header("Content-Type", "application/x-protobuf")
        .header("Content-Encoding", "snappy")
        .header("X-Prometheus-Remote-Write-Version", "0.1.0")
        .header("X-Scope-OrgID", tenant)
        .send(&body[..])
        .map_err(|e| format!("{url}: {e}"))?;
    if !resp.status().is_success() {
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        return Err(format!("{url}: {} {}", resp.status(), text.trim()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remote_write_body_decodes_back_with_sorted_labels() {
        use prost::Message;
        let body = remote_write_body(&[Recorded {
            labels: vec![
                ("level".into(), "error".into()),
                ("__name__".into(), "app:lines:count".into()),
            ],
            value: 42.5,
            ts_ms: 1_700_000_000_000,
        }]);
        let raw = snap::raw::Decoder::new().decompress_vec(&body).unwrap();
        let req = prompb::WriteRequest::decode(&raw[..]).unwrap();
        assert_eq!(req.timeseries.len(), 1);
        let ts = &req.timeseries[0];
        let names: Vec<&str> = ts.labels.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(names, ["__name__", "level"]);
        assert_eq!(ts.samples[0].value, 42.5);
        assert_eq!(ts.samples[0].timestamp, 1_700_000_000_000);
    }
}
