//! Configuration: one typed struct per role, each setting a flag with a `LOUPE_*` environment
//! variable and a default (12-factor). Validated before anything starts; printed at start with
//! secrets redacted.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};
use loupe_storage::{TenantId, TenantResolver};

#[derive(Parser, Debug)]
#[command(
    name = "loupe",
    version,
    about = "Loupe: traces (and soon logs and metrics) for microservices, in one place"
)]
pub struct Cli {
    #[command(subcommand)]
    pub role: Role,
}

#[derive(Subcommand, Debug)]
pub enum Role {
    /// Every role in one process: OTLP collector, storage lifecycle, query APIs and web UI.
    Server(ServerArgs),
    /// OTLP ingest, write-ahead log, flushes, compaction and retention (no query APIs).
    Collector(CommonArgs),
    /// Query APIs and web UI over the shared object store (no ingest).
    Query(CommonArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ServerArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Also run a built-in workload of demo services that send traces to this server.
    #[arg(long, env = "LOUPE_DEMO", default_value_t = false)]
    pub demo: bool,
}

#[derive(Debug, Clone, Copy, ValueEnum, PartialEq, Eq)]
pub enum LogFormat {
    /// JSON when stdout is not a terminal, text otherwise.
    Auto,
    Json,
    Text,
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Directory for the write-ahead log and, by default, the local object store.
    #[arg(long, env = "LOUPE_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
    /// Object store URL: file:///dir, s3://bucket/prefix (AWS_* env settings) or memory://.
    /// Default: file://{data_dir}/objects.
    #[arg(long, env = "LOUPE_STORAGE_URL")]
    pub storage_url: Option<String>,
    /// Address of the web UI, query APIs, /healthz, /readyz and /metrics.
    #[arg(long, env = "LOUPE_HTTP_ADDR", default_value = "127.0.0.1:7070")]
    pub http_addr: SocketAddr,
    /// OTLP/gRPC listen address.
    #[arg(long, env = "LOUPE_OTLP_GRPC_ADDR", default_value = "127.0.0.1:4317")]
    pub otlp_grpc_addr: SocketAddr,
    /// OTLP/HTTP listen address.
    #[arg(long, env = "LOUPE_OTLP_HTTP_ADDR", default_value = "127.0.0.1:4318")]
    pub otlp_http_addr: SocketAddr,
    /// How often buffered data is written to the object store.
    #[arg(long, env = "LOUPE_FLUSH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub flush_interval: Duration,
    /// How long data is kept (older data is also refused at ingest).
    #[arg(long, env = "LOUPE_RETENTION", default_value = "7days", value_parser = humantime::parse_duration)]
    pub retention: Duration,
    /// How far in the future a record's time may lie (clock skew of senders); later ones are
    /// refused through OTLP partial success.
    #[arg(long, env = "LOUPE_MAX_FUTURE_SKEW", default_value = "1h", value_parser = humantime::parse_duration)]
    pub max_future_skew: Duration,
    /// How often compaction, retention and garbage collection run.
    #[arg(long, env = "LOUPE_COMPACTION_INTERVAL", default_value = "60s", value_parser = humantime::parse_duration)]
    pub compaction_interval: Duration,
    /// Small files of one hour merged together at least (fewer merge once the hour has been
    /// over for 10 minutes, or when they make half a full file together).
    #[arg(long, env = "LOUPE_COMPACTION_MIN_FILES", default_value_t = 4)]
    pub compaction_min_files: usize,
    /// How stale a query role's view of the catalog may be (must stay well below the
    /// garbage-collection grace).
    #[arg(long, env = "LOUPE_CATALOG_REFRESH_INTERVAL", default_value = "2s", value_parser = humantime::parse_duration)]
    pub catalog_refresh_interval: Duration,
    /// How long the object of a file removed from the catalog (by compaction or retention)
    /// stays readable before garbage collection deletes it.
    #[arg(long, env = "LOUPE_GC_GRACE", default_value = "10m", value_parser = humantime::parse_duration)]
    pub gc_grace: Duration,
    /// API tokens as token=tenant pairs, comma separated. Empty: no authentication, tenant
    /// from X-Scope-OrgID or `default`.
    #[arg(
        long,
        env = "LOUPE_AUTH_TOKENS",
        default_value = "",
        hide_env_values = true
    )]
    pub auth_tokens: String,
    /// Largest accepted request, after decompression (bytes; KiB/MiB/GiB suffixes allowed).
    #[arg(long, env = "LOUPE_MAX_REQUEST_BYTES", default_value = "20MiB", value_parser = parse_bytes)]
    pub max_request_bytes: u64,
    /// Buffered, not yet flushed data above which ingest answers 503.
    #[arg(long, env = "LOUPE_MAX_BUFFER_BYTES", default_value = "32MiB", value_parser = parse_bytes)]
    pub max_buffer_bytes: u64,
    /// Request bytes in flight (bodies, decompressed and decoded, across all requests) above
    /// which ingest answers 503.
    #[arg(long, env = "LOUPE_MAX_INFLIGHT_BYTES", default_value = "128MiB", value_parser = parse_bytes)]
    pub max_inflight_bytes: u64,
    /// Largest accepted log record body; a larger one is refused (partial success), never
    /// truncated.
    #[arg(long, env = "LOUPE_MAX_LOG_LINE_BYTES", default_value = "256KiB", value_parser = parse_bytes)]
    pub max_log_line_bytes: u64,
    /// Active metric series a tenant may have (series without a sample for an hour do not
    /// count); samples of new series past it are refused with the limit named.
    #[arg(long, env = "LOUPE_MAX_SERIES_PER_TENANT", default_value_t = 1_000_000)]
    pub max_series_per_tenant: usize,
    /// Write-ahead log size above which ingest answers 503.
    #[arg(long, env = "LOUPE_WAL_MAX_BYTES", default_value = "2GiB", value_parser = parse_bytes)]
    pub wal_max_bytes: u64,
    /// Log format on stdout.
    #[arg(long, env = "LOUPE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Auto)]
    pub log_format: LogFormat,
    /// Log filter (tracing EnvFilter syntax), e.g. `info` or `loupe_collector=debug,info`.
    #[arg(long, env = "LOUPE_LOG", default_value = "info")]
    pub log: String,
}

/// Parses `1048576`, `512KiB`, `20MiB`, `2GiB` (also KB/MB/GB as powers of 1000).
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("invalid size {s:?}: expected e.g. 20MiB"))?;
    let mult: u64 = match unit.trim() {
        "" | "B" => 1,
        "KiB" => 1 << 10,
        "MiB" => 1 << 20,
        "GiB" => 1 << 30,
        "KB" => 1000,
        "MB" => 1_000_000,
        "GB" => 1_000_000_000,
        other => {
            return Err(format!(
                "invalid size unit {other:?}: expected B, KiB, MiB, GiB, KB, MB or GB"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

impl CommonArgs {
    pub fn storage_url(&self) -> anyhow::Result<String> {
        match &self.storage_url {
            Some(u) => Ok(u.clone()),
            None => {
                std::fs::create_dir_all(&self.data_dir).with_context(|| {
                    format!("cannot create data dir {}", self.data_dir.display())
                })?;
                let abs = std::fs::canonicalize(&self.data_dir).with_context(|| {
                    format!("cannot resolve data dir {}", self.data_dir.display())
                })?;
                Ok(format!("file://{}/objects", abs.display()))
            }
        }
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    /// Parses `LOUPE_AUTH_TOKENS` into a resolver, rejecting malformed pairs and tenants.
    pub fn resolver(&self) -> anyhow::Result<TenantResolver> {
        let mut pairs = Vec::new();
        for item in self
            .auth_tokens
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
        {
            let Some((token, tenant)) = item.split_once('=') else {
                bail!("invalid LOUPE_AUTH_TOKENS entry (value hidden): expected token=tenant");
            };
            if token.len() < 8 {
                bail!(
                    "invalid LOUPE_AUTH_TOKENS entry for tenant {tenant:?}: tokens must be at least 8 characters"
                );
            }
            let tenant = TenantId::new(tenant)
                .map_err(|e| anyhow::anyhow!("invalid LOUPE_AUTH_TOKENS entry: {e}"))?;
            pairs.push((token.to_string(), tenant));
        }
        Ok(TenantResolver::new(pairs))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        if self.flush_interval.is_zero() {
            bail!("LOUPE_FLUSH_INTERVAL must be greater than 0");
        }
        if self.retention < Duration::from_secs(3600) {
            bail!("LOUPE_RETENTION must be at least 1h");
        }
        if self.compaction_min_files < 2 {
            bail!("LOUPE_COMPACTION_MIN_FILES must be at least 2");
        }
        if self.compaction_interval.is_zero() {
            bail!("LOUPE_COMPACTION_INTERVAL must be greater than 0");
        }
        if self.max_request_bytes < 1024 {
            bail!("LOUPE_MAX_REQUEST_BYTES must be at least 1KiB");
        }
        let frame_limit = loupe_wal::frame::max_payload(64) as u64;
        if self.max_request_bytes > frame_limit {
            bail!(
                "LOUPE_MAX_REQUEST_BYTES is {} but the write-ahead log holds records of at most {frame_limit} bytes",
                self.max_request_bytes
            );
        }
        let peak = loupe_collector::inflight::peak_for(self.max_request_bytes);
        if self.max_inflight_bytes < peak {
            bail!(
                "LOUPE_MAX_INFLIGHT_BYTES is {} but one request of LOUPE_MAX_REQUEST_BYTES ({}) may hold up to {peak} bytes while it is decoded: raise it to at least {peak}",
                self.max_inflight_bytes,
                self.max_request_bytes
            );
        }
        if self.gc_grace < Duration::from_secs(1) {
            bail!("LOUPE_GC_GRACE must be at least 1s");
        }
        if self.catalog_refresh_interval * 2 > self.gc_grace {
            bail!(
                "LOUPE_CATALOG_REFRESH_INTERVAL ({}) must be at most half of LOUPE_GC_GRACE ({}): a query role's catalog may be that stale, and the files it names must still exist",
                humantime::format_duration(self.catalog_refresh_interval),
                humantime::format_duration(self.gc_grace)
            );
        }
        self.resolver()?;
        Ok(())
    }

    /// The settings as a JSON object for the start-up log line; token values are redacted.
    pub fn redacted(&self) -> serde_json::Value {
        let tenants: Vec<String> = self
            .auth_tokens
            .split(',')
            .filter_map(|p| p.split_once('=').map(|(_, t)| format!("***={}", t.trim())))
            .collect();
        serde_json::json!({
            "data_dir": self.data_dir,
            "storage_url": self.storage_url.clone().unwrap_or_else(|| "file://{data_dir}/objects".into()),
            "http_addr": self.http_addr.to_string(),
            "otlp_grpc_addr": self.otlp_grpc_addr.to_string(),
            "otlp_http_addr": self.otlp_http_addr.to_string(),
            "flush_interval": humantime::format_duration(self.flush_interval).to_string(),
            "retention": humantime::format_duration(self.retention).to_string(),
            "max_future_skew": humantime::format_duration(self.max_future_skew).to_string(),
            "compaction_interval": humantime::format_duration(self.compaction_interval).to_string(),
            "compaction_min_files": self.compaction_min_files,
            "catalog_refresh_interval": humantime::format_duration(self.catalog_refresh_interval).to_string(),
            "gc_grace": humantime::format_duration(self.gc_grace).to_string(),
            "auth_tokens": tenants,
            "max_request_bytes": self.max_request_bytes,
            "max_buffer_bytes": self.max_buffer_bytes,
            "max_inflight_bytes": self.max_inflight_bytes,
            "max_log_line_bytes": self.max_log_line_bytes,
            "max_series_per_tenant": self.max_series_per_tenant,
            "wal_max_bytes": self.wal_max_bytes,
            "log_format": format!("{:?}", self.log_format).to_lowercase(),
            "log": self.log,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("loupe").chain(args.iter().copied()))
    }

    #[test]
    fn defaults_bind_loopback() {
        let Role::Server(s) = parse(&["server"]).unwrap().role else {
            panic!()
        };
        assert_eq!(s.common.http_addr.to_string(), "127.0.0.1:7070");
        assert_eq!(s.common.otlp_grpc_addr.to_string(), "127.0.0.1:4317");
        assert_eq!(s.common.otlp_http_addr.to_string(), "127.0.0.1:4318");
        assert_eq!(s.common.max_request_bytes, 20 << 20);
        s.common.validate().unwrap();
    }

    #[test]
    fn bad_values_are_rejected_with_a_message() {
        let e = parse(&["server", "--flush-interval", "soon"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("flush-interval"), "{e}");
        let e = parse(&["server", "--max-request-bytes", "20XB"])
            .unwrap_err()
            .to_string();
        assert!(e.contains("invalid size unit"), "{e}");
        let Role::Server(s) = parse(&["server", "--auth-tokens", "short=a"]).unwrap().role else {
            panic!()
        };
        assert!(
            s.common
                .validate()
                .unwrap_err()
                .to_string()
                .contains("at least 8")
        );
        let Role::Server(s) = parse(&["server", "--auth-tokens", "longenough=../x"])
            .unwrap()
            .role
        else {
            panic!()
        };
        assert!(
            s.common
                .validate()
                .unwrap_err()
                .to_string()
                .contains("invalid tenant")
        );
        let invalid = |args: &[&str]| {
            let Role::Server(s) = parse(args).unwrap().role else {
                panic!()
            };
            s.common.validate().unwrap_err().to_string()
        };
        let e = invalid(&[
            "server",
            "--max-request-bytes",
            "1GiB",
            "--max-inflight-bytes",
            "8GiB",
        ]);
        assert!(
            e.contains("write-ahead log holds records of at most"),
            "{e}"
        );
        let e = invalid(&["server", "--max-request-bytes", "64MiB"]);
        assert!(e.contains("LOUPE_MAX_INFLIGHT_BYTES"), "{e}");
        let e = invalid(&[
            "server",
            "--gc-grace",
            "10s",
            "--catalog-refresh-interval",
            "6s",
        ]);
        assert!(e.contains("at most half of LOUPE_GC_GRACE"), "{e}");
    }

    #[test]
    fn tokens_are_redacted() {
        let Role::Server(s) = parse(&["server", "--auth-tokens", "supersecret1=acme"])
            .unwrap()
            .role
        else {
            panic!()
        };
        let printed = s.common.redacted().to_string();
        assert!(!printed.contains("supersecret1"));
        assert!(printed.contains("***=acme"));
    }
}
