//! Pieces the node and its clients share, above the verifier's types.
//! - [`records`]: record files (CSV, Parquet, Arrow IPC) read, validated and written:
//!   what donors send and the node ingests;
//! - [`synth`]: deterministic synthetic records of the built-in datasets.

pub mod records;
pub mod synth;
