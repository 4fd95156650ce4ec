//! zkfabric: a privacy-preserving data fabric node.
//!
//! The node holds donated records, commits to them with Poseidon, and answers SQL
//! aggregate queries with Groth16 proofs that the answer was computed over the committed
//! data. Data flows one way: donor -> ingest -> seal -> manifest -> query -> prove ->
//! bundle -> verify. The crate is split by role, each layer using only those below it:
//! - [`clients`]: the command line and the gRPC client of a node (`--remote`);
//! - [`node`]: the node's stages in flow order: donors' admission ([`node::donor`]),
//!   ingest and seal into the store ([`node::store`]), DataFusion tables and SQL lowering
//!   ([`node::tables`], [`node::sql`]), keys, proofs and proving ([`node::keys`],
//!   [`node::proofs`], [`node::prove`]), the gRPC server ([`node::server`]) and its
//!   configuration ([`node::config`]);
//! - [`shared`]: donors' credentials and proofs, record files and synthetic records:
//!   what donors and clients make and the node checks or ingests;
//! - [`verifier`] (the `zkfabric-verifier` crate): what node and verifier agree on
//!   (schemas, signed manifests, the canonical query, the bundle) and the offline
//!   verifier itself;
//! - [`circuits`] (the `zkfabric-circuits` crate): the cryptographic core.
//!
//! See `DESIGN.md` and `examples/`.

pub use zkfabric_circuits as circuits;
pub use zkfabric_verifier as verifier;

pub mod clients;
pub mod node;
pub mod shared;
