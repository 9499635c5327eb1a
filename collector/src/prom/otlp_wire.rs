//! OTLP metric messages read in place: the parts of an `ExportMetricsServiceRequest` the
//! conversion walks (resources, scopes, metrics, data points), with strings and attribute
//! bytes borrowed from the request. A point's attributes stay as their raw protobuf field
//! encodings — the series cache key — and are decoded (with prost) only for a series the
//! cache does not know yet. Resources, scopes and exemplars, a few per request, are decoded
//! with prost (exemplars once per point, however many buckets pick from them).
//!
//! Every reader answers `Err(Malformed)` on input prost would not read the same way (a
//! truncated field, a wrong wire type, bad UTF-8 in a name); the caller then asks prost for
//! its error message or converts prost's canonical encoding of the request instead.

use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::metrics::v1::Exemplar;
use prost::Message;

use crate::otlp::fields::{Fields, Wire, bytes, fixed64, string, varint};

/// Input the in-place reader does not read as prost would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Malformed;

pub type Read<T> = Result<T, Malformed>;

/// The fields of `msg`, calling `f` with each; malformed input is an error.
pub fn each<'a>(msg: &'a [u8], mut f: impl FnMut(u32, Wire<'a>) -> Read<()>) -> Read<()> {
    let mut fields = Fields::new(msg);
    for (n, w) in fields.by_ref() {
        f(n, w)?;
    }
    if fields.fail { Err(Malformed) } else { Ok(()) }
}

/// The bytes of a length-delimited field.
pub fn msg(w: Wire<'_>) -> Read<&[u8]> {
    bytes(w).ok_or(Malformed)
}

pub fn text(w: Wire<'_>) -> Read<&str> {
    string(w).ok_or(Malformed)
}

fn f64_of(w: Wire<'_>) -> Read<f64> {
    fixed64(w).map(f64::from_bits).ok_or(Malformed)
}

fn u64_of(w: Wire<'_>) -> Read<u64> {
    fixed64(w).ok_or(Malformed)
}

fn var(w: Wire<'_>) -> Read<u64> {
    varint(w).ok_or(Malformed)
}

/// A repeated fixed64/double field: packed (one length-delimited run) or one value per field.
fn push_fixed(w: Wire<'_>, out: &mut Vec<u64>) -> Read<()> {
    match w {
        Wire::Fixed64(v) => out.push(v),
        Wire::Bytes(b) if b.len() % 8 == 0 => out.extend(
            b.chunks_exact(8)
                .map(|c| u64::from_le_bytes(c.try_into().unwrap_or_default())),
        ),
        _ => return Err(Malformed),
    }
    Ok(())
}

/// A repeated uint64 (varint) field: packed or one value per field.
fn push_varints(w: Wire<'_>, out: &mut Vec<u64>) -> Read<()> {
    match w {
        Wire::Varint(v) => out.push(v),
        Wire::Bytes(b) => {
            let mut f = Fields::new(b);
            while !f.buf.is_empty() {
                out.push(f.varint().ok_or(Malformed)?);
            }
        }
        _ => return Err(Malformed),
    }
    Ok(())
}

fn zigzag32(v: u64) -> i32 {
    let v = v as u32;
    ((v >> 1) as i32) ^ -((v & 1) as i32)
}

/// A point's attributes: the raw field encodings of its `KeyValue`s, borrowed when they are
/// contiguous (as every encoder writes a repeated field), else copied together.
#[derive(Default)]
pub struct RawAttrs<'a> {
    base: &'a [u8],
    range: Option<std::ops::Range<usize>>,
    owned: Option<Vec<u8>>,
}

impl<'a> RawAttrs<'a> {
    fn new(base: &'a [u8]) -> Self {
        RawAttrs {
            base,
            range: None,
            owned: None,
        }
    }

    fn add(&mut self, start: usize, end: usize) {
        match (&mut self.range, &mut self.owned) {
            (None, None) => self.range = Some(start..end),
            (Some(r), None) if r.end == start => r.end = end,
            (Some(r), None) => {
                let mut o = self.base[r.clone()].to_vec();
                o.extend_from_slice(&self.base[start..end]);
                self.owned = Some(o);
            }
            (_, Some(o)) => o.extend_from_slice(&self.base[start..end]),
        }
    }

    pub fn bytes(&self) -> &[u8] {
        match (&self.owned, &self.range) {
            (Some(o), _) => o,
            (None, Some(r)) => &self.base[r.clone()],
            (None, None) => &[],
        }
    }

    /// The attributes decoded (for a series seen for the first time).
    pub fn decode(&self) -> Read<Vec<KeyValue>> {
        let mut out = Vec::new();
        each(self.bytes(), |_, w| {
            out.push(KeyValue::decode(msg(w)?).map_err(|_| Malformed)?);
            Ok(())
        })?;
        Ok(out)
    }
}

/// Reads the fields of a point message, collecting the attribute field `attrs_field` raw
/// and giving every other field to `f`.
fn point_fields<'a>(
    m: &'a [u8],
    attrs_field: u32,
    mut f: impl FnMut(u32, Wire<'a>) -> Read<()>,
) -> Read<RawAttrs<'a>> {
    let mut attrs = RawAttrs::new(m);
    let mut fields = Fields::new(m);
    loop {
        let start = m.len() - fields.buf.len();
        let Some((n, w)) = fields.next() else { break };
        if n == attrs_field {
            msg(w)?;
            attrs.add(start, m.len() - fields.buf.len());
        } else {
            f(n, w)?;
        }
    }
    if fields.fail {
        return Err(Malformed);
    }
    Ok(attrs)
}

/// What every point kind has.
pub struct PointBase<'a> {
    pub attrs: RawAttrs<'a>,
    pub time: u64,
    pub flags: u32,
    /// Its exemplars, decoded once (few points carry any).
    pub exemplars: Vec<Exemplar>,
}

/// A gauge or sum point.
pub struct NumberPoint<'a> {
    pub base: PointBase<'a>,
    pub value: Option<f64>,
}

pub fn number_point(m: &[u8]) -> Read<NumberPoint<'_>> {
    let (mut time, mut flags, mut value, mut exemplars) = (0, 0, None, Vec::new());
    let attrs = point_fields(m, 7, |n, w| {
        match n {
            3 => time = u64_of(w)?,
            4 => value = Some(f64_of(w)?),
            6 => value = Some(u64_of(w)? as i64 as f64),
            5 => exemplars.push(exemplar(w)?),
            8 => flags = var(w)? as u32,
            _ => {}
        }
        Ok(())
    })?;
    Ok(NumberPoint {
        base: PointBase {
            attrs,
            time,
            flags,
            exemplars,
        },
        value,
    })
}

/// A histogram point; counts and bounds go into reused buffers.
pub struct HistogramPoint<'a> {
    pub base: PointBase<'a>,
    pub count: u64,
    pub sum: Option<f64>,
}

pub fn histogram_point<'a>(
    m: &'a [u8],
    counts: &mut Vec<u64>,
    bounds: &mut Vec<u64>,
) -> Read<HistogramPoint<'a>> {
    counts.clear();
    bounds.clear();
    let (mut time, mut flags, mut count, mut sum, mut exemplars) = (0, 0, 0, None, Vec::new());
    let attrs = point_fields(m, 9, |n, w| {
        match n {
            3 => time = u64_of(w)?,
            4 => count = u64_of(w)?,
            5 => sum = Some(f64_of(w)?),
            6 => push_fixed(w, counts)?,
            7 => push_fixed(w, bounds)?,
            8 => exemplars.push(exemplar(w)?),
            10 => flags = var(w)? as u32,
            _ => {}
        }
        Ok(())
    })?;
    Ok(HistogramPoint {
        base: PointBase {
            attrs,
            time,
            flags,
            exemplars,
        },
        count,
        sum,
    })
}

/// One side of an exponential histogram: the index of its first bucket and the counts.
#[derive(Default)]
pub struct ExpBuckets {
    pub offset: i32,
    pub counts: Vec<u64>,
}

fn exp_buckets(m: &[u8]) -> Read<ExpBuckets> {
    let mut b = ExpBuckets::default();
    each(m, |n, w| {
        match n {
            1 => b.offset = zigzag32(var(w)?),
            2 => push_varints(w, &mut b.counts)?,
            _ => {}
        }
        Ok(())
    })?;
    Ok(b)
}

pub struct ExpHistogramPoint<'a> {
    pub base: PointBase<'a>,
    pub count: u64,
    pub sum: Option<f64>,
    pub scale: i32,
    pub zero_count: u64,
    pub zero_threshold: f64,
    pub positive: Option<ExpBuckets>,
    pub negative: Option<ExpBuckets>,
}

pub fn exp_histogram_point(m: &[u8]) -> Read<ExpHistogramPoint<'_>> {
    let mut p = ExpHistogramPoint {
        base: PointBase {
            attrs: RawAttrs::default(),
            time: 0,
            flags: 0,
            exemplars: Vec::new(),
        },
        count: 0,
        sum: None,
        scale: 0,
        zero_count: 0,
        zero_threshold: 0.0,
        positive: None,
        negative: None,
    };
    let (mut time, mut flags, mut exemplars) = (0, 0, Vec::new());
    let attrs = point_fields(m, 1, |n, w| {
        match n {
            3 => time = u64_of(w)?,
            4 => p.count = u64_of(w)?,
            5 => p.sum = Some(f64_of(w)?),
            6 => p.scale = zigzag32(var(w)?),
            7 => p.zero_count = u64_of(w)?,
            8 => p.positive = Some(exp_buckets(msg(w)?)?),
            9 => p.negative = Some(exp_buckets(msg(w)?)?),
            10 => flags = var(w)? as u32,
            11 => exemplars.push(exemplar(w)?),
            14 => p.zero_threshold = f64_of(w)?,
            _ => {}
        }
        Ok(())
    })?;
    p.base = PointBase {
        attrs,
        time,
        flags,
        exemplars,
    };
    Ok(p)
}

pub struct SummaryPoint<'a> {
    pub base: PointBase<'a>,
    pub count: u64,
    pub sum: f64,
    /// `(quantile, value)`.
    pub quantiles: Vec<(f64, f64)>,
}

pub fn summary_point(m: &[u8]) -> Read<SummaryPoint<'_>> {
    let (mut time, mut flags, mut count, mut sum, mut quantiles) = (0, 0, 0, 0.0, Vec::new());
    let attrs = point_fields(m, 7, |n, w| {
        match n {
            3 => time = u64_of(w)?,
            4 => count = u64_of(w)?,
            5 => sum = f64_of(w)?,
            6 => {
                let (mut q, mut v) = (0.0, 0.0);
                each(msg(w)?, |n, w| {
                    match n {
                        1 => q = f64_of(w)?,
                        2 => v = f64_of(w)?,
                        _ => {}
                    }
                    Ok(())
                })?;
                quantiles.push((q, v));
            }
            8 => flags = var(w)? as u32,
            _ => {}
        }
        Ok(())
    })?;
    Ok(SummaryPoint {
        base: PointBase {
            attrs,
            time,
            flags,
            exemplars: Vec::new(),
        },
        count,
        sum,
        quantiles,
    })
}

/// A metric: its name, unit and description borrowed, and its data.
pub struct MetricView<'a> {
    pub name: &'a str,
    pub description: &'a str,
    pub unit: &'a str,
    pub data: Option<Data<'a>>,
}

/// A metric's data: its kind, its message (whose field 1 holds the points), temporality
/// (1 delta, 2 cumulative) and monotonicity.
pub struct Data<'a> {
    pub kind: DataKind,
    pub body: &'a [u8],
    pub temporality: u64,
    pub monotonic: bool,
}

impl<'a> Data<'a> {
    /// Calls `f` with each raw point message.
    pub fn points(&self, mut f: impl FnMut(&'a [u8]) -> Read<()>) -> Read<()> {
        each(self.body, |n, w| if n == 1 { f(msg(w)?) } else { Ok(()) })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataKind {
    Gauge,
    Sum,
    Histogram,
    ExponentialHistogram,
    Summary,
}

pub fn metric(m: &[u8]) -> Read<MetricView<'_>> {
    let mut out = MetricView {
        name: "",
        description: "",
        unit: "",
        data: None,
    };
    each(m, |n, w| {
        let kind = match n {
            1 => {
                out.name = text(w)?;
                return Ok(());
            }
            2 => {
                out.description = text(w)?;
                return Ok(());
            }
            3 => {
                out.unit = text(w)?;
                return Ok(());
            }
            5 => DataKind::Gauge,
            7 => DataKind::Sum,
            9 => DataKind::Histogram,
            10 => DataKind::ExponentialHistogram,
            11 => DataKind::Summary,
            _ => return Ok(()),
        };
        // A oneof sent twice: prost keeps the last.
        let body = msg(w)?;
        let (mut temporality, mut monotonic) = (0, false);
        each(body, |n, w| {
            match n {
                1 => {
                    msg(w)?;
                }
                2 if kind != DataKind::Gauge && kind != DataKind::Summary => temporality = var(w)?,
                3 if kind == DataKind::Sum => monotonic = var(w)? != 0,
                _ => {}
            }
            Ok(())
        })?;
        out.data = Some(Data {
            kind,
            body,
            temporality,
            monotonic,
        });
        Ok(())
    })?;
    Ok(out)
}

/// An `Exemplar` field decoded.
fn exemplar(w: Wire<'_>) -> Read<Exemplar> {
    Exemplar::decode(msg(w)?).map_err(|_| Malformed)
}
