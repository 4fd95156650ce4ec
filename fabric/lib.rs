//! zkfabric: a privacy-preserving data fabric node.
//!
//! The node holds donated records, commits to them with Poseidon, and answers SQL
//! aggregate queries with Groth16 proofs that the answer was computed over the committed
//! data. Its stages build on the cryptographic core, re-exported as [`circuits`]:
//! - [`schema`]: dataset schemas (TOML) and the built-in datasets;
//! - [`synth`]: deterministic synthetic records of the built-in datasets;
//! - [`records`]: record files (CSV, Parquet, Arrow IPC) read, validated and written;
//! - [`store`]: the data directory: pending rows, sealing into committed chunks, the
//!   SQLite catalog and the node key;
//! - [`manifest`]: signed epoch manifests over sealed chunks' commitments;
//! - [`tables`]: an epoch's chunks as a DataFusion table for queries;
//! - [`query`]: SQL lowered to provable queries and their circuit shapes;
//! - [`config`]: the node configuration file;
//! - [`keys`]: proving keys per circuit shape;
//! - [`proofs`]: chunk proofs kept for reuse across queries and restarts;
//! - [`prove`]: answering a query with proofs;
//! - [`bundle`]: the answer bundle (protobuf) and its files;
//! - [`verify`]: the offline verifier;
//! - [`snarkjs`]: verified proofs in snarkjs' JSON formats;
//! - [`server`]: the gRPC node (`zkfabric serve`);
//! - [`remote`]: a client of a node, for the CLI's `--remote` and the examples;
//! - [`donor`]: donors' credentials and eligibility proofs;
//! - [`demo`]: the demo's data and questions.
//!
//! See `DESIGN.md` and `examples/`.

pub use zkfabric_circuits as circuits;

pub mod bundle;
pub mod config;
pub mod demo;
pub mod donor;
pub mod keys;
pub mod manifest;
pub mod proofs;
pub mod prove;
pub mod query;
pub mod records;
pub mod remote;
pub mod schema;
pub mod server;
pub mod snarkjs;
pub mod store;
pub mod synth;
pub mod tables;
pub mod verify;
