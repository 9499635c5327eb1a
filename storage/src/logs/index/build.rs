//! The log index's schema, and building one index for the records of one file.
//!
//! Document `n` is row `n` of the file's Parquet part: the index is written in one segment,
//! in the file's row order, so a hit's document id is the row to read. The index holds no
//! documents (the Parquet part does) and no positions or norms: a term finds the lines that
//! hold it, phrases are checked on the lines. Fields:
//! - `body`: the body's text through the log tokenizer ([`super::tokens`]).
//! - `service`: the service name, exact.
//! - `attributes`: record and resource attributes as one JSON field with dots expanded, every
//!   scalar value as exact text (`attributes.http.status_code:500` finds an int 500 and a
//!   string "500"); values over [`MAX_INDEXED_VALUE`] bytes are left to the check.
//! - `trace_id`: exact, for records whose trace id is not already a token of the body (a
//!   lifted id is found through `body`).
//! - `time` (i64 nanoseconds) and `severity` (u64): fast fields, for ranges, ordering and
//!   histograms.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use tantivy::directory::{Directory, OwnedBytes, RamDirectory};
use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::store::Compressor;
use tantivy::tokenizer::TokenizerManager;
use tantivy::{Index, IndexSettings, TantivyDocument};

use crate::error::StorageError;
use crate::logs::encode::context_in;
use crate::logs::index::split::{self, Footer, InMemory, SplitDirectory};
use crate::logs::index::tokens::{LogTokenizer, TOKENIZER};
use crate::logs::model::LogRecord;
use crate::model::AttrValue;

/// Attribute values longer than this are not indexed.
pub const MAX_INDEXED_VALUE: usize = 256;

/// Indexing memory before tantivy spills (one segment is kept regardless; a file's records
/// are bounded by the flush and compaction limits).
const INDEX_MEMORY: usize = 64 * 1024 * 1024;

pub const BODY: &str = "body";
pub const SERVICE: &str = "service";
pub const ATTRIBUTES: &str = "attributes";
pub const TRACE_ID: &str = "trace_id";
pub const TIME: &str = "time";
pub const SEVERITY: &str = "severity";

#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub body: Field,
    pub service: Field,
    pub attributes: Field,
    pub trace_id: Field,
    pub time: Field,
    pub severity: Field,
}

pub static SCHEMA: LazyLock<(Schema, Fields)> = LazyLock::new(|| {
    let mut b = Schema::builder();
    let words = TextFieldIndexing::default()
        .set_tokenizer(TOKENIZER)
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let exact = TextFieldIndexing::default()
        .set_tokenizer("raw")
        .set_index_option(IndexRecordOption::Basic)
        .set_fieldnorms(false);
    let body = b.add_text_field(BODY, TextOptions::default().set_indexing_options(words));
    let service = b.add_text_field(
        SERVICE,
        TextOptions::default().set_indexing_options(exact.clone()),
    );
    let attributes = b.add_json_field(
        ATTRIBUTES,
        JsonObjectOptions::default()
            .set_indexing_options(exact)
            .set_expand_dots_enabled(),
    );
    let trace_id = b.add_bytes_field(TRACE_ID, BytesOptions::default().set_indexed());
    let time = b.add_i64_field(TIME, NumericOptions::default().set_fast());
    let severity = b.add_u64_field(SEVERITY, NumericOptions::default().set_fast());
    let fields = Fields {
        body,
        service,
        attributes,
        trace_id,
        time,
        severity,
    };
    (b.build(), fields)
});

pub fn fields() -> Fields {
    SCHEMA.1
}

/// The tokenizers every log index is opened with.
pub fn tokenizers() -> TokenizerManager {
    let t = TokenizerManager::default();
    t.register(TOKENIZER, LogTokenizer::default());
    t
}

fn settings() -> IndexSettings {
    IndexSettings {
        docstore_compression: Compressor::None,
        docstore_compress_dedicated_thread: false,
        ..IndexSettings::default()
    }
}

fn scalar_text(v: &AttrValue) -> Option<String> {
    match v {
        AttrValue::Map(_) | AttrValue::Array(_) | AttrValue::Bytes(_) => None,
        other => Some(other.to_filter_string()),
    }
    .filter(|s| s.len() <= MAX_INDEXED_VALUE)
}

fn document(r: &LogRecord, f: &Fields) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    let body = r.body_text();
    doc.add_text(f.body, body.as_ref());
    doc.add_text(f.service, r.service_name());
    let mut attrs = BTreeMap::new();
    for (k, v) in r.resource.attributes.0.iter().chain(r.attributes.0.iter()) {
        if let Some(s) = scalar_text(v) {
            attrs.insert(k.clone(), OwnedValue::Str(s));
        }
    }
    if !attrs.is_empty() {
        doc.add_object(f.attributes, attrs);
    }
    if let Some(id) = r.trace_id {
        let in_body = matches!(&r.body, AttrValue::Str(t) if context_in(t).0 == Some(id));
        if !in_body {
            doc.add_bytes(f.trace_id, &id);
        }
    }
    doc.add_i64(f.time, r.time_unix_nano);
    doc.add_u64(f.severity, r.severity_number.max(0) as u64);
    doc
}

/// Builds the index of `records` (in file row order) and appends it and its footer to the
/// Parquet part `parquet`.
pub fn build_and_pack(
    parquet: Vec<u8>,
    records: &[&LogRecord],
) -> Result<(Vec<u8>, crate::catalog::IndexLocation), StorageError> {
    let err = |e: tantivy::TantivyError| StorageError::Internal(format!("log index: {e}"));
    let f = fields();
    let dir = RamDirectory::create();
    let mut writer = Index::builder()
        .schema(SCHEMA.0.clone())
        .settings(settings())
        .tokenizers(tokenizers())
        .single_segment_index_writer::<TantivyDocument>(dir.clone(), INDEX_MEMORY)
        .map_err(err)?;
    for r in records {
        writer.add_document(document(r, &f)).map_err(err)?;
    }
    let index = writer.finalize().map_err(err)?;
    let mut names = vec!["meta.json".to_string()];
    let mut segment_files: Vec<_> = index
        .load_metas()
        .map_err(err)?
        .list_segment_files()
        .into_iter()
        .collect();
    segment_files.sort();
    for p in segment_files {
        if dir.exists(&p).unwrap_or(false) {
            names.push(p.to_string_lossy().into_owned());
        }
    }
    let mut files = Vec::with_capacity(names.len());
    for name in names {
        let bytes = dir
            .atomic_read(Path::new(&name))
            .map_err(|e| StorageError::Internal(format!("log index file {name}: {e}")))?;
        files.push((name, OwnedBytes::new(bytes)));
    }
    // Open the index once as a search will, recording what that reads: those ranges are
    // the hot cache, so opening a stored index costs one read of its footer.
    let (bare, loc) = split::pack(Vec::new(), &files, &[])?;
    let footer = Footer::parse(OwnedBytes::new(bare[loc.footer_offset as usize..].to_vec()))?;
    let recording =
        SplitDirectory::recording(Arc::new(footer), Arc::new(InMemory(OwnedBytes::new(bare))));
    super::reader::open(&recording)?;
    split::pack(parquet, &files, &recording.recorded())
}
