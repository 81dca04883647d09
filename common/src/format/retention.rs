//! The retention cut-off of a tenant: `tenant=<t>/_retention.json`.
//!
//! Deleting an hour from object storage takes one request per object, so
//! a reader listing it meanwhile could see half of it. Retention therefore
//! publishes the cut-off first and deletes after a grace period: readers
//! skip every hour it covers, whole, from the moment they read it. A crash
//! part-way through deleting leaves hours the cut-off already hides, and
//! the next pass deletes the rest.
//!
//! A cut-off only ever hides whole hours: an hour is gone for an app when
//! the hour ended at or before that app's cut-off.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::layout::{encode_component, NS_PER_HOUR};

pub const RETENTION_VERSION: u32 = 1;
const MARKER_FILE: &str = "_retention.json";

/// The published cut-offs of one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cutoffs {
    pub version: u32,
    /// When the retention pass wrote it, in ns since the Unix epoch.
    pub written_ns: i64,
    /// Hours that ended at or before this are gone, for every app that
    /// `apps` does not name.
    pub before_ns: i64,
    /// Apps whose cut-off differs from `before_ns`, by app name.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub apps: BTreeMap<String, i64>,
}

impl Cutoffs {
    /// The cut-off of `app`.
    pub fn before(&self, app: &str) -> i64 {
        self.apps.get(app).copied().unwrap_or(self.before_ns)
    }

    /// The earliest cut-off of any app: hours ending at or before it are
    /// gone for every app, so a reader need not even list them.
    pub fn all_before(&self) -> i64 {
        self.apps.values().copied().fold(self.before_ns, i64::min)
    }

    /// Whether hour `hour` (hours since the epoch) of `app` is gone.
    pub fn hides(&self, hour: i64, app: &str) -> bool {
        hour_end(hour) <= self.before(app)
    }

    /// Whether hour `hour` is gone for apps `apps` does not name.
    pub fn hides_default(&self, hour: i64) -> bool {
        hour_end(hour) <= self.before_ns
    }

    /// Whether hour `hour` is gone for some app.
    pub fn hides_any(&self, hour: i64) -> bool {
        let latest = self.apps.values().copied().fold(self.before_ns, i64::max);
        hour_end(hour) <= latest
    }

    /// Whether hour `hour` is gone for every app.
    pub fn hides_hour(&self, hour: i64) -> bool {
        hour_end(hour) <= self.all_before()
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Plain strings and integers: serialising cannot fail.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Decodes a marker; a version this reader does not know is refused.
    pub fn from_json(bytes: &[u8]) -> Result<Self, serde_json::Error> {
        let c: Cutoffs = serde_json::from_slice(bytes)?;
        if c.version != RETENTION_VERSION {
            return Err(serde::de::Error::custom(format!(
                "unsupported retention marker version {}",
                c.version
            )));
        }
        Ok(c)
    }
}

/// The first nanosecond after `hour`, saturating.
fn hour_end(hour: i64) -> i64 {
    hour.saturating_add(1).saturating_mul(NS_PER_HOUR)
}

/// `tenant=<t>/_retention.json`: beside the tenant's day folders, so a
/// copy of its days (an archive) does not carry it.
pub fn marker_key(tenant: &str) -> String {
    format!("tenant={}/{MARKER_FILE}", encode_component(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cutoffs() -> Cutoffs {
        Cutoffs {
            version: RETENTION_VERSION,
            written_ns: 7,
            before_ns: 10 * NS_PER_HOUR,
            apps: BTreeMap::from([("audit".to_owned(), 2 * NS_PER_HOUR)]),
        }
    }

    #[test]
    fn an_hour_is_hidden_only_once_it_ended_at_the_cutoff() {
        let c = cutoffs();
        assert!(c.hides(9, "web"), "hour 9 ends at 10h");
        assert!(!c.hides(10, "web"));
        assert!(c.hides(1, "audit"));
        assert!(!c.hides(2, "audit"), "audit keeps longer");
        assert!(c.hides_hour(1));
        assert!(!c.hides_hour(5), "audit still has hour 5");
        assert!(!c.hides(i64::MAX, "web"), "no overflow");
    }

    #[test]
    fn markers_round_trip_and_refuse_other_versions() {
        let c = cutoffs();
        assert_eq!(Cutoffs::from_json(&c.to_json()).unwrap(), c);
        let mut other = c.clone();
        other.version = 2;
        assert!(Cutoffs::from_json(&other.to_json()).is_err());
        assert!(Cutoffs::from_json(b"{\"version\":1}").is_err());
        assert!(Cutoffs::from_json(b"\xff").is_err());
        assert_eq!(marker_key("a/b"), "tenant=a%2Fb/_retention.json");
    }
}
