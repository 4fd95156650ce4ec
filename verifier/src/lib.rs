//! zkfabric's offline verifier: what an auditor needs to check an answer bundle, and
//! nothing else (no SQL engine, no store, no network).
//!
//! A bundle is checked in the order data reached it, each module reading what the one
//! before produced:
//! - [`schema`]: dataset schemas (TOML) and their roll-ups, which the bundle carries and
//!   the manifest hashes;
//! - [`manifest`]: the node's signed epoch manifests over its chunks' commitments;
//! - [`query`]: the canonical provable query and the circuit shapes it means;
//! - [`privacy`]: differential privacy's costs, noise parameters and intervals;
//! - [`ledger`]: the signed, hash-chained privacy ledger a dp answer is charged to;
//! - [`bundle`]: the answer bundle (protobuf), decoded field by field;
//! - [`verify`]: every check (and a roll-up sealing's proofs), and the report of what a
//!   verified bundle says;
//! - [`command`]: the verifier's command-line flags and report, shared by the small
//!   `zkfabric-verify` binary and `zkfabric verify`;
//! - [`snarkjs`]: verified proofs in snarkjs' formats, to check them with other tools;
//! - [`files`]: atomic file writes.
//!
//! The node (the `zkfabric` crate) builds on the same types: it writes what this crate
//! reads. The cryptographic core is [`zkfabric_circuits`].

pub mod bundle;
pub mod command;
pub mod files;
pub mod ledger;
pub mod manifest;
pub mod privacy;
pub mod query;
pub mod schema;
pub mod snarkjs;
pub mod table;
pub mod verify;
pub mod view;
