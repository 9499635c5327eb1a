//! The span columns a service graph needs ([`SpanLink`]: trace, span, parent, service,
//! start), read from a span file without decoding the rest.

use std::collections::HashMap;
use std::sync::Arc;

use arrow_array::{Array, RecordBatch};

use crate::catalog::FileEntry;
use crate::error::StorageError;
use crate::model::{SpanId, SpanRecord, TraceId};
use crate::spans::decode::Columns;
use crate::spans::read::{SpanReader, row_groups_starting_in};
use crate::spans::schema;

/// What a service graph needs of a span: where it sits in its trace and which service ran it.
#[derive(Debug, Clone, PartialEq)]
pub struct SpanLink {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent_span_id: Option<SpanId>,
    pub service: Arc<str>,
    pub start_unix_nano: i64,
}

impl SpanLink {
    pub fn of(s: &SpanRecord) -> Self {
        SpanLink {
            trace_id: s.trace_id,
            span_id: s.span_id,
            parent_span_id: s.parent_span_id,
            service: Arc::from(s.service_name()),
            start_unix_nano: s.start_unix_nano,
        }
    }
}

impl SpanReader {
    /// The [`SpanLink`] of every span in `entry` whose start lies in `[start, end]` (only
    /// those five columns are read, and row groups outside the range are skipped).
    pub async fn span_links(
        &self,
        entry: &FileEntry,
        (start, end): (i64, i64),
    ) -> Result<Vec<SpanLink>, StorageError> {
        let meta = self.files.metadata(entry).await?;
        let row_groups = row_groups_starting_in(&meta, start, end);
        let cols = [
            schema::TRACE_ID,
            schema::SPAN_ID,
            schema::PARENT_SPAN_ID,
            schema::SERVICE_NAME,
            schema::START,
        ];
        let batches = self
            .files
            .read(entry, meta, row_groups, None, Some(&cols), None)
            .await?;
        Ok(loupe_core::cpu::run(move || links_in(batches.iter(), (start, end))).await?)
    }
}

/// The [`SpanLink`] of every row of `batches` (span batches with at least the five link
/// columns) whose start lies in `[start, end]`. CPU work: call off the runtime.
pub fn links_in<'a>(
    batches: impl Iterator<Item = &'a RecordBatch>,
    (start, end): (i64, i64),
) -> Vec<SpanLink> {
    let mut out = Vec::new();
    let mut names: HashMap<String, Arc<str>> = HashMap::new();
    for b in batches {
        let c = Columns::new(b);
        let (Some(t), Some(s), Some(svc), Some(st)) = (
            c.fixed(schema::TRACE_ID),
            c.fixed(schema::SPAN_ID),
            c.string(schema::SERVICE_NAME),
            c.timestamp(schema::START),
        ) else {
            continue;
        };
        let parent = c.fixed(schema::PARENT_SPAN_ID);
        for i in 0..b.num_rows() {
            let at = st.value(i);
            if at < start || at > end {
                continue;
            }
            let (Ok(trace_id), Ok(span_id)) = (t.value(i).try_into(), s.value(i).try_into()) else {
                continue;
            };
            let name = svc.get(i).unwrap_or_default();
            let service = match names.get(name) {
                Some(n) => n.clone(),
                None => {
                    let n: Arc<str> = Arc::from(name);
                    names.insert(name.to_string(), n.clone());
                    n
                }
            };
            out.push(SpanLink {
                trace_id,
                span_id,
                parent_span_id: parent
                    .filter(|p| p.is_valid(i))
                    .and_then(|p| p.value(i).try_into().ok()),
                service,
                start_unix_nano: at,
            });
        }
    }
    out
}
