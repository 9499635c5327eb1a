//! The deploy manifests bind every listener on all interfaces (the binary's defaults bind
//! loopback only) and probe the operational endpoints the server really serves.

use crate::harness::workspace_root;

#[test]
fn manifests_bind_all_interfaces() {
    let k8s = std::fs::read_to_string(workspace_root().join("deploy/kubernetes/loupe-server.yaml"))
        .unwrap();
    for (var, addr) in [
        ("LOUPE_HTTP_ADDR", "0.0.0.0:7070"),
        ("LOUPE_OTLP_GRPC_ADDR", "0.0.0.0:4317"),
        ("LOUPE_OTLP_HTTP_ADDR", "0.0.0.0:4318"),
    ] {
        assert!(
            k8s.contains(&format!("{{name: {var}, value: \"{addr}\"}}")),
            "{var} in the manifest"
        );
    }
    assert!(k8s.contains("path: /readyz") && k8s.contains("path: /healthz"));
    let docker = std::fs::read_to_string(workspace_root().join("deploy/Dockerfile")).unwrap();
    assert!(docker.contains("LOUPE_HTTP_ADDR=0.0.0.0:7070"));
}
