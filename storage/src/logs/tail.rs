//! Live tail: the lines a [`LogFilter`] matches among those acknowledged from now on, as
//! they arrive, in acknowledgement order (each chunk's lines by time).
//!
//! In a process that acknowledges (the collector or the all-in-one server) lines come from
//! [`Fresh::subscribe`], the moment their export is acknowledged. A tail that falls more
//! than [`crate::fresh::ARRIVALS_CAPACITY`] chunks behind is told how many lines it missed
//! ([`TailEvent::Missed`]) and goes on. A process that only queries polls the catalog
//! instead, every [`POLL`], and sends the matching lines of each file a flush committed
//! since the tail began (so a line arrives one flush interval plus a poll after its ack; a
//! flushed file that compaction merged away between two polls is missed).
//!
//! The time range of the filter is ignored: a tail wants every new line, whatever its
//! timestamp. Matching runs off the async runtime; the tail ends when its receiver is
//! dropped.

use std::collections::HashSet;
use std::time::Duration;

use loupe_core::TenantId;
use tokio::sync::{broadcast, mpsc};

use crate::catalog::Catalog;
use crate::fresh::{Arrived, Fresh};
use crate::logs::filter::LogFilter;
use crate::logs::format::read_records;
use crate::logs::model::LogRecord;
use crate::store::Signal;

/// How often a tail without fresh data looks for newly committed files.
pub const POLL: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub enum TailEvent {
    /// New matching lines, oldest first.
    Lines(Vec<LogRecord>),
    /// This many exports went by unread because the tail fell behind.
    Missed(u64),
    /// The catalog could not be read; the tail goes on.
    Error(String),
}

/// Starts tailing `tenant`'s lines that match `filter`; events come on the returned
/// channel until it is dropped.
pub fn tail(
    fresh: &dyn Fresh<Vec<LogRecord>>,
    catalog: Catalog,
    tenant: TenantId,
    mut filter: LogFilter,
) -> mpsc::Receiver<TailEvent> {
    filter.start_unix_nano = i64::MIN;
    filter.end_unix_nano = i64::MAX;
    let (tx, rx) = mpsc::channel(64);
    match fresh.subscribe() {
        Some(arrivals) => {
            tokio::spawn(from_arrivals(arrivals, tenant, filter, tx));
        }
        None => {
            tokio::spawn(from_catalog(catalog, tenant, filter, tx));
        }
    }
    rx
}

/// The matching lines of `records`, oldest first (off the runtime).
async fn matching(filter: &LogFilter, records: Vec<LogRecord>) -> Vec<LogRecord> {
    let f = filter.clone();
    loupe_core::cpu::run(move || {
        let terms = f.prepared_terms();
        let mut out: Vec<LogRecord> = records
            .into_iter()
            .filter(|r| f.matches(r, &terms))
            .collect();
        out.sort_by_key(|r| r.time_unix_nano);
        out
    })
    .await
    .unwrap_or_default()
}

async fn from_arrivals(
    mut arrivals: broadcast::Receiver<Arrived<Vec<LogRecord>>>,
    tenant: TenantId,
    filter: LogFilter,
    tx: mpsc::Sender<TailEvent>,
) {
    loop {
        let event = tokio::select! {
            got = arrivals.recv() => got,
            _ = tx.closed() => return,
        };
        let event = match event {
            Ok(a) if a.tenant == tenant => {
                // Take every chunk already waiting, so a busy tail matches in batches.
                let mut records = a.chunk.rows().clone();
                while let Ok(more) = arrivals.try_recv() {
                    if more.tenant == tenant {
                        records.extend(more.chunk.rows().iter().cloned());
                    }
                }
                let lines = matching(&filter, records).await;
                if lines.is_empty() {
                    continue;
                }
                TailEvent::Lines(lines)
            }
            Ok(_) => continue,
            Err(broadcast::error::RecvError::Lagged(n)) => TailEvent::Missed(n),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if tx.send(event).await.is_err() {
            return;
        }
    }
}

async fn from_catalog(
    catalog: Catalog,
    tenant: TenantId,
    filter: LogFilter,
    tx: mpsc::Sender<TailEvent>,
) {
    let mut seen: Option<HashSet<String>> = None;
    let mut tick = tokio::time::interval(POLL);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = tx.closed() => return,
        }
        let state = match catalog
            .snapshot(&tenant, Signal::Logs, Duration::ZERO)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                if tx.send(TailEvent::Error(e.to_string())).await.is_err() {
                    return;
                }
                continue;
            }
        };
        let Some(known) = seen.as_mut() else {
            seen = Some(state.files().map(|f| f.id.clone()).collect());
            continue;
        };
        let new: Vec<_> = state
            .files()
            .filter(|f| f.level == 0 && !known.contains(&f.id))
            .cloned()
            .collect();
        for f in new {
            let event = match read_records(catalog.storage(), &f).await {
                Ok(records) => {
                    known.insert(f.id.clone());
                    let lines = matching(&filter, records).await;
                    if lines.is_empty() {
                        continue;
                    }
                    TailEvent::Lines(lines)
                }
                Err(e) => TailEvent::Error(e.to_string()),
            };
            if tx.send(event).await.is_err() {
                return;
            }
        }
        // Forget files no longer in the catalog, so the set stays the catalog's size.
        let current: HashSet<&str> = state.files().map(|f| f.id.as_str()).collect();
        known.retain(|id| current.contains(id.as_str()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fresh::{ARRIVALS_CAPACITY, Chunk};
    use crate::model::{AttrValue, Attrs, Resource, Scope};
    use crate::store::Storage;
    use std::sync::Arc;

    struct Hub(broadcast::Sender<Arrived<Vec<LogRecord>>>);

    impl Fresh<Vec<LogRecord>> for Hub {
        fn chunks(&self, _: &TenantId) -> Vec<Arc<Chunk<Vec<LogRecord>>>> {
            Vec::new()
        }
        fn subscribe(&self) -> Option<broadcast::Receiver<Arrived<Vec<LogRecord>>>> {
            Some(self.0.subscribe())
        }
    }

    fn line(t: i64, body: &str) -> LogRecord {
        LogRecord {
            time_unix_nano: t,
            observed_unix_nano: t,
            severity_number: 9,
            severity_text: "INFO".into(),
            body: AttrValue::Str(body.to_string()),
            attributes: Attrs::default(),
            trace_id: None,
            span_id: None,
            flags: 0,
            event_name: String::new(),
            resource: Arc::new(Resource::default()),
            scope: Arc::new(Scope::default()),
        }
    }

    fn send(hub: &Hub, tenant: &str, lines: Vec<LogRecord>) {
        hub.0
            .send(Arrived {
                tenant: TenantId::new(tenant).unwrap(),
                chunk: Arc::new(Chunk::new(lines, 1)),
            })
            .unwrap();
    }

    #[tokio::test]
    async fn a_tail_gets_the_tenants_new_matching_lines_and_hears_what_it_missed() {
        let dir = tempfile::tempdir().unwrap();
        let storage = Storage::open(&format!("file://{}", dir.path().display())).unwrap();
        let catalog = Catalog::new(storage, "w");
        let hub = Hub(broadcast::Sender::new(ARRIVALS_CAPACITY));
        let filter = LogFilter {
            terms: vec!["boom".into()],
            // Ignored by a tail: a line of any time is new.
            start_unix_nano: 10,
            end_unix_nano: 20,
            ..Default::default()
        };
        let mut rx = tail(&hub, catalog, TenantId::new("a").unwrap(), filter);
        send(&hub, "b", vec![line(1, "boom elsewhere")]);
        send(
            &hub,
            "a",
            vec![
                line(5, "boom late"),
                line(3, "quiet"),
                line(2, "boom early"),
            ],
        );
        let Some(TailEvent::Lines(got)) = rx.recv().await else {
            panic!("lines expected");
        };
        let bodies: Vec<_> = got.iter().map(|r| r.body_text().into_owned()).collect();
        assert_eq!(bodies, vec!["boom early", "boom late"]);
        // Overrun the channel while the tail is blocked on its full output.
        for i in 0..(ARRIVALS_CAPACITY + 200) {
            send(&hub, "a", vec![line(i as i64, "boom")]);
        }
        let mut missed = 0;
        let mut lines = 0;
        while lines + missed < (ARRIVALS_CAPACITY + 200) as u64 {
            match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(Some(TailEvent::Lines(l))) => lines += l.len() as u64,
                Ok(Some(TailEvent::Missed(n))) => missed += n,
                other => panic!("unexpected {other:?}"),
            }
        }
        assert!(missed > 0, "a tail that fell behind is told");
        assert_eq!(lines + missed, (ARRIVALS_CAPACITY + 200) as u64);
    }
}
