//! State shared by every query adapter (native, Jaeger, and the Tempo, Loki and Prometheus
//! APIs to come): the domain services, the tenant resolver, and the extractor that resolves
//! a request's tenant from its credentials.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use http::request::Parts;
use loupe_storage::{TenantId, TenantResolver};

use crate::error::QueryError;
use crate::service::TraceService;

#[derive(Clone)]
pub struct QueryState {
    pub traces: Arc<TraceService>,
    pub logs: Arc<crate::logs::LogService>,
    pub metrics: Arc<crate::promql::MetricService>,
    pub resolver: TenantResolver,
}

/// The tenant of a request, from its credentials (see `TenantResolver`).
pub struct Tenant(pub TenantId);

impl FromRequestParts<QueryState> for Tenant {
    type Rejection = QueryError;

    async fn from_request_parts(parts: &mut Parts, state: &QueryState) -> Result<Self, QueryError> {
        let h = |n: &str| parts.headers.get(n).and_then(|v| v.to_str().ok());
        Ok(Tenant(
            state
                .resolver
                .resolve(h("authorization"), h("x-scope-orgid"))?,
        ))
    }
}
