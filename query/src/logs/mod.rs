//! Logs on the query side: [`LogService`] (stored files through the catalog, plus the
//! collector's fresh records in the same process), the native search syntax ([`syntax`]) and
//! the native endpoints: search ([`native`]), the histogram by severity ([`histogram`]), the top values of a field
//! ([`facets`]), the lines around a line ([`context`]) and live tail ([`tail`]).

pub mod context;
pub mod facets;
pub mod histogram;
pub mod native;
pub mod syntax;
pub mod tail;

use std::sync::Arc;
use std::time::Duration;

use loupe_core::TenantId;
use loupe_storage::StorageError;
use loupe_storage::catalog::Catalog;
use loupe_storage::fresh::Fresh;
use loupe_storage::logs::index::LogIndexReader;
use loupe_storage::logs::scan::ScanSource;
use loupe_storage::logs::{Histogram, LogFilter, LogQuery, LogRecord, search};

pub struct LogService {
    catalog: Catalog,
    reader: Arc<LogIndexReader>,
    fresh: Arc<dyn Fresh<Vec<LogRecord>>>,
    max_age: Duration,
}

impl LogService {
    /// `max_age`: how stale the catalog may be (see `TraceService::new`).
    pub fn new(
        catalog: Catalog,
        reader: Arc<LogIndexReader>,
        fresh: Arc<dyn Fresh<Vec<LogRecord>>>,
        max_age: Duration,
    ) -> Self {
        LogService {
            catalog,
            reader,
            fresh,
            max_age,
        }
    }

    /// How many lines match `filter`, per bucket of `step_nanos` and severity level.
    pub async fn histogram(
        &self,
        tenant: &TenantId,
        filter: &LogFilter,
        step_nanos: i64,
    ) -> Result<Histogram, StorageError> {
        loupe_storage::logs::histogram(self.source(tenant), filter, step_nanos).await
    }

    /// Where a scan of `tenant`'s lines reads: fresh records (taken now) and the catalog.
    pub fn source<'a>(&'a self, tenant: &'a TenantId) -> ScanSource<'a> {
        ScanSource {
            catalog: &self.catalog,
            reader: &self.reader,
            tenant,
            max_age: self.max_age,
            fresh: self.fresh.chunks(tenant),
        }
    }

    /// Starts a live tail of `tenant`'s new lines that match `filter` (see
    /// [`loupe_storage::logs::tail`]).
    pub fn tail(
        &self,
        tenant: &TenantId,
        filter: LogFilter,
    ) -> tokio::sync::mpsc::Receiver<loupe_storage::logs::tail::TailEvent> {
        loupe_storage::logs::tail::tail(
            self.fresh.as_ref(),
            self.catalog.clone(),
            tenant.clone(),
            filter,
        )
    }

    /// The records of `q`, in its order.
    pub async fn search(
        &self,
        tenant: &TenantId,
        q: &LogQuery,
    ) -> Result<Vec<LogRecord>, StorageError> {
        // Fresh data first: a batch committed after this snapshot is in the catalog read next.
        let chunks = self.fresh.chunks(tenant);
        search(&self.catalog, &self.reader, tenant, self.max_age, chunks, q).await
    }
}
