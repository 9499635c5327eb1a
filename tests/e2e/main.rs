//! End-to-end tests: real `loupe` processes on loopback, driven by real clients (the
//! OpenTelemetry Python SDK, tonic, HTTP, headless Chromium).

mod agent;
mod agent_disk;
mod agent_kube;
mod agent_metrics;
mod agent_network;
mod bad_inputs;
mod browser;
mod cluster;
mod demo_logs;
mod deploy;
mod durability;
mod full_disk;
mod grafana_loki;
mod grafana_tempo;
mod harness;
mod live_tail;
mod load;
mod metrics;
mod openapi;
mod otlp;
mod outage;
mod overload;
mod prometheus_diff;
mod python_metrics;
mod python_sdk;
mod roles;
mod tenancy;
