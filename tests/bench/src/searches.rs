//! Trace searches the bench times, each with its SQL twin for the DuckDB baseline: the
//! form searches of the native API, and TraceQL searches (`q=`) covering one filter, a
//! pipeline count, two spansets that must both match, and a parent → child structure.
//! `duckdb_baseline.py` runs the same searches over the very Parquet files Loupe wrote.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use anyhow::{Context, bail};
use serde_json::json;

use crate::Args;
use crate::phases::{Ctx, timed_get};
use crate::server::Server;
use crate::tracegen::TraceInfo;

pub struct Search {
    /// The query string of `/api/v1/traces`.
    pub query: String,
    /// SQL selecting the ids of the 20 newest matching traces; `?`, `?` are start and end (ns).
    pub sql_ids: String,
}

fn range(start_ns: u64, end_ns: u64) -> String {
    format!(
        "start={}&end={}&limit=20",
        start_ns / 1_000_000,
        end_ns / 1_000_000 + 1
    )
}

/// The newest 20 traces with a span matching `cond`.
fn span_sql(cond: &str) -> String {
    format!(
        "SELECT trace_id FROM spans WHERE {cond} AND epoch_ns(start_time) BETWEEN ? AND ? \
         GROUP BY trace_id ORDER BY max(start_time) DESC LIMIT 20"
    )
}

pub fn searches(start_ns: u64, end_ns: u64) -> Vec<Search> {
    let range = range(start_ns, end_ns);
    let s = |query: String, cond: &str| Search {
        query,
        sql_ids: span_sql(cond),
    };
    vec![
        s(
            format!("service=checkout&tags=rpc.method%3DPlaceOrder&minDuration=5ms&{range}"),
            "service_name = 'checkout' AND rpc_method = 'PlaceOrder' AND duration_nano >= 5000000",
        ),
        s(
            format!("service=catalog&tags=db.system%3Dpostgresql&minDuration=2ms&{range}"),
            "service_name = 'catalog' AND db_system = 'postgresql' AND duration_nano >= 2000000",
        ),
        s(
            format!(
                "service=api-gateway&tags=http.route%3D%2Fapi%2Fv1%2Fcart&minDuration=1ms&{range}"
            ),
            "service_name = 'api-gateway' AND http_route = '/api/v1/cart' AND duration_nano >= 1000000",
        ),
        s(
            format!("service=payment&status=error&{range}"),
            "service_name = 'payment' AND status_code = 2",
        ),
        s(
            format!(
                "service=frontend-web&tags=http.response.status_code%3D500&minDuration=1ms&{range}"
            ),
            "service_name = 'frontend-web' AND http_response_status_code = 500 AND duration_nano >= 1000000",
        ),
    ]
}

pub fn traceql_searches(start_ns: u64, end_ns: u64) -> Vec<Search> {
    let range = range(start_ns, end_ns);
    let q = |traceql: &str| {
        let q: String = url::form_urlencoded::byte_serialize(traceql.as_bytes()).collect();
        format!("q={q}&{range}")
    };
    let window = "epoch_ns(start_time) BETWEEN ? AND ?";
    vec![
        Search {
            query: q(
                r#"{ resource.service.name = "checkout" && span.rpc.method = "PlaceOrder" && duration >= 5ms }"#,
            ),
            sql_ids: span_sql(
                "service_name = 'checkout' AND rpc_method = 'PlaceOrder' AND duration_nano >= 5000000",
            ),
        },
        Search {
            query: q(r#"{ resource.service.name = "payment" && status = error }"#),
            sql_ids: span_sql("service_name = 'payment' AND status_code = 2"),
        },
        Search {
            query: q(r#"{ span.db.system = "postgresql" && duration > 2ms } | count() > 2"#),
            sql_ids: format!(
                "SELECT trace_id FROM spans WHERE db_system = 'postgresql' AND duration_nano > 2000000 \
                 AND {window} GROUP BY trace_id HAVING count(*) > 2 ORDER BY max(start_time) DESC LIMIT 20"
            ),
        },
        Search {
            query: q(
                r#"{ resource.service.name = "api-gateway" && span.http.route = "/api/v1/cart" } && { status = error }"#,
            ),
            sql_ids: format!(
                "SELECT trace_id FROM spans WHERE {window} GROUP BY trace_id \
                 HAVING bool_or(service_name = 'api-gateway' AND http_route = '/api/v1/cart') \
                 AND bool_or(status_code = 2) ORDER BY max(start_time) DESC LIMIT 20"
            ),
        },
        Search {
            query: q(
                r#"{ resource.service.name = "checkout" } > { span.db.system = "postgresql" }"#,
            ),
            sql_ids: "SELECT c.trace_id FROM spans c JOIN spans p ON c.trace_id = p.trace_id \
                 AND c.parent_span_id = p.span_id WHERE p.service_name = 'checkout' \
                 AND c.db_system = 'postgresql' AND epoch_ns(c.start_time) BETWEEN ? AND ? \
                 GROUP BY c.trace_id ORDER BY max(c.start_time) DESC LIMIT 20"
                .to_string(),
        },
    ]
}

pub async fn run_searches(
    ctx: &Ctx<'_>,
    server: &Server,
    list: &[Search],
) -> anyhow::Result<(Vec<f64>, Vec<usize>)> {
    let mut ms = Vec::new();
    let mut hits = Vec::new();
    for s in list {
        let url = server.url(&format!("/api/v1/traces?{}", s.query));
        let (_, body) = timed_get(&ctx.client, &url).await?; // warm-up
        hits.push(body["traces"].as_array().map_or(0, |a| a.len()));
        for _ in 0..ctx.sizes.search_repeat {
            ms.push(timed_get(&ctx.client, &url).await?.0);
        }
    }
    Ok((ms, hits))
}

fn python(args: &Args) -> PathBuf {
    args.python
        .clone()
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"))
}

/// Runs a baseline script of this crate with the repository's Python: `job` as JSON on its
/// stdin, its stdout parsed as JSON.
pub fn python_job(
    args: &Args,
    script: &str,
    job: &serde_json::Value,
    what: &str,
) -> anyhow::Result<serde_json::Value> {
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(script);
    let mut child = Command::new(python(args))
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| {
            format!("cannot run the {what} baseline (run tests/setup.sh for the .venv)")
        })?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(job.to_string().as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("the {what} baseline failed");
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}

/// DuckDB's warm timings: trace by id for `ids`, then each list of searches. Returns the
/// by-id timings followed by one vector per list.
pub fn duckdb(
    args: &Args,
    files: &[String],
    ids: &[&TraceInfo],
    lists: &[&[Search]],
    (start, end): (u64, u64),
    repeat: usize,
) -> anyhow::Result<Vec<Vec<f64>>> {
    let job = json!({
        "files": files,
        "trace_ids": ids.iter().map(|t| hex::encode(t.trace_id)).collect::<Vec<_>>(),
        "search_lists": lists.iter().map(|l| l.iter().map(|s| json!({"sql_ids": s.sql_ids, "start": start, "end": end})).collect::<Vec<_>>()).collect::<Vec<_>>(),
        "repeat": repeat,
    });
    let v = python_job(args, "duckdb_baseline.py", &job, "DuckDB")?;
    let floats = |a: &serde_json::Value| -> Vec<f64> {
        a.as_array()
            .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
            .unwrap_or_default()
    };
    let mut out = vec![floats(&v["trace_by_id_ms"])];
    for l in v["search_ms"].as_array().into_iter().flatten() {
        out.push(floats(l));
    }
    Ok(out)
}
