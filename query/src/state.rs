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

/// A request's tenant (from its credentials), headers and parameters: the query string, then
/// a form body on POST (as Prometheus and Loki take them). The adapters wrap errors in their
/// own envelopes.
pub async fn form_request(
    req: axum::extract::Request,
    st: &QueryState,
) -> Result<(TenantId, http::HeaderMap, Vec<(String, String)>), QueryError> {
    use axum::extract::FromRequest;
    let headers = req.headers().clone();
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok());
    let tenant = st
        .resolver
        .resolve(h("authorization"), h("x-scope-orgid"))?;
    let mut params: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .into_owned()
                .collect()
        })
        .unwrap_or_default();
    if req.method() == http::Method::POST {
        let body = axum::body::Bytes::from_request(req, st)
            .await
            .map_err(|e| QueryError::BadRequest(format!("cannot read the request body: {e}")))?;
        params.extend(url::form_urlencoded::parse(&body).into_owned());
    }
    Ok((tenant, headers, params))
}
