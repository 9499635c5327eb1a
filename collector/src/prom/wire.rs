//! Prometheus remote-write 1.0 messages (`prometheus.WriteRequest` and what it holds), as
//! prost types. Written here rather than taken from a crate: the published crates for them
//! either pull in a whole Prometheus client or lag prost's version; the messages are a few
//! fields that have not changed since remote write 1.0. The metrics write-ahead-log payload
//! is this message too (uncompressed), whichever protocol delivered the samples.

#[derive(Clone, PartialEq, prost::Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
    #[prost(message, repeated, tag = "3")]
    pub metadata: Vec<MetricMetadata>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    #[prost(message, repeated, tag = "3")]
    pub exemplars: Vec<Exemplar>,
}

#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, Copy, PartialEq, prost::Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct Exemplar {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(double, tag = "2")]
    pub value: f64,
    #[prost(int64, tag = "3")]
    pub timestamp: i64,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricMetadata {
    /// 0 unknown, 1 counter, 2 gauge, 3 histogram, 4 gaugehistogram, 5 summary, 6 info,
    /// 7 stateset.
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(string, tag = "2")]
    pub metric_family_name: String,
    #[prost(string, tag = "4")]
    pub help: String,
    #[prost(string, tag = "5")]
    pub unit: String,
}

pub const TYPE_NAMES: [&str; 8] = [
    "unknown",
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
];

/// The Prometheus name of a metadata type code.
pub fn type_name(code: i32) -> &'static str {
    TYPE_NAMES.get(code as usize).copied().unwrap_or("unknown")
}

/// The metadata type code of a name.
pub fn type_code(name: &str) -> i32 {
    TYPE_NAMES.iter().position(|n| *n == name).unwrap_or(0) as i32
}

/// A remote-write series read in place: the bytes of its label entries (the cache key: a
/// slice of the body when the entries are contiguous, as every sender writes them) and its
/// samples' range in [`RawRequest::samples`].
pub struct RawSeries<'a> {
    pub key: std::borrow::Cow<'a, [u8]>,
    /// The series' id in the series cache: XXH3-128 of `key`.
    pub hash: u128,
    pub samples: std::ops::Range<usize>,
    /// Its exemplars' range in [`RawRequest::exemplars`].
    pub exemplars: std::ops::Range<usize>,
    /// Native histograms the series carries (not stored: counted and refused).
    pub histograms: usize,
}

/// An exemplar as sent: label pairs, time (ms) and value.
pub struct RawExemplar {
    pub labels: Vec<(String, String)>,
    pub t: i64,
    pub v: f64,
}

/// A `WriteRequest` read without allocating per label or sample.
pub struct RawRequest<'a> {
    pub series: Vec<RawSeries<'a>>,
    /// `(timestamp ms, value)`.
    pub samples: Vec<(i64, f64)>,
    pub exemplars: Vec<RawExemplar>,
    pub metadata: Vec<MetricMetadata>,
}

fn varint(b: &[u8], pos: &mut usize) -> Result<u64, String> {
    let mut v = 0u64;
    for shift in (0..64).step_by(7) {
        let byte = *b.get(*pos).ok_or("truncated varint")?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte < 0x80 {
            return Ok(v);
        }
    }
    Err("varint longer than 10 bytes".into())
}

/// The next field of a message: (field number, wire type, payload for length-delimited or
/// the value for varint/fixed types as raw bytes).
fn field<'a>(b: &'a [u8], pos: &mut usize) -> Result<(u64, u8, &'a [u8]), String> {
    let start = *pos;
    let key = varint(b, pos)?;
    let (num, wt) = (key >> 3, (key & 7) as u8);
    let take = |pos: &mut usize, n: usize| -> Result<&'a [u8], String> {
        let end = pos
            .checked_add(n)
            .filter(|&e| e <= b.len())
            .ok_or("field runs past the end")?;
        let s = &b[*pos..end];
        *pos = end;
        Ok(s)
    };
    let payload = match wt {
        0 => {
            let p = *pos;
            varint(b, pos)?;
            &b[p..*pos]
        }
        1 => take(pos, 8)?,
        2 => {
            let n = varint(b, pos)? as usize;
            take(pos, n)?
        }
        5 => take(pos, 4)?,
        _ => return Err(format!("unsupported wire type {wt} at byte {start}")),
    };
    Ok((num, wt, payload))
}

/// Reads a `WriteRequest`; sample and label checks are the caller's.
pub fn read_request(body: &[u8]) -> Result<RawRequest<'_>, String> {
    use prost::Message;
    let mut out = RawRequest {
        series: Vec::new(),
        samples: Vec::new(),
        exemplars: Vec::new(),
        metadata: Vec::new(),
    };
    let mut pos = 0;
    while pos < body.len() {
        let (num, wt, ts) = field(body, &mut pos)?;
        match (num, wt) {
            (1, 2) => out
                .series
                .push(read_series(ts, &mut out.samples, &mut out.exemplars)?),
            (3, 2) => out
                .metadata
                .push(MetricMetadata::decode(ts).map_err(|e| format!("metadata: {e}"))?),
            _ => {}
        }
    }
    Ok(out)
}

fn read_series<'a>(
    ts: &'a [u8],
    samples: &mut Vec<(i64, f64)>,
    exemplars: &mut Vec<RawExemplar>,
) -> Result<RawSeries<'a>, String> {
    use prost::Message;
    let first = samples.len();
    let first_exemplar = exemplars.len();
    let mut labels: Option<std::ops::Range<usize>> = None;
    let mut contiguous = true;
    let mut owned: Vec<u8> = Vec::new();
    let mut histograms = 0;
    let mut pos = 0;
    while pos < ts.len() {
        let start = pos;
        let (num, wt, payload) = field(ts, &mut pos)?;
        match (num, wt) {
            (1, 2) => match &mut labels {
                None => labels = Some(start..pos),
                Some(r) if r.end == start && contiguous => r.end = pos,
                Some(r) => {
                    if contiguous {
                        owned.extend_from_slice(&ts[r.clone()]);
                        contiguous = false;
                    }
                    owned.extend_from_slice(&ts[start..pos]);
                }
            },
            (2, 2) => {
                let (mut v, mut t) = (0.0, 0i64);
                let mut p = 0;
                while p < payload.len() {
                    let (n, w, x) = field(payload, &mut p)?;
                    match (n, w) {
                        (1, 1) => v = f64::from_le_bytes(x.try_into().map_err(|_| "bad double")?),
                        (2, 0) => t = varint(x, &mut 0)? as i64,
                        _ => {}
                    }
                }
                samples.push((t, v));
            }
            (3, 2) => {
                let e = Exemplar::decode(payload).map_err(|e| format!("exemplar: {e}"))?;
                exemplars.push(RawExemplar {
                    labels: e.labels.into_iter().map(|l| (l.name, l.value)).collect(),
                    t: e.timestamp,
                    v: e.value,
                });
            }
            (4, 2) => histograms += 1,
            _ => {}
        }
    }
    let key: std::borrow::Cow<'a, [u8]> = match (labels, contiguous) {
        (Some(r), true) => std::borrow::Cow::Borrowed(&ts[r]),
        (Some(_), false) => std::borrow::Cow::Owned(owned),
        (None, _) => std::borrow::Cow::Borrowed(&[]),
    };
    Ok(RawSeries {
        hash: twox_hash::XxHash3_128::oneshot(&key),
        key,
        samples: first..samples.len(),
        exemplars: first_exemplar..exemplars.len(),
        histograms,
    })
}

/// Decodes the label entries of a series key into pairs.
pub fn key_labels(key: &[u8]) -> Result<Vec<(String, String)>, String> {
    use prost::Message;
    let mut out = Vec::new();
    let mut pos = 0;
    while pos < key.len() {
        let (_, _, payload) = field(key, &mut pos)?;
        let l = Label::decode(payload).map_err(|e| format!("label: {e}"))?;
        out.push((l.name, l.value));
    }
    Ok(out)
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

/// Encodes rows as a `WriteRequest` (the metrics WAL payload), one entry per series with
/// its samples in the order given.
pub fn encode_rows(rows: &loupe_storage::metrics::MetricRows) -> Vec<u8> {
    use prost::Message;
    // The points in series order (a counting sort: stable, one allocation).
    let mut starts = vec![0usize; rows.series.len() + 1];
    for p in &rows.points {
        if let Some(c) = starts.get_mut(p.series as usize + 1) {
            *c += 1;
        }
    }
    for i in 1..starts.len() {
        starts[i] += starts[i - 1];
    }
    let mut order = vec![0usize; starts[rows.series.len()]];
    let mut fill = starts.clone();
    for (i, p) in rows.points.iter().enumerate() {
        if let Some(f) = fill.get_mut(p.series as usize) {
            order[*f] = i;
            *f += 1;
        }
    }
    let mut exemplars_of: Vec<Vec<Exemplar>> = vec![Vec::new(); rows.series.len()];
    for e in &rows.exemplars {
        if let Some(v) = exemplars_of.get_mut(e.series as usize) {
            v.push(Exemplar {
                labels: e
                    .exemplar
                    .labels
                    .iter()
                    .map(|(k, v)| Label {
                        name: k.into(),
                        value: v.into(),
                    })
                    .collect(),
                value: e.exemplar.v,
                timestamp: e.exemplar.t,
            });
        }
    }
    let mut out = Vec::with_capacity(rows.points.len() * 24 + rows.series.len() * 64);
    let mut label_buf = Vec::new();
    for (k, (s, exemplars)) in rows.series.iter().zip(&exemplars_of).enumerate() {
        let idx = &order[starts[k]..starts[k + 1]];
        if idx.is_empty() && exemplars.is_empty() {
            continue;
        }
        label_buf.clear();
        for (k, v) in s.iter() {
            let inner =
                1 + varint_len(k.len() as u64) + k.len() + 1 + varint_len(v.len() as u64) + v.len();
            label_buf.push(0x0a);
            put_varint(&mut label_buf, inner as u64);
            label_buf.push(0x0a);
            put_varint(&mut label_buf, k.len() as u64);
            label_buf.extend_from_slice(k.as_bytes());
            label_buf.push(0x12);
            put_varint(&mut label_buf, v.len() as u64);
            label_buf.extend_from_slice(v.as_bytes());
        }
        let sample_len = |t: i64| 1 + 8 + 1 + varint_len(t as u64);
        let samples: usize = idx
            .iter()
            .map(|&i| {
                let n = sample_len(rows.points[i].t);
                1 + varint_len(n as u64) + n
            })
            .sum();
        let exemplar_bytes: usize = exemplars
            .iter()
            .map(|e| {
                let n = e.encoded_len();
                1 + varint_len(n as u64) + n
            })
            .sum();
        out.push(0x0a);
        put_varint(
            &mut out,
            (label_buf.len() + samples + exemplar_bytes) as u64,
        );
        out.extend_from_slice(&label_buf);
        for &i in idx {
            let p = rows.points[i];
            out.push(0x12);
            put_varint(&mut out, sample_len(p.t) as u64);
            out.push(0x09);
            out.extend_from_slice(&p.v.to_le_bytes());
            out.push(0x10);
            put_varint(&mut out, p.t as u64);
        }
        for e in exemplars {
            out.push(0x1a);
            put_varint(&mut out, e.encoded_len() as u64);
            e.encode_raw(&mut out);
        }
    }
    for m in &rows.metadata {
        let meta = MetricMetadata {
            r#type: type_code(&m.kind),
            metric_family_name: m.metric.clone(),
            help: m.help.clone(),
            unit: m.unit.clone(),
        };
        out.push(0x1a);
        put_varint(&mut out, meta.encoded_len() as u64);
        meta.encode_raw(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use loupe_storage::metrics::{Labels, MetricMeta, MetricRows, Sample as S, Series};
    use prost::Message;
    use std::sync::Arc;

    #[test]
    fn hand_encoding_reads_back_with_prost_and_the_raw_reader() {
        let labels = |n: &str| {
            Arc::new(Labels::new(vec![
                ("__name__".into(), n.into()),
                ("job".into(), "api".into()),
            ]))
        };
        let rows = MetricRows::from_series(
            vec![
                Series {
                    labels: labels("up"),
                    samples: vec![S { t: 1, v: 1.0 }, S { t: -5, v: f64::NAN }],
                },
                Series {
                    labels: labels("x_total"),
                    samples: vec![S {
                        t: 1_700_000_000_000,
                        v: 2.5,
                    }],
                },
            ],
            vec![MetricMeta {
                metric: "x_total".into(),
                kind: "counter".into(),
                unit: "s".into(),
                help: "h".into(),
            }],
        );
        let mut rows = rows;
        rows.exemplars.push(loupe_storage::metrics::ExemplarPoint {
            series: 1,
            exemplar: loupe_storage::metrics::Exemplar {
                labels: Arc::new(Labels::new(vec![("trace_id".into(), "ab".into())])),
                t: 1_699_999_999_999,
                v: 0.5,
            },
        });
        let bytes = encode_rows(&rows);
        let req = WriteRequest::decode(&bytes[..]).unwrap();
        assert_eq!(req.timeseries[1].exemplars[0].labels[0].value, "ab");
        assert_eq!(req.timeseries.len(), 2);
        assert_eq!(req.timeseries[0].samples[1].timestamp, -5);
        assert_eq!(req.metadata[0].r#type, 1);
        let raw = read_request(&bytes).unwrap();
        assert_eq!(raw.series.len(), 2);
        assert_eq!(raw.samples[2], (1_700_000_000_000, 2.5));
        assert_eq!(raw.series[1].exemplars, 0..1);
        assert_eq!(raw.exemplars[0].t, 1_699_999_999_999);
        assert_eq!(
            crate::prom::decode_metric_payload(&bytes)
                .unwrap()
                .exemplars,
            rows.exemplars
        );
        assert_eq!(
            key_labels(&raw.series[1].key).unwrap(),
            vec![
                ("__name__".to_string(), "x_total".to_string()),
                ("job".into(), "api".into())
            ]
        );
        assert_eq!(
            raw.series[0].hash,
            twox_hash::XxHash3_128::oneshot(&raw.series[0].key)
        );
        assert!(
            read_request(&[0x0a, 0x05, 0x0a]).is_err(),
            "truncated input is refused"
        );
    }
}
