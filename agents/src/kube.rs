//! Pod metadata from the Kubernetes API server: the pods of this node, listed every
//! `LOUPE_AGENT_KUBERNETES_REFRESH` with the agent's service-account credentials (read-only
//! RBAC), kept by pod uid. From it:
//!
//! - `service.name` as OpenTelemetry's Kubernetes conventions derive it: the
//!   `app.kubernetes.io/name` label, else the owning workload (a Deployment — the
//!   ReplicaSet's name without its pod-template hash —, StatefulSet, DaemonSet, Job or
//!   CronJob), else the container's name; `service.version` from
//!   `app.kubernetes.io/version`; `k8s.deployment.name` and the like for the owner.
//! - Prometheus targets of pods annotated `prometheus.io/scrape: "true"` (port and path from
//!   `prometheus.io/port` and `prometheus.io/path`, default `/metrics`), in job
//!   `kubernetes-pods` with `namespace` and `pod` labels.
//!
//! In a pod, the API is `https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT` with the
//! service account's CA and token; `LOUPE_AGENT_KUBERNETES_API` overrides it (tests serve
//! recorded responses on loopback). When the API cannot be reached, or the agent runs
//! outside a cluster, it falls back cleanly: resources from the path alone, no pod targets.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde::Deserialize;

const SA_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// What the agent keeps of a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodMeta {
    pub service_name: Option<String>,
    pub service_version: Option<String>,
    /// e.g. (`k8s.deployment.name`, `checkout`).
    pub owner: Option<(&'static str, String)>,
    pub namespace: String,
    pub name: String,
    pub scrape: Option<String>,
}

#[derive(Deserialize)]
struct PodList {
    items: Vec<Pod>,
}

#[derive(Deserialize)]
struct Pod {
    metadata: ObjectMeta,
    #[serde(default)]
    status: PodStatus,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct ObjectMeta {
    #[serde(default)]
    name: String,
    #[serde(default)]
    namespace: String,
    #[serde(default)]
    uid: String,
    #[serde(default)]
    labels: HashMap<String, String>,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    owner_references: Vec<OwnerReference>,
}

#[derive(Deserialize)]
struct OwnerReference {
    kind: String,
    name: String,
    #[serde(default)]
    controller: bool,
}

#[derive(Deserialize, Default)]
struct PodStatus {
    #[serde(default, rename = "podIP")]
    pod_ip: String,
}

/// The workload owning a pod, from its controller reference.
fn owner(m: &ObjectMeta) -> Option<(&'static str, String)> {
    let r = m
        .owner_references
        .iter()
        .find(|r| r.controller)
        .or(m.owner_references.first())?;
    Some(match r.kind.as_str() {
        "ReplicaSet" => {
            let hash = m.labels.get("pod-template-hash");
            let deployment = hash
                .and_then(|h| r.name.strip_suffix(&format!("-{h}")))
                .map(str::to_string);
            match deployment {
                Some(d) => ("k8s.deployment.name", d),
                None => ("k8s.replicaset.name", r.name.clone()),
            }
        }
        "StatefulSet" => ("k8s.statefulset.name", r.name.clone()),
        "DaemonSet" => ("k8s.daemonset.name", r.name.clone()),
        "Job" => {
            // A CronJob's Job is `<cronjob>-<schedule time>`.
            match r.name.rsplit_once('-') {
                Some((cron, t)) if t.len() >= 8 && t.bytes().all(|b| b.is_ascii_digit()) => {
                    ("k8s.cronjob.name", cron.to_string())
                }
                _ => ("k8s.job.name", r.name.clone()),
            }
        }
        _ => return None,
    })
}

fn meta(p: &Pod) -> PodMeta {
    let m = &p.metadata;
    let owner = owner(m);
    let scrape = (m
        .annotations
        .get("prometheus.io/scrape")
        .map(String::as_str)
        == Some("true")
        && !p.status.pod_ip.is_empty())
    .then(|| {
        let port = m.annotations.get("prometheus.io/port")?;
        let path = m
            .annotations
            .get("prometheus.io/path")
            .map_or("/metrics", String::as_str);
        let scheme = m
            .annotations
            .get("prometheus.io/scheme")
            .map_or("http", String::as_str);
        Some(format!("{scheme}://{}:{port}{path}", p.status.pod_ip))
    })
    .flatten();
    PodMeta {
        service_name: m
            .labels
            .get("app.kubernetes.io/name")
            .cloned()
            .or_else(|| owner.as_ref().map(|o| o.1.clone())),
        service_version: m.labels.get("app.kubernetes.io/version").cloned(),
        owner,
        namespace: m.namespace.clone(),
        name: m.name.clone(),
        scrape,
    }
}

/// The node's pods by uid, refreshed in the background; `generation` grows with each
/// successful refresh that changed something.
#[derive(Default)]
pub struct PodCache {
    pods: RwLock<HashMap<String, PodMeta>>,
    generation: std::sync::atomic::AtomicU64,
}

impl PodCache {
    pub fn get(&self, uid: &str) -> Option<PodMeta> {
        self.pods.read().ok()?.get(uid).cloned()
    }

    pub fn generation(&self) -> u64 {
        self.generation.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Pods annotated for scraping: (target URL, namespace, pod).
    pub fn scrape_targets(&self) -> Vec<(String, String, String)> {
        let Ok(pods) = self.pods.read() else {
            return Vec::new();
        };
        let mut out: Vec<_> = pods
            .values()
            .filter_map(|p| Some((p.scrape.clone()?, p.namespace.clone(), p.name.clone())))
            .collect();
        out.sort();
        out
    }

    fn replace(&self, new: HashMap<String, PodMeta>) {
        if let Ok(mut pods) = self.pods.write()
            && *pods != new
        {
            *pods = new;
            self.generation
                .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        }
    }
}

/// Where and how to reach the API server.
pub struct ApiClient {
    base: String,
    token: Option<String>,
    client: reqwest::Client,
    node: String,
}

impl ApiClient {
    /// `api` (an override) or the in-cluster address; `None` outside a cluster.
    pub fn new(api: Option<&str>, node: &str) -> anyhow::Result<Option<ApiClient>> {
        let sa = Path::new(SA_DIR);
        let base = match api {
            Some(a) => a.trim_end_matches('/').to_string(),
            None => match (
                std::env::var("KUBERNETES_SERVICE_HOST"),
                std::env::var("KUBERNETES_SERVICE_PORT"),
            ) {
                (Ok(h), Ok(p)) if sa.join("token").exists() => format!("https://{h}:{p}"),
                _ => return Ok(None),
            },
        };
        let mut builder = reqwest::Client::builder().timeout(Duration::from_secs(10));
        if let Ok(ca) = std::fs::read(sa.join("ca.crt")) {
            builder = builder.add_root_certificate(reqwest::Certificate::from_pem(&ca)?);
        }
        let token = std::fs::read_to_string(sa.join("token"))
            .ok()
            .map(|t| t.trim().to_string());
        Ok(Some(ApiClient {
            base,
            token,
            client: builder.build()?,
            node: node.to_string(),
        }))
    }

    async fn list(&self) -> anyhow::Result<HashMap<String, PodMeta>> {
        let mut req = self
            .client
            .get(format!("{}/api/v1/pods", self.base))
            .query(&[("fieldSelector", format!("spec.nodeName={}", self.node))]);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        if !status.is_success() {
            anyhow::bail!("{status}: {}", resp.text().await.unwrap_or_default());
        }
        let list: PodList = resp.json().await?;
        Ok(list
            .items
            .iter()
            .map(|p| (p.metadata.uid.clone(), meta(p)))
            .collect())
    }

    /// Keeps `cache` fresh, every `every`; logs when the API cannot be read (the agent goes
    /// on with what it has).
    pub async fn run(self, cache: Arc<PodCache>, every: Duration) {
        let mut failing = false;
        loop {
            match self.list().await {
                Ok(pods) => {
                    if failing {
                        tracing::info!("Kubernetes API readable again");
                    }
                    failing = false;
                    cache.replace(pods);
                }
                Err(e) if !failing => {
                    tracing::warn!(api = %self.base, error = %e, "cannot list this node's pods; resources from log paths alone");
                    failing = true;
                }
                Err(_) => {}
            }
            tokio::time::sleep(every).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_names_come_from_labels_then_owners() {
        let list: PodList = serde_json::from_str(
            r#"{"items":[
            {"metadata":{"name":"checkout-7d9f8b6c5-x2x9q","namespace":"shop","uid":"u1",
              "labels":{"pod-template-hash":"7d9f8b6c5","app.kubernetes.io/version":"1.4.2"},
              "ownerReferences":[{"kind":"ReplicaSet","name":"checkout-7d9f8b6c5","controller":true}]},
             "status":{"podIP":"10.1.2.3"}},
            {"metadata":{"name":"db-0","namespace":"shop","uid":"u2","labels":{"app.kubernetes.io/name":"postgres"},
              "annotations":{"prometheus.io/scrape":"true","prometheus.io/port":"9187"},
              "ownerReferences":[{"kind":"StatefulSet","name":"db","controller":true}]},
             "status":{"podIP":"10.1.2.4"}},
            {"metadata":{"name":"report-28901234-abcde","namespace":"ops","uid":"u3",
              "ownerReferences":[{"kind":"Job","name":"report-28901234","controller":true}]}}]}"#,
        )
        .unwrap();
        let m: Vec<PodMeta> = list.items.iter().map(meta).collect();
        assert_eq!(m[0].service_name.as_deref(), Some("checkout"));
        assert_eq!(m[0].service_version.as_deref(), Some("1.4.2"));
        assert_eq!(m[0].owner, Some(("k8s.deployment.name", "checkout".into())));
        assert_eq!(m[0].scrape, None);
        assert_eq!(
            m[1].service_name.as_deref(),
            Some("postgres"),
            "the label first"
        );
        assert_eq!(m[1].owner, Some(("k8s.statefulset.name", "db".into())));
        assert_eq!(m[1].scrape.as_deref(), Some("http://10.1.2.4:9187/metrics"));
        assert_eq!(m[2].owner, Some(("k8s.cronjob.name", "report".into())));
    }
}
