//! zkfabric: a privacy-preserving data fabric node.
//!
//! The node holds donated records, commits to them with Poseidon, and answers SQL
//! aggregate queries with Groth16 proofs that the answer was computed over the committed
//! data. Its stages build on the cryptographic core, re-exported as [`circuits`]:
//! - [`schema`]: dataset schemas (TOML) and the built-in datasets;
//! - [`synth`]: deterministic synthetic records of the built-in datasets;
//! - [`manifest`]: signed epoch manifests over sealed chunks' commitments.
//!
//! See `DESIGN.md` and `examples/`.

pub use zkfabric_circuits as circuits;

pub mod manifest;
pub mod schema;
pub mod synth;
