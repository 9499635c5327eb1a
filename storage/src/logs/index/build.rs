//! The log index's schema, and building one index for the records of one file.
//!
//! A document of the index is a granule: [`GRANULE_ROWS`] consecutive rows of the file's
//! Parquet part (document `g` is rows `g * GRANULE_ROWS ..`), holding what any of its rows
//! holds. A lookup finds granules, their rows are read (one Parquet page holds many
//! granules, so this costs no more I/O than single rows) and checked. Against one document
//! per line, granules make the index about half as large and three times faster to build
//! (a common word is one posting per granule, not one per line), for the cost of checking
//! up to 63 rows more per hit. The index holds no documents (the Parquet part does) and no
//! positions or norms. Fields:
//! - `body`: the distinct keys of the body tokens ([`super::tokens`]) but id tokens, which go
//!   to the file's id filter ([`super::ids`]); the span id lifted from a line is left out
//!   (no query looks one up; the trace id is kept).
//! - `id_prefix`: the first bytes of the id tokens, for prefix searches.
//! - `service`: the service names, exact.
//! - `attributes`: record and resource attributes as one JSON field with dots expanded, every
//!   scalar value as exact text (`attributes.http.status_code:500` finds an int 500 and a
//!   string "500"); values over [`MAX_INDEXED_VALUE`] bytes are left to the check.
//! - `trace_id`: exact, for records whose trace id is not written in the body (a lifted id is
//!   found through `body`).
//! - `time_min`/`time_max` (i64 nanoseconds) and `severity_min`/`severity_max`: fast fields,
//!   for ranges and time order.

use std::collections::BTreeMap;

use foldhash::HashSet;
use std::path::Path;
use std::sync::{Arc, LazyLock};

use tantivy::directory::{Directory, OwnedBytes, RamDirectory};
use tantivy::schema::{
    BytesOptions, Field, IndexRecordOption, JsonObjectOptions, NumericOptions, OwnedValue, Schema,
    TextFieldIndexing, TextOptions,
};
use tantivy::store::Compressor;
use tantivy::tokenizer::TokenizerManager;
use tantivy::{Index, IndexSettings, ReloadPolicy, Searcher, TantivyDocument};

use crate::error::StorageError;
use crate::logs::index::ids::{self, IdFilterBuilder, PREFIX_BYTES};
use crate::logs::index::split::{self, Footer, InMemory, SplitDirectory};
use crate::logs::index::tokens::{KEY_BYTES, LogTokenizer, TOKENIZER, index_key, token_ranges};
use crate::logs::model::LogRecord;
use crate::model::AttrValue;

/// Attribute values longer than this are not indexed.
pub const MAX_INDEXED_VALUE: usize = 256;

/// Indexing memory before tantivy spills (one segment is kept regardless; a file's records
/// are bounded by the flush and compaction limits).
const INDEX_MEMORY: usize = 64 * 1024 * 1024;

pub const BODY: &str = "body";
pub const ID_PREFIX: &str = "id_prefix";
pub const SERVICE: &str = "service";
pub const ATTRIBUTES: &str = "attributes";
pub const TRACE_ID: &str = "trace_id";
pub const TIME_MIN: &str = "time_min";
pub const TIME_MAX: &str = "time_max";
pub const SEVERITY_MIN: &str = "severity_min";
pub const SEVERITY_MAX: &str = "severity_max";

/// Rows per index document.
pub const GRANULE_ROWS: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct Fields {
    pub body: Field,
    pub service: Field,
    pub attributes: Field,
    pub trace_id: Field,
    pub time_min: Field,
    pub time_max: Field,
    pub severity_min: Field,
    pub severity_max: Field,
    /// Absent from indexes written before ids had a filter.
    pub id_prefix: Field,
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
    let raw = TextOptions::default().set_indexing_options(exact.clone());
    let attributes = b.add_json_field(
        ATTRIBUTES,
        JsonObjectOptions::default()
            .set_indexing_options(exact)
            .set_expand_dots_enabled(),
    );
    let trace_id = b.add_bytes_field(TRACE_ID, BytesOptions::default().set_indexed());
    let fast = || NumericOptions::default().set_fast();
    let fields = Fields {
        body,
        service,
        attributes,
        trace_id,
        time_min: b.add_i64_field(TIME_MIN, fast()),
        time_max: b.add_i64_field(TIME_MAX, fast()),
        severity_min: b.add_u64_field(SEVERITY_MIN, fast()),
        severity_max: b.add_u64_field(SEVERITY_MAX, fast()),
        id_prefix: b.add_text_field(ID_PREFIX, raw),
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
        // Documents are empty (nothing is stored); compressed, their store is a few bytes.
        docstore_compression: Compressor::Zstd(Default::default()),
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

/// A key (at most [`KEY_BYTES`] < 16 bytes), lower-cased, with its length: equal keys, equal
/// numbers, and no allocation or string compare to tell them apart.
fn packed(key: &str) -> u128 {
    let mut b = [0u8; 16];
    let n = key.len().min(KEY_BYTES);
    b[..n].copy_from_slice(&key.as_bytes()[..n]);
    b[..n].make_ascii_lowercase();
    b[15] = n as u8;
    u128::from_le_bytes(b)
}

/// What building one granule's document needs, kept from one granule to the next.
#[derive(Default)]
struct Scratch {
    seen: HashSet<u128>,
    keys: String,
    prefixes: Vec<[u8; PREFIX_BYTES]>,
    ids: IdFilterBuilder,
}

/// Granule `number`'s document (its id tokens go to the id filter). `lifted[i]`: record
/// `i`'s trace context is written in its body.
fn granule(
    number: u32,
    records: &[&LogRecord],
    lifted: &[bool],
    f: &Fields,
    scratch: &mut Scratch,
) -> TantivyDocument {
    let mut doc = TantivyDocument::new();
    let Scratch {
        seen,
        keys,
        prefixes,
        ids,
    } = scratch;
    seen.clear();
    keys.clear();
    prefixes.clear();
    let mut attrs: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut last_resource: *const crate::model::Resource = std::ptr::null();
    let mut traces: Vec<[u8; 16]> = Vec::new();
    for (r, &lifted) in records.iter().zip(lifted) {
        let span_hash = match (lifted, r.span_id) {
            (true, Some(span)) => Some(ids::hash(hex::encode(span).as_bytes())),
            _ => None,
        };
        let body = r.body_text();
        for (a, b) in token_ranges(&body) {
            let token = &body.as_bytes()[a..b];
            if ids::is_id_token(token) {
                let h = ids::hash(token);
                if Some(h) != span_hash {
                    ids.add(number, h);
                    let mut p = [0u8; PREFIX_BYTES];
                    p.copy_from_slice(&token[..PREFIX_BYTES]);
                    p.make_ascii_lowercase();
                    if !prefixes.contains(&p) {
                        prefixes.push(p);
                    }
                }
                continue;
            }
            let key = index_key(&body[a..b]);
            let k = packed(key);
            if seen.insert(k) {
                let at = keys.len();
                keys.push_str(key);
                keys[at..].make_ascii_lowercase();
                keys.push(' ');
            }
        }
        let resource = Arc::as_ptr(&r.resource);
        let own = r.attributes.0.iter();
        let shared = (resource != last_resource).then(|| r.resource.attributes.0.iter());
        last_resource = resource;
        for (k, v) in shared.into_iter().flatten().chain(own) {
            if let Some(s) = scalar_text(v) {
                let values = attrs.entry(k.clone()).or_default();
                if !values.contains(&s) {
                    values.push(s);
                }
            }
        }
        if let (false, Some(id)) = (lifted, r.trace_id)
            && !traces.contains(&id)
        {
            traces.push(id);
        }
    }
    doc.add_text(f.body, keys.as_str());
    for p in prefixes.iter() {
        // ASCII letters and digits (id tokens are).
        doc.add_text(f.id_prefix, std::str::from_utf8(p).unwrap_or_default());
    }
    let mut services: Vec<&str> = records.iter().map(|r| r.service_name()).collect();
    services.dedup();
    for s in services {
        doc.add_text(f.service, s);
    }
    if !attrs.is_empty() {
        let object = attrs
            .into_iter()
            .map(|(k, mut v)| {
                let value = if v.len() == 1 {
                    OwnedValue::Str(v.remove(0))
                } else {
                    OwnedValue::Array(v.into_iter().map(OwnedValue::Str).collect())
                };
                (k, value)
            })
            .collect();
        doc.add_object(f.attributes, object);
    }
    for id in &traces {
        doc.add_bytes(f.trace_id, id);
    }
    let times = records.iter().map(|r| r.time_unix_nano);
    doc.add_i64(f.time_min, times.clone().min().unwrap_or(0));
    doc.add_i64(f.time_max, times.max().unwrap_or(0));
    let sev = records.iter().map(|r| r.severity_number.max(0) as u64);
    doc.add_u64(f.severity_min, sev.clone().min().unwrap_or(0));
    doc.add_u64(f.severity_max, sev.max().unwrap_or(0));
    doc
}

/// Builds the index of `records` (in file row order; `lifted` as in [`granule`]) and appends
/// it and its footer to the Parquet part `parquet`.
pub fn build_and_pack(
    parquet: Vec<u8>,
    records: &[&LogRecord],
    lifted: &[bool],
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
    let mut scratch = Scratch::default();
    for (number, (rows, lifted)) in records
        .chunks(GRANULE_ROWS)
        .zip(lifted.chunks(GRANULE_ROWS))
        .enumerate()
    {
        writer
            .add_document(granule(number as u32, rows, lifted, &f, &mut scratch))
            .map_err(err)?;
    }
    let granules = records.len().div_ceil(GRANULE_ROWS) as u32;
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
    // Not read when the index is opened, so not in the hot cache.
    files.push((
        ids::FILE.to_string(),
        OwnedBytes::new(scratch.ids.finish(granules)),
    ));
    // Open the index once as a search will, recording what that reads: those ranges are
    // the hot cache, so opening a stored index costs one read of its footer.
    let (bare, loc) = split::pack(Vec::new(), &files, &[])?;
    let footer = Footer::parse(OwnedBytes::new(bare[loc.footer_offset as usize..].to_vec()))?;
    let recording =
        SplitDirectory::recording(Arc::new(footer), Arc::new(InMemory(OwnedBytes::new(bare))));
    open(&recording)?;
    split::pack(parquet, &files, &recording.recorded())
}

/// Opens the index in `dir` as a search does, touching what opening needs (segment and
/// term-dictionary footers): at write time, what this reads becomes the hot cache.
pub fn open(dir: &SplitDirectory) -> Result<Searcher, StorageError> {
    let err = |e: tantivy::TantivyError| StorageError::Internal(format!("log index: {e}"));
    let mut index = Index::open(dir.clone()).map_err(&err)?;
    index.set_tokenizers(tokenizers());
    let reader = index
        .reader_builder()
        .reload_policy(ReloadPolicy::Manual)
        .try_into()
        .map_err(&err)?;
    let searcher = reader.searcher();
    let f = fields();
    let with_ids = searcher.schema().get_field(ID_PREFIX).is_ok();
    for seg in searcher.segment_readers() {
        for field in [f.body, f.service, f.attributes, f.trace_id] {
            seg.inverted_index(field).map_err(&err)?;
        }
        if with_ids {
            seg.inverted_index(f.id_prefix).map_err(&err)?;
        }
    }
    Ok(searcher)
}
