//! Seeded metrics like a Kubernetes cluster's: node-exporter hosts (CPU per core and mode,
//! memory, load, disks, network, filesystems) and application pods (RED counters per route,
//! method and status, a latency histogram per route, process gauges; one pod per service
//! restarts half way, resetting its counters). Scraped every 15 s with a per-target offset.
//!
//! The same scrapes encode two ways: remote-write requests as Prometheus sends them (one
//! sample per series entry, at most 2,000 per request, a target's series always on the same
//! shard so each series arrives in order), and OTLP/HTTP exports (one resource per target,
//! cumulative sums, gauges and explicit-bucket histograms) that convert to the very same
//! series.

use loupe_collector::prom::wire::{Label, Sample, TimeSeries, WriteRequest};
use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Histogram, HistogramDataPoint, Metric, NumberDataPoint,
    ResourceMetrics, ScopeMetrics, Sum, metric::Data, number_data_point,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const SCRAPE_MS: i64 = 15_000;
pub const SAMPLES_PER_REQUEST: usize = 2000;
const BOUNDS: [f64; 10] = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
const ROUTES: [(&str, &str); 5] = [
    ("/api/cart", "GET"),
    ("/api/cart", "POST"),
    ("/api/items", "GET"),
    ("/api/checkout", "POST"),
    ("/healthz", "GET"),
];
const STATUSES: [&str; 4] = ["200", "201", "404", "500"];

type Attrs = Vec<(&'static str, String)>;

/// One scrape of one target.
#[derive(Default)]
pub struct Scrape {
    pub counters: Vec<(&'static str, Attrs, f64)>,
    pub gauges: Vec<(&'static str, Attrs, f64)>,
    /// Name, attributes, per-bucket counts (last = +Inf), sum.
    pub histograms: Vec<(&'static str, Attrs, Vec<u64>, f64)>,
}

impl Scrape {
    pub fn samples(&self) -> usize {
        self.counters.len()
            + self.gauges.len()
            + self.histograms.iter().map(|h| h.2.len() + 2).sum::<usize>()
    }
}

struct Target {
    job: String,
    instance: String,
    node: bool,
    offset: i64,
    counters: Vec<f64>,
    buckets: Vec<Vec<u64>>,
    sums: Vec<f64>,
    gauges: Vec<f64>,
    restart_at: Option<usize>,
}

pub struct MetricGen {
    rng: StdRng,
    targets: Vec<Target>,
    pub start_ms: i64,
    pub scrapes: usize,
}

impl MetricGen {
    pub fn new(
        seed: u64,
        services: usize,
        pods: usize,
        hosts: usize,
        start_ms: i64,
        scrapes: usize,
    ) -> Self {
        let mut rng = StdRng::seed_from_u64(seed);
        let mut targets = Vec::new();
        for h in 0..hosts {
            targets.push(Target {
                job: "node".into(),
                instance: format!("node-{h:02}.cluster.local:9100"),
                node: true,
                offset: rng.random_range(0..SCRAPE_MS),
                counters: vec![0.0; 32 + 6 + 8],
                buckets: vec![],
                sums: vec![],
                gauges: (0..13).map(|_| rng.random_range(1.0..8.0)).collect(),
                restart_at: None,
            });
        }
        for s in 0..services {
            for p in 0..pods {
                targets.push(Target {
                    job: format!("svc-{s:02}"),
                    instance: format!("10.1.{s}.{p}:8080"),
                    node: false,
                    offset: rng.random_range(0..SCRAPE_MS),
                    counters: (0..ROUTES.len() * STATUSES.len() + 1)
                        .map(|_| rng.random_range(0.0..5000.0f64).round())
                        .collect(),
                    buckets: vec![vec![0; BOUNDS.len() + 1]; 2],
                    sums: vec![0.0; 2],
                    gauges: vec![
                        rng.random_range(5e7..3e8f64).round(),
                        rng.random_range(20.0..200.0f64).round(),
                    ],
                    restart_at: (p == 0).then_some(scrapes / 2),
                });
            }
        }
        MetricGen {
            rng,
            targets,
            start_ms,
            scrapes,
        }
    }

    /// The scrapes at step `k`: (target index, time, scrape).
    pub fn step(&mut self, k: usize) -> Vec<(usize, i64, Scrape)> {
        let rng = &mut self.rng;
        let mut out = Vec::with_capacity(self.targets.len());
        for (i, t) in self.targets.iter_mut().enumerate() {
            let time = self.start_ms + k as i64 * SCRAPE_MS + t.offset;
            let mut s = Scrape::default();
            let inst = || vec![("job", t.job.clone()), ("instance", t.instance.clone())];
            if t.node {
                let modes = [
                    "idle", "user", "system", "iowait", "irq", "softirq", "steal", "nice",
                ];
                let share = [0.7, 0.18, 0.07, 0.02, 0.005, 0.01, 0.0, 0.015];
                for cpu in 0..4 {
                    for (m, mode) in modes.iter().enumerate() {
                        // Hundredths of a second (USER_HZ), as /proc/stat counts them.
                        let c = &mut t.counters[cpu * 8 + m];
                        *c += (15.0 * share[m] * rng.random_range(0.8..1.2f64) * 100.0).round();
                        let mut a = inst();
                        a.push(("cpu", cpu.to_string()));
                        a.push(("mode", mode.to_string()));
                        s.counters.push(("node_cpu_seconds_total", a, *c / 100.0));
                    }
                }
                for (d, dev) in ["sda", "sdb"].iter().enumerate() {
                    for (j, name) in [
                        "node_disk_read_bytes_total",
                        "node_disk_written_bytes_total",
                        "node_disk_io_time_seconds_total",
                    ]
                    .iter()
                    .enumerate()
                    {
                        let c = &mut t.counters[32 + d * 3 + j];
                        // io_time in milliseconds, as the kernel counts it.
                        *c += if j == 2 {
                            (rng.random_range(0.0..2.0f64) * 1000.0).round()
                        } else {
                            (rng.random_range(0..200) * 4096) as f64
                        };
                        let mut a = inst();
                        a.push(("device", dev.to_string()));
                        s.counters
                            .push((name, a, if j == 2 { *c / 1000.0 } else { *c }));
                    }
                }
                for (d, dev) in ["eth0", "lo"].iter().enumerate() {
                    for (j, name) in [
                        "node_network_receive_bytes_total",
                        "node_network_transmit_bytes_total",
                        "node_network_receive_packets_total",
                        "node_network_transmit_packets_total",
                    ]
                    .iter()
                    .enumerate()
                    {
                        let c = &mut t.counters[38 + d * 4 + j];
                        *c += if j < 2 {
                            rng.random_range(1e4..1e6f64).round()
                        } else {
                            rng.random_range(10.0..1000.0f64).round()
                        };
                        let mut a = inst();
                        a.push(("device", dev.to_string()));
                        s.counters.push((name, a, *c));
                    }
                }
                let total = 16.0 * 1024.0 * 1024.0 * 1024.0;
                for (j, name) in [
                    "node_memory_MemTotal_bytes",
                    "node_memory_MemAvailable_bytes",
                    "node_memory_MemFree_bytes",
                    "node_memory_Cached_bytes",
                    "node_memory_Buffers_bytes",
                ]
                .iter()
                .enumerate()
                {
                    let v = if j == 0 {
                        total
                    } else {
                        let g = &mut t.gauges[j];
                        *g = (*g + rng.random_range(-0.002..0.002)).clamp(0.5, 8.0);
                        (*g * 1e9 / 4096.0).round() * 4096.0
                    };
                    s.gauges.push((name, inst(), v));
                }
                for (j, name) in ["node_load1", "node_load5", "node_load15"]
                    .iter()
                    .enumerate()
                {
                    let g = &mut t.gauges[5 + j];
                    *g = (*g + rng.random_range(-0.3..0.3f64)).clamp(0.0, 16.0);
                    s.gauges.push((name, inst(), (*g * 100.0).round() / 100.0));
                }
                for (m, mount) in ["/", "/var"].iter().enumerate() {
                    let mut a = inst();
                    a.push(("mountpoint", mount.to_string()));
                    a.push(("device", format!("/dev/sda{}", m + 1)));
                    a.push(("fstype", "ext4".into()));
                    let size = 100e9 * (m + 1) as f64;
                    let g = &mut t.gauges[8 + m];
                    *g = (*g - rng.random_range(0.0..0.001)).max(0.1);
                    s.gauges
                        .push(("node_filesystem_size_bytes", a.clone(), size));
                    s.gauges.push((
                        "node_filesystem_avail_bytes",
                        a,
                        (size * *g / 8.0 / 4096.0).round() * 4096.0,
                    ));
                }
            } else {
                if t.restart_at == Some(k) {
                    t.counters.iter_mut().for_each(|c| *c = 0.0);
                    t.buckets
                        .iter_mut()
                        .for_each(|b| b.iter_mut().for_each(|c| *c = 0));
                    t.sums.iter_mut().for_each(|c| *c = 0.0);
                }
                for (r, (route, method)) in ROUTES.iter().enumerate() {
                    for (st, status) in STATUSES.iter().enumerate() {
                        let rate = [40.0, 5.0, 2.0, 0.5][st]
                            * if *route == "/healthz" { 0.2 } else { 1.0 };
                        let c = &mut t.counters[r * STATUSES.len() + st];
                        *c += (rate * rng.random_range(0.5..1.5f64)).round();
                        let mut a = inst();
                        a.push(("route", route.to_string()));
                        a.push(("method", method.to_string()));
                        a.push(("status", status.to_string()));
                        s.counters.push(("http_requests_total", a, *c));
                    }
                }
                let cpu = t.counters.len() - 1;
                t.counters[cpu] += (rng.random_range(0.1..2.0f64) * 100.0).round();
                s.counters
                    .push(("process_cpu_seconds_total", inst(), t.counters[cpu] / 100.0));
                for h in 0..2 {
                    let n = rng.random_range(20..200);
                    for _ in 0..n {
                        let x: f64 = rng.random_range(0.0..1.0f64).powi(3) * 3.0;
                        let b = BOUNDS.iter().position(|&u| x <= u).unwrap_or(BOUNDS.len());
                        t.buckets[h][b] += 1;
                        // Microseconds, summed as integers (a client library's float sum
                        // printed in text is a decimal too).
                        t.sums[h] += (x * 1e6).round();
                    }
                    let mut a = inst();
                    a.push(("route", ["/api/cart", "/api/checkout"][h].to_string()));
                    s.histograms.push((
                        "http_request_duration_seconds",
                        a,
                        t.buckets[h].clone(),
                        t.sums[h] / 1e6,
                    ));
                }
                t.gauges[0] = (t.gauges[0] + rng.random_range(-1e6..1e6f64))
                    .round()
                    .max(1e7);
                t.gauges[1] = (t.gauges[1] + rng.random_range(-5.0..5.0f64))
                    .round()
                    .max(5.0);
                s.gauges
                    .push(("process_resident_memory_bytes", inst(), t.gauges[0]));
                s.gauges.push(("go_goroutines", inst(), t.gauges[1]));
            }
            out.push((i, time, s));
        }
        out
    }
}

fn label(n: &str, v: &str) -> Label {
    Label {
        name: n.to_string(),
        value: v.to_string(),
    }
}

fn series(name: &str, attrs: &Attrs, extra: Option<(&str, String)>, t: i64, v: f64) -> TimeSeries {
    let mut labels: Vec<Label> = attrs.iter().map(|(k, v)| label(k, v)).collect();
    labels.push(label("__name__", name));
    if let Some((k, v)) = extra {
        labels.push(label(k, &v));
    }
    labels.sort();
    TimeSeries {
        labels,
        samples: vec![Sample {
            value: v,
            timestamp: t,
        }],
        exemplars: vec![],
    }
}

fn le(b: usize) -> String {
    BOUNDS.get(b).map_or("+Inf".to_string(), |u| format!("{u}"))
}

/// A scrape as remote-write entries (one sample each).
pub fn remote_write_series(time: i64, s: &Scrape, out: &mut Vec<TimeSeries>) {
    for (name, a, v) in s.counters.iter().chain(&s.gauges) {
        out.push(series(name, a, None, time, *v));
    }
    for (name, a, counts, sum) in &s.histograms {
        let mut cum = 0;
        for (b, c) in counts.iter().enumerate() {
            cum += c;
            out.push(series(
                &format!("{name}_bucket"),
                a,
                Some(("le", le(b))),
                time,
                cum as f64,
            ));
        }
        out.push(series(&format!("{name}_sum"), a, None, time, *sum));
        out.push(series(&format!("{name}_count"), a, None, time, cum as f64));
    }
}

fn kv(k: &str, v: &str) -> KeyValue {
    KeyValue {
        key: k.to_string(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(v.to_string())),
        }),
        ..Default::default()
    }
}

/// A scrape as one OTLP resource (the target's job and instance as service attributes).
pub fn otlp_resource(job: &str, instance: &str, time: i64, s: &Scrape) -> ResourceMetrics {
    let t = time as u64 * 1_000_000;
    let attrs = |a: &Attrs| -> Vec<KeyValue> {
        a.iter()
            .filter(|(k, _)| *k != "job" && *k != "instance")
            .map(|(k, v)| kv(k, v))
            .collect()
    };
    let point = |a: &Attrs, v: f64| NumberDataPoint {
        attributes: attrs(a),
        time_unix_nano: t,
        value: Some(number_data_point::Value::AsDouble(v)),
        ..Default::default()
    };
    let mut metrics: Vec<Metric> = Vec::new();
    let mut push = |name: &str, data: Data| match metrics.iter_mut().find(|m| m.name == name) {
        Some(m) => match (&mut m.data, data) {
            (Some(Data::Sum(a)), Data::Sum(b)) => a.data_points.extend(b.data_points),
            (Some(Data::Gauge(a)), Data::Gauge(b)) => a.data_points.extend(b.data_points),
            (Some(Data::Histogram(a)), Data::Histogram(b)) => a.data_points.extend(b.data_points),
            _ => {}
        },
        None => metrics.push(Metric {
            name: name.to_string(),
            data: Some(data),
            ..Default::default()
        }),
    };
    for (name, a, v) in &s.counters {
        push(
            name,
            Data::Sum(Sum {
                data_points: vec![point(a, *v)],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: true,
            }),
        );
    }
    for (name, a, v) in &s.gauges {
        push(
            name,
            Data::Gauge(Gauge {
                data_points: vec![point(a, *v)],
            }),
        );
    }
    for (name, a, counts, sum) in &s.histograms {
        push(
            name,
            Data::Histogram(Histogram {
                data_points: vec![HistogramDataPoint {
                    attributes: attrs(a),
                    time_unix_nano: t,
                    count: counts.iter().sum(),
                    sum: Some(*sum),
                    bucket_counts: counts.clone(),
                    explicit_bounds: BOUNDS.to_vec(),
                    ..Default::default()
                }],
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
            }),
        );
    }
    ResourceMetrics {
        resource: Some(Resource {
            attributes: vec![kv("service.name", job), kv("service.instance.id", instance)],
            ..Default::default()
        }),
        scope_metrics: vec![ScopeMetrics {
            metrics,
            ..Default::default()
        }],
        schema_url: String::new(),
    }
}

/// Everything generated, encoded both ways.
pub struct Encoded {
    /// Remote-write bodies (snappy), per shard, in time order.
    pub remote_write: Vec<Vec<bytes::Bytes>>,
    /// OTLP/HTTP protobuf bodies, per shard, in time order.
    pub otlp: Vec<Vec<bytes::Bytes>>,
    pub samples: u64,
    pub series: usize,
    pub end_ms: i64,
}

pub fn generate(g: &mut MetricGen, shards: usize) -> Encoded {
    use prost::Message;
    let jobs: Vec<(String, String)> = g
        .targets
        .iter()
        .map(|t| (t.job.clone(), t.instance.clone()))
        .collect();
    let mut rw_pending: Vec<Vec<TimeSeries>> = vec![Vec::new(); shards];
    let mut otlp_pending: Vec<Vec<ResourceMetrics>> = vec![Vec::new(); shards];
    let mut otlp_points = vec![0usize; shards];
    let mut rw: Vec<Vec<bytes::Bytes>> = vec![Vec::new(); shards];
    let mut otlp: Vec<Vec<bytes::Bytes>> = vec![Vec::new(); shards];
    let snappy = |ts: Vec<TimeSeries>| {
        let body = WriteRequest {
            timeseries: ts,
            metadata: vec![],
        }
        .encode_to_vec();
        bytes::Bytes::from(
            snap::raw::Encoder::new()
                .compress_vec(&body)
                .unwrap_or_default(),
        )
    };
    let otlp_body = |rm: Vec<ResourceMetrics>| {
        bytes::Bytes::from(
            ExportMetricsServiceRequest {
                resource_metrics: rm,
            }
            .encode_to_vec(),
        )
    };
    let (mut samples, mut end_ms, mut series) = (0u64, 0i64, 0usize);
    for k in 0..g.scrapes {
        for (i, time, s) in g.step(k) {
            let shard = i % shards;
            samples += s.samples() as u64;
            if k == 0 {
                series += s.samples();
            }
            end_ms = end_ms.max(time);
            remote_write_series(time, &s, &mut rw_pending[shard]);
            while rw_pending[shard].len() >= SAMPLES_PER_REQUEST {
                let rest = rw_pending[shard].split_off(SAMPLES_PER_REQUEST);
                let full = std::mem::replace(&mut rw_pending[shard], rest);
                rw[shard].push(snappy(full));
            }
            otlp_points[shard] += s.samples();
            otlp_pending[shard].push(otlp_resource(&jobs[i].0, &jobs[i].1, time, &s));
            if otlp_points[shard] >= SAMPLES_PER_REQUEST {
                otlp[shard].push(otlp_body(std::mem::take(&mut otlp_pending[shard])));
                otlp_points[shard] = 0;
            }
        }
    }
    for shard in 0..shards {
        if !rw_pending[shard].is_empty() {
            rw[shard].push(snappy(std::mem::take(&mut rw_pending[shard])));
        }
        if !otlp_pending[shard].is_empty() {
            otlp[shard].push(otlp_body(std::mem::take(&mut otlp_pending[shard])));
        }
    }
    Encoded {
        remote_write: rw,
        otlp,
        samples,
        series,
        end_ms,
    }
}

/// The series count of a generator's targets (for the summary).
pub fn describe(e: &Encoded) -> String {
    format!(
        "{} series, {} samples, {} remote-write and {} OTLP requests",
        e.series,
        e.samples,
        e.remote_write.iter().map(Vec::len).sum::<usize>(),
        e.otlp.iter().map(Vec::len).sum::<usize>()
    )
}
