//! End-to-end tests: real `loupe` processes on loopback, driven by real clients (the
//! OpenTelemetry Python SDK, tonic, HTTP, headless Chromium).

mod bad_inputs;
mod browser;
mod deploy;
mod durability;
mod harness;
mod otlp;
mod overload;
mod python_sdk;
mod roles;
mod tenancy;
