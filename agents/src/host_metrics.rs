//! Host metrics read from `/proc` and `/sys` (under `LOUPE_AGENT_HOST_ROOT`, the host's
//! root mounted into the agent's container), named as OpenTelemetry's host-metrics semantic
//! conventions name them, and encoded as one OTLP metrics request per collection:
//!
//! | metric | kind, unit | attributes | from |
//! | --- | --- | --- | --- |
//! | `system.cpu.time` | cumulative monotonic sum, `s` | `cpu`, `state` | `/proc/stat` |
//! | `system.cpu.load_average.1m`, `.5m`, `.15m` | gauge, `{thread}` | — | `/proc/loadavg` |
//! | `system.memory.usage` | cumulative sum, `By` | `state` (used, free, buffered, cached) | `/proc/meminfo` |
//! | `system.disk.io` | cumulative monotonic sum, `By` | `device`, `direction` | `/proc/diskstats` |
//! | `system.disk.operations` | cumulative monotonic sum, `{operation}` | `device`, `direction` | `/proc/diskstats` |
//! | `system.filesystem.usage` | cumulative sum, `By` | `device`, `mountpoint`, `type`, `state` (used, free, reserved) | `/proc/1/mounts`, `statvfs` |
//! | `system.network.io` | cumulative monotonic sum, `By` | `device`, `direction` | `/proc/1/net/dev` |
//! | `system.network.packets`, `system.network.errors` | cumulative monotonic sum | `device`, `direction` | `/proc/1/net/dev` |
//!
//! The resource is the node: `host.name`, `k8s.node.name`, `service.name` `host-metrics` and
//! `service.instance.id` the node's name, so Prometheus queries see `job="host-metrics"`,
//! `instance="<node>"`. Loop and RAM disks (`loop*`, `ram*`, `zram*`) and pseudo file
//! systems are left out; partitions are reported beside their disks, as the node exporter
//! and the OpenTelemetry host-metrics receiver report them. Network counters are read through PID 1 so a DaemonSet pod sees the
//! host's interfaces when it shares the host's PID namespace or mounts the host's `/proc`.

use std::path::{Path, PathBuf};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, NumberDataPoint, Sum, metric, number_data_point,
};

use crate::otlp_metrics::{kv, now_nanos};

/// Clock ticks per second of `/proc/stat` (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// A data point: attributes and value.
type Point = (Vec<(&'static str, String)>, f64);

/// Reads the host under `root` (`/` on the host itself).
pub struct HostMetrics {
    root: PathBuf,
    node: String,
    start_unix_nano: u64,
}

fn read(root: &Path, rel: &str) -> String {
    std::fs::read_to_string(root.join(rel)).unwrap_or_default()
}

fn cpu_times(stat: &str) -> Vec<Point> {
    const STATES: [&str; 8] = [
        "user",
        "nice",
        "system",
        "idle",
        "wait",
        "interrupt",
        "softirq",
        "steal",
    ];
    let mut out = Vec::new();
    for line in stat.lines() {
        let mut f = line.split_whitespace();
        let Some(cpu) = f.next().and_then(|c| c.strip_prefix("cpu")) else {
            continue;
        };
        if cpu.is_empty() {
            continue; // the all-CPU line: the per-CPU lines add up to it
        }
        for (state, v) in STATES.iter().zip(f) {
            if let Ok(ticks) = v.parse::<f64>() {
                out.push((
                    vec![("cpu", format!("cpu{cpu}")), ("state", state.to_string())],
                    ticks / USER_HZ,
                ));
            }
        }
    }
    out
}

fn meminfo(text: &str) -> Vec<Point> {
    let kb = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .map(|v| v * 1024.0)
    };
    let (Some(total), Some(free)) = (kb("MemTotal"), kb("MemFree")) else {
        return Vec::new();
    };
    let buffers = kb("Buffers").unwrap_or(0.0);
    let cached = kb("Cached").unwrap_or(0.0) + kb("SReclaimable").unwrap_or(0.0);
    let used = (total - free - buffers - cached).max(0.0);
    [
        ("used", used),
        ("free", free),
        ("buffered", buffers),
        ("cached", cached),
    ]
    .into_iter()
    .map(|(s, v)| (vec![("state", s.to_string())], v))
    .collect()
}

fn skip_device(name: &str) -> bool {
    name.starts_with("loop") || name.starts_with("ram") || name.starts_with("zram")
}

/// (`system.disk.io`, `system.disk.operations`) points.
fn diskstats(text: &str) -> (Vec<Point>, Vec<Point>) {
    let (mut io, mut ops) = (Vec::new(), Vec::new());
    for line in text.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 10 || skip_device(f[2]) {
            continue;
        }
        let n = |i: usize| f[i].parse::<f64>().unwrap_or(0.0);
        let dev = f[2].to_string();
        for (dir, ops_i, sectors_i) in [("read", 3, 5), ("write", 7, 9)] {
            let attrs = vec![("device", dev.clone()), ("direction", dir.to_string())];
            io.push((attrs.clone(), n(sectors_i) * 512.0));
            ops.push((attrs, n(ops_i)));
        }
    }
    (io, ops)
}

/// (`system.network.io`, `.packets`, `.errors`) points.
fn netdev(text: &str) -> [Vec<Point>; 3] {
    let mut out: [Vec<Point>; 3] = Default::default();
    for line in text.lines().skip(2) {
        let Some((dev, rest)) = line.split_once(':') else {
            continue;
        };
        let dev = dev.trim().to_string();
        let f: Vec<f64> = rest
            .split_whitespace()
            .map(|v| v.parse().unwrap_or(0.0))
            .collect();
        if f.len() < 16 {
            continue;
        }
        for (dir, base) in [("receive", 0), ("transmit", 8)] {
            let attrs = vec![("device", dev.clone()), ("direction", dir.to_string())];
            out[0].push((attrs.clone(), f[base]));
            out[1].push((attrs.clone(), f[base + 1]));
            out[2].push((attrs, f[base + 2]));
        }
    }
    out
}

const PSEUDO_FS: [&str; 14] = [
    "proc",
    "sysfs",
    "cgroup",
    "cgroup2",
    "devpts",
    "mqueue",
    "debugfs",
    "tracefs",
    "securityfs",
    "pstore",
    "bpf",
    "fusectl",
    "configfs",
    "nsfs",
];

fn filesystems(root: &Path, mounts: &str) -> Vec<Point> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for line in mounts.lines() {
        let f: Vec<&str> = line.split_whitespace().collect();
        if f.len() < 3 || PSEUDO_FS.contains(&f[2]) || f[2] == "overlay" || !seen.insert(f[1]) {
            continue;
        }
        let path = root.join(f[1].trim_start_matches('/'));
        let Some(s) = loupe_core::fs::statvfs(&path) else {
            continue;
        };
        let bs = s.f_frsize as f64;
        let total = s.f_blocks as f64 * bs;
        if total == 0.0 {
            continue;
        }
        let free = s.f_bavail as f64 * bs;
        let reserved = (s.f_bfree as f64 - s.f_bavail as f64) * bs;
        let used = total - s.f_bfree as f64 * bs;
        for (state, v) in [("used", used), ("free", free), ("reserved", reserved)] {
            out.push((
                vec![
                    ("device", f[0].to_string()),
                    ("mountpoint", f[1].to_string()),
                    ("type", f[2].to_string()),
                    ("state", state.to_string()),
                ],
                v,
            ));
        }
    }
    out
}

impl HostMetrics {
    pub fn new(root: PathBuf, node: String) -> Self {
        HostMetrics {
            root,
            node,
            start_unix_nano: now_nanos(),
        }
    }

    fn points(
        &self,
        attrs: Vec<(&'static str, String)>,
        v: f64,
        now: u64,
        cumulative: bool,
    ) -> NumberDataPoint {
        NumberDataPoint {
            attributes: attrs.iter().map(|(k, v)| kv(k, v)).collect(),
            start_time_unix_nano: if cumulative { self.start_unix_nano } else { 0 },
            time_unix_nano: now,
            value: Some(number_data_point::Value::AsDouble(v)),
            ..Default::default()
        }
    }

    fn sum(&self, name: &str, unit: &str, monotonic: bool, pts: Vec<Point>, now: u64) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(metric::Data::Sum(Sum {
                data_points: pts
                    .into_iter()
                    .map(|(a, v)| self.points(a, v, now, true))
                    .collect(),
                aggregation_temporality: AggregationTemporality::Cumulative as i32,
                is_monotonic: monotonic,
            })),
            ..Default::default()
        }
    }

    fn gauge(&self, name: &str, unit: &str, v: f64, now: u64) -> Metric {
        Metric {
            name: name.into(),
            unit: unit.into(),
            data: Some(metric::Data::Gauge(Gauge {
                data_points: vec![self.points(Vec::new(), v, now, false)],
            })),
            ..Default::default()
        }
    }

    /// One collection: the request and its number of data points. Blocking (reads files).
    pub fn collect(&self) -> (ExportMetricsServiceRequest, usize) {
        let now = now_nanos();
        let r = &self.root;
        let mut metrics = vec![
            self.sum(
                "system.cpu.time",
                "s",
                true,
                cpu_times(&read(r, "proc/stat")),
                now,
            ),
            self.sum(
                "system.memory.usage",
                "By",
                false,
                meminfo(&read(r, "proc/meminfo")),
                now,
            ),
        ];
        let load = read(r, "proc/loadavg");
        for (i, name) in ["1m", "5m", "15m"].iter().enumerate() {
            if let Some(v) = load.split_whitespace().nth(i).and_then(|v| v.parse().ok()) {
                metrics.push(self.gauge(
                    &format!("system.cpu.load_average.{name}"),
                    "{thread}",
                    v,
                    now,
                ));
            }
        }
        let (io, ops) = diskstats(&read(r, "proc/diskstats"));
        metrics.push(self.sum("system.disk.io", "By", true, io, now));
        metrics.push(self.sum("system.disk.operations", "{operation}", true, ops, now));
        metrics.push(self.sum(
            "system.filesystem.usage",
            "By",
            false,
            filesystems(r, &read(r, "proc/1/mounts")),
            now,
        ));
        let [nio, packets, errors] = netdev(&read(r, "proc/1/net/dev"));
        metrics.push(self.sum("system.network.io", "By", true, nio, now));
        metrics.push(self.sum("system.network.packets", "{packet}", true, packets, now));
        metrics.push(self.sum("system.network.errors", "{error}", true, errors, now));
        let points = metrics
            .iter()
            .map(|m| match &m.data {
                Some(metric::Data::Sum(s)) => s.data_points.len(),
                Some(metric::Data::Gauge(g)) => g.data_points.len(),
                _ => 0,
            })
            .sum();
        let resource = vec![
            kv("service.name", "host-metrics"),
            kv("service.instance.id", &self.node),
            kv("host.name", &self.node),
            kv("k8s.node.name", &self.node),
        ];
        let req = crate::otlp_metrics::request(resource, "hostmetrics", metrics);
        (req, points)
    }
}

/// Collects every `interval` and appends each collection to the buffer as a metrics
/// record (waiting while the buffer refuses, as the logs do).
pub async fn run(
    host: HostMetrics,
    buffer: std::sync::Arc<crate::buffer::Buffer>,
    interval: std::time::Duration,
) {
    let host = std::sync::Arc::new(host);
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let h = host.clone();
        let Ok((req, points)) = tokio::task::spawn_blocking(move || h.collect()).await else {
            continue;
        };
        crate::otlp_metrics::append(&buffer, &req, points).await;
        metrics::counter!("loupe_agent_host_metric_points_total").increment(points as u64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_read_as_the_conventions_name_them() {
        let stat = "cpu  10 0 5 100 0 0 0 0 0 0\ncpu0 200 1 50 1000 3 0 2 0 0 0\nintr 5\n";
        let cpu = cpu_times(stat);
        assert_eq!(cpu.len(), 8, "one point per state of cpu0");
        assert_eq!(
            cpu[0],
            (vec![("cpu", "cpu0".into()), ("state", "user".into())], 2.0)
        );
        let mem = meminfo(
            "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 50 kB\nCached: 200 kB\nSReclaimable: 50 kB\n",
        );
        let used = mem.iter().find(|p| p.0[0].1 == "used").unwrap().1;
        assert_eq!(used, 600.0 * 1024.0);
        let total: f64 = mem.iter().map(|p| p.1).sum();
        assert_eq!(total, 1000.0 * 1024.0, "the states add up to the total");
        let (io, ops) = diskstats(
            " 7 0 loop0 1 2 3 4 5 6 7 8 9 10 11\n 259 0 nvme0n1 10 0 80 5 20 0 160 9 0 30 40\n",
        );
        assert_eq!(io.len(), 2, "loop devices are left out");
        assert_eq!(io[0].1, 80.0 * 512.0);
        assert_eq!(ops[1].1, 20.0);
        let net = netdev("h1\nh2\n  eth0: 100 2 0 0 0 0 0 0 300 4 1 0 0 0 0 0\n");
        assert_eq!(
            net[0][1],
            (
                vec![("device", "eth0".into()), ("direction", "transmit".into())],
                300.0
            )
        );
        assert_eq!(net[2][1].1, 1.0);
    }

    #[test]
    fn a_collection_of_this_host_has_every_metric() {
        let h = HostMetrics::new("/".into(), "node-a".into());
        let (req, points) = h.collect();
        let names: Vec<&str> = req.resource_metrics[0].scope_metrics[0]
            .metrics
            .iter()
            .map(|m| m.name.as_str())
            .collect();
        for n in [
            "system.cpu.time",
            "system.memory.usage",
            "system.cpu.load_average.1m",
            "system.disk.io",
            "system.filesystem.usage",
            "system.network.io",
        ] {
            assert!(names.contains(&n), "{n} in {names:?}");
        }
        assert!(points > 10, "{points}");
    }
}
