//! Facts about one request that inner layers learn and the envelope reports.

use std::sync::{Arc, OnceLock};

/// Put in the request's extensions by the envelope; the auth extractor fills in the tenant so
/// the envelope can label metrics and errors with it after the handler ran.
#[derive(Clone, Default)]
pub(crate) struct RequestContext {
    tenant: Arc<OnceLock<String>>,
}

impl RequestContext {
    /// Called by the auth extractor once it knows the tenant.
    pub(crate) fn set_tenant(&self, tenant_id: &str) {
        let _ = self.tenant.set(tenant_id.to_owned());
    }

    /// The authenticated tenant, if the request got that far.
    pub(crate) fn tenant(&self) -> Option<&str> {
        self.tenant.get().map(String::as_str)
    }
}
