//! The OpenTelemetry resource of a pod log file: its Kubernetes identity from the path
//! (`k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`, `k8s.container.name`,
//! `k8s.container.restart_count`), the node (`k8s.node.name`), and `service.name`: from the
//! pod's metadata when the API server gave it ([`crate::kube`]: label, then owner, with
//! `service.version` and the owner's `k8s.*.name`), else the container's name (the last
//! fallback of OpenTelemetry's Kubernetes service-name rules).

use std::sync::Arc;

use crate::otlp_logs::{Value, resource};
use crate::pod_path::PodFile;

/// Builds resources from the path and, when known, the pod's metadata, for `node`.
pub fn from_path(
    node: String,
    pods: Option<Arc<crate::kube::PodCache>>,
) -> impl Fn(&PodFile) -> Arc<[u8]> + Send + Sync {
    move |p: &PodFile| {
        let meta = pods.as_ref().and_then(|c| c.get(&p.uid));
        let service = meta
            .as_ref()
            .and_then(|m| m.service_name.clone())
            .unwrap_or_else(|| p.container.clone());
        let mut attrs = vec![
            ("k8s.namespace.name", Value::Str(&p.namespace)),
            ("k8s.pod.name", Value::Str(&p.pod)),
            ("k8s.pod.uid", Value::Str(&p.uid)),
            ("k8s.container.name", Value::Str(&p.container)),
            (
                "k8s.container.restart_count",
                Value::Int(i64::from(p.restart_count)),
            ),
            ("service.name", Value::Str(&service)),
        ];
        if !node.is_empty() {
            attrs.push(("k8s.node.name", Value::Str(&node)));
        }
        if let Some(m) = &meta {
            if let Some(v) = &m.service_version {
                attrs.push(("service.version", Value::Str(v)));
            }
            if let Some((k, v)) = &m.owner {
                attrs.push((k, Value::Str(v)));
            }
        }
        resource(&attrs).into()
    }
}
