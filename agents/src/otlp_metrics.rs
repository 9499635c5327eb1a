//! What the agent's two metric sources (host metrics and scraping) share: attribute and
//! request building for OTLP metrics, and appending a collection to the buffer, waiting
//! while it refuses (as the logs do: nothing is dropped).

use std::time::Duration;

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{Metric, ResourceMetrics, ScopeMetrics};
use opentelemetry_proto::tonic::resource::v1::Resource;

/// A string attribute.
pub fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.into())),
        }),
        ..Default::default()
    }
}

pub fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// One resource's metrics under the scope `loupe-agent/<scope>`.
pub fn request(
    resource: Vec<KeyValue>,
    scope: &str,
    metrics: Vec<Metric>,
) -> ExportMetricsServiceRequest {
    ExportMetricsServiceRequest {
        resource_metrics: vec![ResourceMetrics {
            resource: Some(Resource {
                attributes: resource,
                ..Default::default()
            }),
            scope_metrics: vec![ScopeMetrics {
                scope: Some(InstrumentationScope {
                    name: format!("loupe-agent/{scope}"),
                    version: env!("CARGO_PKG_VERSION").into(),
                    ..Default::default()
                }),
                metrics,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// Appends a request of `points` data points to the buffer, waiting while it refuses.
pub async fn append(
    buffer: &crate::buffer::Buffer,
    req: &ExportMetricsServiceRequest,
    points: usize,
) {
    use prost::Message;
    let payload = crate::record::encode(points as u32, &[], &req.encode_to_vec());
    while let Err(e) = buffer
        .append(loupe_core::Signal::Metrics, payload.clone())
        .await
    {
        tracing::debug!(error = %e, "metrics wait for room in the buffer");
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
