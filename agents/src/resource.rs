//! The OpenTelemetry resource of a pod log file: its Kubernetes identity from the path
//! (`k8s.namespace.name`, `k8s.pod.name`, `k8s.pod.uid`, `k8s.container.name`,
//! `k8s.container.restart_count`), the node (`k8s.node.name`), and `service.name`. Without
//! the pod's metadata from the API server, `service.name` is the container's name (the last
//! fallback of OpenTelemetry's Kubernetes service-name rules).

use std::sync::Arc;

use crate::otlp_logs::{Value, resource};
use crate::pod_path::PodFile;

/// Builds resources from the path alone, for `node`.
pub fn from_path(node: String) -> impl Fn(&PodFile) -> Arc<[u8]> + Send + Sync {
    move |p: &PodFile| {
        let mut attrs = vec![
            ("k8s.namespace.name", Value::Str(&p.namespace)),
            ("k8s.pod.name", Value::Str(&p.pod)),
            ("k8s.pod.uid", Value::Str(&p.uid)),
            ("k8s.container.name", Value::Str(&p.container)),
            (
                "k8s.container.restart_count",
                Value::Int(i64::from(p.restart_count)),
            ),
            ("service.name", Value::Str(&p.container)),
        ];
        if !node.is_empty() {
            attrs.push(("k8s.node.name", Value::Str(&node)));
        }
        resource(&attrs).into()
    }
}
