//! The read hook for acknowledged data that is not yet in a committed file.
//!
//! The collector implements [`FreshSpans`] over its in-memory batches; the query service
//! consumes it without depending on the collector crate. A process that runs the query role
//! alone has no fresh data ([`NoFresh`]) and sees data once its flush is committed.

use crate::model::{SpanRecord, TraceId};
use crate::tenant::TenantId;

pub trait FreshSpans: Send + Sync {
    /// Calls `f` with every fresh span of `tenant` whose trace id is in `ids`.
    fn trace_spans(&self, tenant: &TenantId, ids: &[TraceId], f: &mut dyn FnMut(&SpanRecord));
    /// Calls `f` with every fresh span of `tenant`.
    fn for_each_span(&self, tenant: &TenantId, f: &mut dyn FnMut(&SpanRecord));
}

/// No fresh data: the standalone query role.
pub struct NoFresh;

impl FreshSpans for NoFresh {
    fn trace_spans(&self, _: &TenantId, _: &[TraceId], _: &mut dyn FnMut(&SpanRecord)) {}
    fn for_each_span(&self, _: &TenantId, _: &mut dyn FnMut(&SpanRecord)) {}
}
