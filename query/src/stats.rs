//! `GET /api/v1/stats`: what the catalog holds for the tenant, per signal (files, rows,
//! stored bytes, catalog version, tombstones awaiting garbage collection). For operators,
//! and for tests that must count stored rows without the API's de-duplication.

use axum::Json;
use axum::extract::State;
use loupe_storage::store::Signal;
use serde::Serialize;
use utoipa::ToSchema;

use crate::error::QueryError;
use crate::state::{QueryState, Tenant};

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignalStats {
    pub signal: String,
    pub files: u64,
    pub rows: u64,
    pub bytes: u64,
    pub catalog_version: u64,
    /// Removed files whose objects are kept until the garbage-collection grace has passed.
    pub tombstones: u64,
}

#[derive(Serialize, ToSchema)]
pub struct StatsResponse {
    pub signals: Vec<SignalStats>,
}

#[utoipa::path(get, path = "/api/v1/stats", tag = "storage",
    responses((status = 200, body = StatsResponse), (status = 401, body = crate::error::ErrorBody)))]
pub async fn stats(
    State(st): State<QueryState>,
    Tenant(tenant): Tenant,
) -> Result<Json<StatsResponse>, QueryError> {
    let mut signals = Vec::new();
    for signal in Signal::ALL {
        let state = st.traces.catalog_state(&tenant, signal).await?;
        let (rows, bytes) = state.totals();
        signals.push(SignalStats {
            signal: signal.as_str().to_string(),
            files: state.files.len() as u64,
            rows,
            bytes,
            catalog_version: state.version,
            tombstones: state.tombstones.len() as u64,
        });
    }
    Ok(Json(StatsResponse { signals }))
}
