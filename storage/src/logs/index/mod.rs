//! The log index: a tantivy index per log file, in the same object as the file's Parquet
//! documents ([`split`]), built at flush and compaction ([`build`]), searched by range reads
//! with a cached footer ([`reader`]), queried from a [`crate::logs::LogFilter`] ([`query`]).
//! Id-like tokens are kept in Bloom filters per block of granules, not as terms ([`ids`]).
//! [`tokens`] is the one definition of a search term, shared by the index and the check on
//! records (fresh ones have no index).

pub mod build;
pub mod ids;
pub mod query;
pub mod reader;
pub mod split;
pub mod tokens;

pub use reader::LogIndexReader;

#[cfg(test)]
mod tests;
