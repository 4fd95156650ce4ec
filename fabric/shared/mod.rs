//! Pieces the node and its clients share, above the verifier's types.
//! - [`credentials`]: donors' key and credential files, and the eligibility and
//!   withdrawal proofs and signatures donations carry (the node checks them);
//! - [`records`]: record files (CSV, Parquet, Arrow IPC) read, validated and written:
//!   what donors send and the node ingests;
//! - [`synth`]: deterministic synthetic records of the built-in datasets.

pub mod credentials;
pub mod records;
pub mod synth;
