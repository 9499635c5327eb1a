//! Ranged reads of Parquet files in the object store, shared by every signal's reader.
//!
//! Footers (with their page indexes) are cached per file id: files are immutable. A read
//! names the row groups, an optional row selection (the page index turns it into the pages
//! to fetch), the columns and an optional row filter. I/O and CPU are apart: Parquet's push
//! decoder says which byte ranges it needs, they are fetched on the async runtime, and every
//! decoding step runs on the CPU pool.
//!
//! A file's Parquet part may be followed by other bytes (a log file's index): its size is
//! [`FileEntry::parquet_len`], so the footer is found there.

use std::collections::HashMap;
use std::sync::Mutex;

use arrow_array::RecordBatch;
use parquet::DecodeResult;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, RowFilter, RowSelection,
};
#[allow(deprecated)]
use parquet::arrow::async_reader::ParquetObjectReader;
use parquet::arrow::push_decoder::{ParquetPushDecoder, ParquetPushDecoderBuilder};
use parquet::file::metadata::PageIndexPolicy;

use crate::catalog::{Catalog, FileEntry};
use crate::error::StorageError;
use crate::store::Storage;

const FOOTER_CACHE_ENTRIES: usize = 8192;

pub fn column_index(meta: &ArrowReaderMetadata, name: &str) -> Option<usize> {
    meta.metadata()
        .file_metadata()
        .schema_descr()
        .columns()
        .iter()
        .position(|c| c.name() == name)
}

pub struct ParquetFiles {
    storage: Storage,
    footers: Mutex<HashMap<String, ArrowReaderMetadata>>,
}

impl ParquetFiles {
    pub fn new(storage: Storage) -> Self {
        ParquetFiles {
            storage,
            footers: Mutex::new(HashMap::new()),
        }
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    // ParquetObjectReader is deprecated in parquet 59 in favour of a hand-written
    // AsyncFileReader; it still works and is what DataFusion 55 uses. Revisit on upgrade.
    #[allow(deprecated)]
    fn object_reader(&self, entry: &FileEntry) -> ParquetObjectReader {
        ParquetObjectReader::new(self.storage.store.clone(), Catalog::path_of(entry))
            .with_file_size(entry.parquet_len())
    }

    pub async fn metadata(&self, entry: &FileEntry) -> Result<ArrowReaderMetadata, StorageError> {
        if let Some(m) = self
            .footers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&entry.id)
        {
            return Ok(m.clone());
        }
        let mut reader = self.object_reader(entry);
        let meta = ArrowReaderMetadata::load_async(
            &mut reader,
            ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional),
        )
        .await
        .map_err(|e| StorageError::parquet(&entry.path, e))?;
        let mut cache = self.footers.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= FOOTER_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(entry.id.clone(), meta.clone());
        Ok(meta)
    }

    pub async fn read(
        &self,
        entry: &FileEntry,
        meta: ArrowReaderMetadata,
        row_groups: Vec<usize>,
        selection: Option<RowSelection>,
        columns: Option<&[&str]>,
        row_filter: Option<RowFilter>,
    ) -> Result<Vec<RecordBatch>, StorageError> {
        if row_groups.is_empty() {
            return Ok(Vec::new());
        }
        let perr = |e: parquet::errors::ParquetError| StorageError::parquet(&entry.path, e);
        let mut builder = ParquetPushDecoderBuilder::new_with_metadata(meta.clone())
            .with_row_groups(row_groups)
            .with_batch_size(8192);
        if let Some(selection) = selection {
            builder = builder.with_row_selection(selection);
        }
        if let Some(row_filter) = row_filter {
            builder = builder.with_row_filter(row_filter);
        }
        if let Some(cols) = columns {
            let leaves: Vec<usize> = cols.iter().filter_map(|c| column_index(&meta, c)).collect();
            let mask =
                ProjectionMask::leaves(meta.metadata().file_metadata().schema_descr(), leaves);
            builder = builder.with_projection(mask);
        }
        let mut decoder = builder.build().map_err(perr)?;
        let path = Catalog::path_of(entry);
        let mut out = Vec::new();
        loop {
            let (d, step) = loupe_core::cpu::run(move || {
                let step = decode_until_io(&mut decoder);
                (decoder, step)
            })
            .await?;
            decoder = d;
            let (batches, needs) = step.map_err(perr)?;
            out.extend(batches);
            let Some(ranges) = needs else { break };
            let data = self
                .storage
                .store
                .get_ranges(&path, &ranges)
                .await
                .map_err(|e| StorageError::store("get", &path, e))?;
            decoder.push_ranges(ranges, data).map_err(perr)?;
        }
        Ok(out)
    }

    /// Drops the cached footer of a file that left the catalog.
    pub fn forget(&self, id: &str) {
        self.footers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(id);
    }
}

/// Decodes until the decoder needs bytes it does not have (returned) or is finished (`None`).
type Step = (Vec<RecordBatch>, Option<Vec<std::ops::Range<u64>>>);

fn decode_until_io(
    decoder: &mut ParquetPushDecoder,
) -> Result<Step, parquet::errors::ParquetError> {
    let mut batches = Vec::new();
    loop {
        match decoder.try_decode()? {
            DecodeResult::Data(b) => batches.push(b),
            DecodeResult::NeedsData(ranges) => return Ok((batches, Some(ranges))),
            DecodeResult::Finished => return Ok((batches, None)),
        }
    }
}
