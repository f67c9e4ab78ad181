//! Facts about one request that inner layers learn and the envelope reports.

use std::sync::{Arc, OnceLock};

/// Put in the request's extensions by the envelope; the auth extractor fills in the tenant so
/// the envelope can label metrics and errors with it after the handler ran.
#[derive(Clone, Default)]
pub(crate) struct RequestContext {
    tenant: Arc<OnceLock<String>>,
    request_id: Arc<str>,
}

impl RequestContext {
    /// The context of a request with this id (`x-request-id`, or the one the envelope made).
    pub(crate) fn new(request_id: &str) -> RequestContext {
        RequestContext {
            tenant: Arc::default(),
            request_id: Arc::from(request_id),
        }
    }

    /// The request's id, as its answer's `x-request-id` and problems carry it (a handler that
    /// answers problems inside a 200, as the forecast batch does, puts it in each).
    pub(crate) fn request_id(&self) -> &str {
        &self.request_id
    }

    /// Called by the auth extractor once it knows the tenant.
    pub(crate) fn set_tenant(&self, tenant_id: &str) {
        let _ = self.tenant.set(tenant_id.to_owned());
    }

    /// The authenticated tenant, if the request got that far.
    pub(crate) fn tenant(&self) -> Option<&str> {
        self.tenant.get().map(String::as_str)
    }
}
