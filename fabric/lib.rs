//! zkfabric: a privacy-preserving data fabric node.
//!
//! The node holds donated records, commits to them with Poseidon, and answers SQL
//! aggregate queries with Groth16 proofs that the answer was computed over the committed
//! data. Its stages (schema, store, seal, query, prove, bundle, verify, serve) build on the
//! cryptographic core re-exported here as [`circuits`]; see `DESIGN.md` in the repository
//! and `examples/` for what runs today.

pub use zkfabric_circuits as circuits;
