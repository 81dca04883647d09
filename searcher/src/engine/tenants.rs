//! Why an answer is empty. A query for a tenant that has nothing at all
//! in the store almost always means the searcher and the indexer disagree
//! on the tenant (a searcher on its `default` tenant over a store an
//! indexer filled as `demo`), not that nothing matched. An empty answer
//! checks for that with one listing, and says so.

use skidder_common::format::layout::{decode_component, tenant_prefix};
use skidder_common::storage::list_folders;

use super::Engine;

/// Tenants named in a warning, at most.
const NAMED: usize = 10;

impl Engine {
    /// After an empty answer for `tenant`: a warning if the store holds
    /// no data for that tenant at all, naming the tenants it does hold.
    /// It is counted and logged; the caller decides whether the client may
    /// see it (not when tenancy is on: other tenants' names are private).
    /// A store fault here only loses the hint.
    pub async fn no_data_warning(&self, tenant: &str) -> Option<String> {
        let folders = match list_folders(&*self.stores.listing, "tenant=").await {
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
        let known = if others.is_empty() {
            "the store holds no tenant's data yet".to_owned()
        } else {
            let mut named = others[..others.len().min(NAMED)].join(", ");
            if others.len() > NAMED {
                named.push_str(&format!(" and {} more", others.len() - NAMED));
            }
            format!("tenants with data: {named}")
        };
        let warning = format!(
            "tenant \"{tenant}\" has no data in this store ({known}); \
             check the searcher's default_tenant (or X-Scope-OrgID, or --tenant) \
             against the indexer's parse.tenant"
        );
        self.metrics.no_data_tenant_answers.inc();
        tracing::warn!(tenant, "{warning}");
        Some(warning)
    }
}
