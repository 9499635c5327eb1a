//! The deploy files: every kustomize overlay rendered by `kubectl kustomize` (Debian's
//! kubectl) and validated strictly by `kubernetes-validate` (PyPI) against a current
//! Kubernetes version; then what the rendered objects must say — listeners on all
//! interfaces, tokens from a required Secret, probes on the endpoints the binaries serve,
//! the agent's mounts, tolerations, limits and read-only RBAC. The compose file and the
//! Dockerfiles are checked for what they promise (loopback ports, a required token,
//! non-root images, multi-stage builds).

use std::process::Command;

use serde_json::Value;

use crate::harness::{python, workspace_root};

/// The Kubernetes version the manifests are validated against.
const KUBERNETES: &str = "1.37.0";

fn render(overlay: &str) -> String {
    let dir = workspace_root()
        .join("deploy/kubernetes/overlays")
        .join(overlay);
    let out = Command::new("kubectl")
        .arg("kustomize")
        .arg(&dir)
        .output()
        .expect("run kubectl (tests/setup.sh installs it)");
    assert!(
        out.status.success(),
        "kubectl kustomize {overlay}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The rendered documents as JSON (through the test virtualenv's PyYAML).
fn documents(yaml: &str) -> Vec<Value> {
    let out = Command::new(python())
        .args([
            "-c",
            "import sys, json, yaml; print(json.dumps([d for d in yaml.safe_load_all(sys.stdin) if d]))",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(yaml.as_bytes())?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(out.status.success());
    serde_json::from_slice(&out.stdout).unwrap()
}

fn validate(overlay: &str, yaml: &str) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join(format!("{overlay}.yaml"));
    std::fs::write(&file, yaml).unwrap();
    let bin = python().with_file_name("kubernetes-validate");
    let out = Command::new(&bin)
        .args(["-k", KUBERNETES, "--strict", "--quiet"])
        .arg(&file)
        .output()
        .unwrap_or_else(|e| panic!("{}: {e} (tests/setup.sh installs it)", bin.display()));
    assert!(
        out.status.success(),
        "{overlay} does not validate against Kubernetes {KUBERNETES}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn find<'a>(docs: &'a [Value], kind: &str, name: &str) -> &'a Value {
    docs.iter()
        .find(|d| d["kind"] == kind && d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name}"))
}

fn env<'a>(container: &'a Value, name: &str) -> &'a Value {
    container["env"]
        .as_array()
        .and_then(|e| e.iter().find(|v| v["name"] == name))
        .unwrap_or_else(|| panic!("no env {name} in {}", container["name"]))
}

/// A container of a workload with its listeners on all interfaces, tokens from the
/// required Secret, and probes on /readyz and /healthz.
fn check_server(docs: &[Value], kind: &str, name: &str, listeners: &[&str]) {
    let w = find(docs, kind, name);
    let c = &w["spec"]["template"]["spec"]["containers"][0];
    for var in listeners {
        let v = env(c, var)["value"].as_str().unwrap();
        assert!(v.starts_with("0.0.0.0:"), "{name}: {var}={v}");
    }
    let tokens = &env(c, "LOUPE_AUTH_TOKENS")["valueFrom"]["secretKeyRef"];
    assert_eq!(tokens["name"], "loupe-auth", "{name}");
    assert_eq!(
        tokens["optional"], false,
        "{name}: the token Secret is required"
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert!(
        c["resources"]["limits"]["memory"].is_string(),
        "{name}: a memory limit"
    );
    let pod = &w["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
}

fn check_agent(docs: &[Value]) {
    let ds = find(docs, "DaemonSet", "loupe-agent");
    let pod = &ds["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "loupe-agent");
    assert_eq!(pod["tolerations"][0]["operator"], "Exists", "every node");
    let c = &pod["containers"][0];
    let token = &env(c, "LOUPE_AGENT_TOKEN")["valueFrom"]["secretKeyRef"];
    assert_eq!(
        (&token["name"], &token["optional"]),
        (&Value::from("loupe-auth"), &Value::from(false))
    );
    assert_eq!(
        env(c, "LOUPE_AGENT_NODE_NAME")["valueFrom"]["fieldRef"]["fieldPath"],
        "spec.nodeName"
    );
    let mounts = c["volumeMounts"].as_array().unwrap();
    let pods = mounts
        .iter()
        .find(|m| m["mountPath"] == "/var/log/pods")
        .unwrap();
    assert_eq!(pods["readOnly"], true, "pod logs read-only");
    let buffer = mounts
        .iter()
        .find(|m| m["mountPath"] == "/var/lib/loupe-agent")
        .unwrap();
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == buffer["name"])
        .unwrap();
    assert_eq!(
        volume["hostPath"]["path"], "/var/lib/loupe-agent",
        "the buffer outlives the pod"
    );
    assert!(
        c["resources"]["requests"]["cpu"].is_string()
            && c["resources"]["limits"]["memory"].is_string()
    );
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    // RBAC: listing pods, the one request the agent makes, and nothing more.
    let role = find(docs, "ClusterRole", "loupe-agent");
    assert_eq!(
        role["rules"],
        serde_json::json!([{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}]),
        "{role}"
    );
    let binding = find(docs, "ClusterRoleBinding", "loupe-agent");
    assert_eq!(binding["subjects"][0]["namespace"], "loupe");
}

fn agent_endpoint(docs: &[Value]) -> String {
    docs.iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("loupe-agent")
        })
        .and_then(|c| c["data"]["LOUPE_AGENT_ENDPOINT"].as_str())
        .unwrap()
        .to_string()
}

#[test]
fn every_overlay_renders_and_validates_against_kubernetes() {
    let yaml = render("all-in-one");
    validate("all-in-one", &yaml);
    let docs = documents(&yaml);
    check_server(
        &docs,
        "StatefulSet",
        "loupe",
        &[
            "LOUPE_HTTP_ADDR",
            "LOUPE_OTLP_GRPC_ADDR",
            "LOUPE_OTLP_HTTP_ADDR",
        ],
    );
    let sts = find(&docs, "StatefulSet", "loupe");
    assert_eq!(
        sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "data",
        "a volume for the WAL"
    );
    check_agent(&docs);
    assert_eq!(agent_endpoint(&docs), "http://loupe:4318");
    assert!(docs.iter().all(|d| d["kind"] == "Namespace"
        || d["kind"] == "ClusterRole"
        || d["kind"] == "ClusterRoleBinding"
        || d["metadata"]["namespace"] == "loupe"));

    let yaml = render("scaled-out");
    validate("scaled-out", &yaml);
    let docs = documents(&yaml);
    check_server(
        &docs,
        "StatefulSet",
        "loupe-collector",
        &[
            "LOUPE_HTTP_ADDR",
            "LOUPE_OTLP_GRPC_ADDR",
            "LOUPE_OTLP_HTTP_ADDR",
        ],
    );
    check_server(&docs, "Deployment", "loupe-query", &["LOUPE_HTTP_ADDR"]);
    let collectors = find(&docs, "StatefulSet", "loupe-collector");
    assert_eq!(
        collectors["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "collector"
    );
    assert_eq!(
        collectors["spec"]["volumeClaimTemplates"][0]["metadata"]["name"], "wal",
        "a WAL volume each"
    );
    let query = find(&docs, "Deployment", "loupe-query");
    assert_eq!(
        query["spec"]["template"]["spec"]["containers"][0]["args"][0],
        "query"
    );
    let storage = docs
        .iter()
        .find(|d| {
            d["kind"] == "ConfigMap"
                && d["metadata"]["name"]
                    .as_str()
                    .unwrap()
                    .starts_with("loupe-storage")
        })
        .unwrap();
    assert!(
        storage["data"]["LOUPE_STORAGE_URL"]
            .as_str()
            .unwrap()
            .starts_with("s3://"),
        "one bucket"
    );
    find(&docs, "Service", "loupe-collector");
    let pods = find(&docs, "Service", "loupe-collector-pods");
    assert_eq!(
        pods["spec"]["clusterIP"], "None",
        "the StatefulSet's Service is headless"
    );
    assert_eq!(
        find(&docs, "StatefulSet", "loupe-collector")["spec"]["serviceName"],
        "loupe-collector-pods"
    );
    find(&docs, "Service", "loupe");
    check_agent(&docs);
    assert_eq!(agent_endpoint(&docs), "http://loupe-collector:4318");
}

#[test]
fn images_run_unprivileged_and_compose_publishes_on_loopback_with_a_required_token() {
    let root = workspace_root().join("deploy");
    for file in ["Dockerfile", "Dockerfile.agent"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let stages = text.lines().filter(|l| l.starts_with("FROM ")).count();
        assert!(stages >= 2, "{file}: multi-stage");
        assert!(text.contains("USER 65532"), "{file}: non-root");
    }
    let server = std::fs::read_to_string(root.join("Dockerfile")).unwrap();
    assert!(server.contains("LOUPE_HTTP_ADDR=0.0.0.0:7070"));
    let compose = std::fs::read_to_string(root.join("compose.yaml")).unwrap();
    let doc = &documents(&compose)[0];
    for (name, svc) in doc["services"].as_object().unwrap() {
        for p in svc["ports"].as_array().into_iter().flatten() {
            assert!(p.as_str().unwrap().starts_with("127.0.0.1:"), "{name}: {p}");
        }
    }
    let token = doc["services"]["loupe"]["environment"]["LOUPE_AUTH_TOKENS"]
        .as_str()
        .unwrap();
    assert!(
        token.contains("${LOUPE_TOKEN:?"),
        "compose refuses to start without a token"
    );
    assert_eq!(
        doc["services"]["agent"]["environment"]["LOUPE_AGENT_ENDPOINT"],
        "http://loupe:4318"
    );
}
