use super::*;

fn series(name: &str, job: &str, samples: &[(i64, f64)]) -> Series {
    Series {
        labels: Arc::new(Labels::new(vec![
            ("__name__".into(), name.into()),
            ("job".into(), job.into()),
        ])),
        samples: samples.iter().map(|&(t, v)| Sample { t, v }).collect(),
    }
}

#[test]
fn series_round_trip_sorted_and_deduplicated() {
    let stale = f64::from_bits(crate::metrics::model::STALE_NAN_BITS);
    let merged = merge_series(vec![
        series("up", "b", &[(3, 1.0), (1, 1.0)]),
        series("up", "a", &[(1, 0.0)]),
        series("http_requests_total", "a", &[(2, 5.0), (4, stale)]),
        series("up", "b", &[(3, 9.0), (2, f64::NAN)]),
        series(
            "mixed",
            "a",
            &[
                (1, 12.25),
                (2, -0.0),
                (3, 0.1 + 0.2),
                (4, 1e300),
                (5, -7.5),
                (6, f64::INFINITY),
            ],
        ),
    ]);
    let meta = vec![MetricMeta {
        metric: "up".into(),
        kind: "gauge".into(),
        unit: String::new(),
        help: "Is it up".into(),
    }];
    let f = encode_series(&merged, &[], &meta, 3).unwrap();
    assert_eq!(f.rows, 12);
    assert_eq!(f.min_time_unix_nano, 1_000_000);
    assert_eq!(f.max_time_unix_nano, 6_000_000);
    assert_eq!(f.services, vec!["a", "b"]);
    let all = read_all("t", Bytes::from(f.bytes)).unwrap();
    let back = all.series;
    assert_eq!(all.metadata, meta);
    assert!(all.exemplars.is_empty());
    let names: Vec<String> = back.iter().map(|s| s.labels.to_string()).collect();
    assert_eq!(
        names,
        vec![
            "http_requests_total{job=\"a\"}",
            "mixed{job=\"a\"}",
            "up{job=\"a\"}",
            "up{job=\"b\"}"
        ]
    );
    // Every value back bit for bit, decimal or not.
    let mixed: Vec<u64> = back[1].samples.iter().map(|x| x.v.to_bits()).collect();
    let want: Vec<u64> = [12.25, -0.0, 0.1 + 0.2, 1e300, -7.5, f64::INFINITY]
        .iter()
        .map(|v: &f64| v.to_bits())
        .collect();
    assert_eq!(mixed, want);
    let b = &back[3].samples;
    assert_eq!(b.iter().map(|s| s.t).collect::<Vec<_>>(), vec![1, 2, 3]);
    assert!(b[1].v.is_nan());
    assert_eq!(b[2].v, 1.0, "the first sample of a timestamp wins");
    assert_eq!(back[0].samples[1].v.to_bits(), stale.to_bits());
}

#[test]
fn random_values_round_trip_bit_for_bit() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let samples: Vec<(i64, f64)> = (0..20_000)
        .map(|i| {
            let v = match i % 5 {
                0 => f64::from_bits(rng.random()),
                1 => (rng.random_range(-1e6..1e6f64) * 100.0).round() / 100.0,
                2 => rng.random_range(0..1_000_000_000i64) as f64,
                3 => rng.random_range(-1.0..1.0f64),
                _ => [0.0, -0.0, f64::NAN, f64::NEG_INFINITY, 1e-300, 5e15 + 1.0][i % 6],
            };
            (i as i64, v)
        })
        .collect();
    let f = encode_series(&merge_series(vec![series("r", "a", &samples)]), &[], &[], 3).unwrap();
    let want: Vec<u64> = samples.iter().map(|x| x.1.to_bits()).collect();
    let bytes = Bytes::from(f.bytes);
    let back = read_all("t", bytes.clone()).unwrap().series;
    let got: Vec<u64> = back[0].samples.iter().map(|x| x.v.to_bits()).collect();
    assert_eq!(got, want);
    // In small batches, runs continue from one batch to the next.
    let reader = ParquetRecordBatchReaderBuilder::try_new(bytes)
        .unwrap()
        .with_batch_size(777)
        .build()
        .unwrap();
    let (mut run, mut out) = (Run::default(), Vec::new());
    for b in reader {
        batch_series(
            "t",
            &mut run,
            &b.unwrap(),
            0,
            i64::MAX,
            &mut |_| true,
            &mut out,
        )
        .unwrap();
    }
    let got: Vec<u64> = out
        .iter()
        .flat_map(|s| s.samples.iter().map(|x| x.v.to_bits()))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn exemplars_round_trip_after_the_samples_and_widen_the_time_range() {
    use crate::metrics::model::Exemplar;
    let merged = merge_series(vec![series("x_bucket", "a", &[(10, 1.0), (20, 2.0)])]);
    let ex = |t: i64, trace: &str| Exemplar {
        labels: Arc::new(Labels::new(vec![
            ("trace_id".into(), trace.into()),
            ("span_id".into(), "00f067aa0ba902b7".into()),
        ])),
        t,
        v: 0.25,
    };
    let exemplars = crate::metrics::exemplars::merge_exemplars(vec![
        SeriesExemplars {
            labels: merged[0].labels.clone(),
            exemplars: vec![ex(12, "4bf92f3577b34da6a3ce929d0e0e4736"), ex(5, "aa")],
        },
        SeriesExemplars {
            labels: series("only_exemplars", "b", &[]).labels,
            exemplars: vec![ex(30, "bb")],
        },
    ]);
    let f = encode_series(&merged, &exemplars, &[], 3).unwrap();
    assert_eq!(f.rows, 2, "exemplars are not samples");
    assert_eq!(
        (f.min_time_unix_nano, f.max_time_unix_nano),
        (5_000_000, 30_000_000)
    );
    let index = f.series.clone().unwrap();
    assert!(index.may_match(&[crate::metrics::LabelMatcher::equal(
        "__name__",
        "only_exemplars"
    )]));
    let all = read_all("t", Bytes::from(f.bytes)).unwrap();
    assert_eq!(all.series, merged, "exemplar rows are not read as samples");
    assert_eq!(all.exemplars, exemplars);
    assert_eq!(
        all.exemplars[1].exemplars[1].labels.get("trace_id"),
        Some("4bf92f3577b34da6a3ce929d0e0e4736")
    );
}

#[test]
fn unordered_merge_keys_on_fingerprints_and_checks_the_labels() {
    let a = series("up", "a", &[(2, 1.0), (3, 1.0)]);
    let a_later = series("up", "a", &[(1, 0.0), (3, 9.0)]);
    let b = series("up", "b", &[(5, 5.0)]);
    assert_eq!(a.labels.fingerprint(), a_later.labels.fingerprint());
    assert_ne!(a.labels.fingerprint(), b.labels.fingerprint());
    // b given a's fingerprint (a collision) stays its own series.
    let f = a.labels.fingerprint();
    let merged = merge_unordered(vec![(f, a), (f, b), (f, a_later)]);
    assert_eq!(merged.len(), 2);
    let times: Vec<(i64, f64)> = merged[0].samples.iter().map(|s| (s.t, s.v)).collect();
    assert_eq!(
        times,
        vec![(1, 0.0), (2, 1.0), (3, 1.0)],
        "sorted, first of a time wins"
    );
    assert_eq!(merged[1].labels.get("job"), Some("b"));
}
