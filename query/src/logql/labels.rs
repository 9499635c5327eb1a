//! A log record's labels as Loki 3 shows OTLP logs: the resource attributes Loki promotes to
//! index labels (stream labels), every other attribute, the trace context and the severity as
//! structured metadata, and what pipeline stages add (parsed labels). Names have every
//! character outside `[A-Za-z0-9_]` replaced by `_` (`service.name` → `service_name`).

use std::collections::BTreeMap;

use loupe_storage::logs::{LEVELS, LogRecord};
use loupe_storage::model::{AttrValue, Resource};

/// Resource attributes that become stream labels (Loki's defaults, and the node name).
pub const STREAM_ATTRIBUTES: &[&str] = &[
    "cloud.availability_zone",
    "cloud.region",
    "container.name",
    "deployment.environment",
    "deployment.environment.name",
    "k8s.cluster.name",
    "k8s.container.name",
    "k8s.cronjob.name",
    "k8s.daemonset.name",
    "k8s.deployment.name",
    "k8s.job.name",
    "k8s.namespace.name",
    "k8s.node.name",
    "k8s.pod.name",
    "k8s.replicaset.name",
    "k8s.statefulset.name",
    "service.instance.id",
    "service.name",
    "service.namespace",
];

/// Where a label comes from, which Loki's categorized responses keep apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cat {
    Stream,
    Meta,
    Parsed,
}

/// A label set, sorted by name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Labels(pub BTreeMap<String, (String, Cat)>);

/// A label name as Loki writes an attribute key.
pub fn label_name(key: &str) -> String {
    let mut s: String = key
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with(|c: char| c.is_ascii_digit()) {
        s.insert(0, '_');
    }
    s
}

fn text(v: &AttrValue) -> String {
    v.to_filter_string()
}

/// The level Loki detects from a severity number (`detected_level`).
pub fn detected_level(severity_number: i32) -> &'static str {
    LEVELS[loupe_storage::logs::histogram::level_of(severity_number)]
}

impl Labels {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(|(v, _)| v.as_str())
    }

    pub fn set(&mut self, name: String, value: String, cat: Cat) {
        self.0.insert(name, (value, cat));
    }

    /// Sets a label a parser found; a name the line already has gets `_extracted`.
    pub fn set_parsed(&mut self, name: String, value: String) {
        match self.0.get(&name) {
            Some((_, Cat::Stream | Cat::Meta)) => {
                self.0
                    .insert(format!("{name}_extracted"), (value, Cat::Parsed));
            }
            _ => {
                self.0.insert(name, (value, Cat::Parsed));
            }
        }
    }

    pub fn remove(&mut self, name: &str) {
        self.0.remove(name);
    }

    /// The labels of `cats`, as name → value.
    pub fn of(&self, cats: &[Cat]) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter(|(_, (_, c))| cats.contains(c))
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// Every label, as name → value.
    pub fn all(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect()
    }

    /// The labels of a resource: its stream labels and the rest of its attributes as
    /// structured metadata.
    pub fn of_resource(res: &Resource) -> Labels {
        let mut l = Labels::default();
        for (k, v) in &res.attributes.0 {
            let cat = if STREAM_ATTRIBUTES.contains(&k.as_str()) {
                Cat::Stream
            } else {
                Cat::Meta
            };
            l.set(label_name(k), text(v), cat);
        }
        if !l.0.contains_key("service_name") {
            let s = res.service_name.as_str();
            let s = if s.is_empty() { "unknown_service" } else { s };
            l.set("service_name".into(), s.to_string(), Cat::Stream);
        }
        l
    }

    /// The stream labels of a record, its structured metadata, nothing parsed yet.
    pub fn of_record(r: &LogRecord) -> Labels {
        let mut l = Labels::of_resource(&r.resource);
        for (k, v) in &r.attributes.0 {
            let name = label_name(k);
            if !matches!(l.0.get(&name), Some((_, Cat::Stream))) {
                l.set(name, text(v), Cat::Meta);
            }
        }
        if let Some(t) = r.trace_id {
            l.set("trace_id".into(), hex::encode(t), Cat::Meta);
        }
        if let Some(s) = r.span_id {
            l.set("span_id".into(), hex::encode(s), Cat::Meta);
        }
        if !r.severity_text.is_empty() {
            l.set("severity_text".into(), r.severity_text.clone(), Cat::Meta);
        }
        if r.severity_number > 0 {
            l.set(
                "severity_number".into(),
                r.severity_number.to_string(),
                Cat::Meta,
            );
        }
        l.set(
            "detected_level".into(),
            detected_level(r.severity_number).to_string(),
            Cat::Meta,
        );
        if !r.scope.name.is_empty() {
            l.set("scope_name".into(), r.scope.name.clone(), Cat::Meta);
        }
        l
    }
}
