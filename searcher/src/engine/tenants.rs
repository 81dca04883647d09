//! Why an answer is empty. A query for a tenant that has nothing at all
//! in the store almost always means the searcher and the indexer disagree
//! on the tenant (a searcher on its `default` tenant over a store an
//! indexer filled as `demo`), not that nothing matched. An empty answer
//! checks for that with one listing, and says so. A store with no
//! tenant's data at all is new, not misconfigured: no warning.

use skidder_common::format::layout::{decode_component, tenant_prefix};
use skidder_common::storage::list_folders;

use super::Engine;

/// Tenants named in a warning, at most.
const NAMED: usize = 10;

impl Engine {
    /// After an empty answer for `tenant`: a warning if the store holds
    /// no data for that tenant at all but does for others, naming them.
    /// It is counted and logged; the caller decides whether the client may
    /// see it (not when tenancy is on: other tenants' names are private).
    /// A store fault here only loses the hint.
    pub async fn no_data_warning(&self, tenant: &str) -> Option<String> {
        let folders = match list_folders(&*self.stores.tenants, "tenant=").await {
            Ok(f) => f,
            Err(error) => {
                tracing::debug!(%error, "could not list tenants to explain an empty answer");
                return None;
            }
        };
        let own = tenant_prefix(tenant);
        if folders.contains(&own) {
            return None;
        }
        let others: Vec<String> = folders
            .iter()
            .filter_map(|f| decode_component(f.strip_prefix("tenant=")?.trim_end_matches('/')))
            .collect();
        // An empty store is a new one, not a mismatch: nothing to say.
        if others.is_empty() {
            return None;
        }
        let mut known = others[..others.len().min(NAMED)].join(", ");
        if others.len() > NAMED {
            known.push_str(&format!(" and {} more", others.len() - NAMED));
        }
        let warning = format!(
            "tenant \"{tenant}\" has no data in this store (tenants with data: {known}); \
             check the searcher's default_tenant (or X-Scope-OrgID, or --tenant) \
             against the indexer's parse.tenant"
        );
        self.metrics.no_data_tenant_answers.inc();
        tracing::warn!(tenant, "{warning}");
        Some(warning)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;
    use skidder_common::storage::{LocalStore, ObjectStore};

    use super::*;
    use crate::engine::EngineConfig;
    use crate::metrics::Metrics;

    #[tokio::test]
    async fn warns_of_a_tenant_without_data_only_where_others_have_some() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalStore::new(dir.path()).unwrap());
        let engine = Engine::new(
            store.clone(),
            EngineConfig::default(),
            Arc::new(Metrics::new()),
        );
        assert_eq!(engine.no_data_warning("default").await, None, "a new store");
        store
            .put(
                "tenant=demo/dt=2026-12-06/hour=01/x",
                Bytes::from_static(b"x"),
            )
            .await
            .unwrap();
        let w = engine.no_data_warning("default").await.unwrap();
        assert!(
            w.contains(r#"tenant "default" has no data"#) && w.contains("with data: demo"),
            "{w}"
        );
        assert_eq!(engine.no_data_warning("demo").await, None, "demo has data");
        assert_eq!(engine.metrics().no_data_tenant_answers.get(), 1);
    }
}
