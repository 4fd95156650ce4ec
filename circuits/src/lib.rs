//! zkfabric's cryptographic core.
//!
//! Everything a zkfabric proof rests on, with no I/O and no async:
//! - [`poseidon`]: circomlib-compatible Poseidon over BN254, native and as a gadget;
//! - [`commitment`]: how a chunk of rows is committed (salted column groups, packed narrow
//!   columns, one chunk commitment);
//! - [`gadgets`]: range checks, bounded comparisons, equality and IN-list membership;
//! - [`eddsa`]: circomlib's EdDSA-Poseidon over BabyJubJub, native and as a gadget;
//! - [`evaluation`]: the random-evaluation argument that ties per-group totals to rows;
//! - the circuits, each with a native twin computing the same outputs:
//!   [`aggregate`] (a chunk's filtered SUM/COUNT per group, as its share of the totals'
//!   evaluation), [`combine`] (adds the shares, opens the totals, suppresses small
//!   groups, answers predicates, adds noise), [`attribute`]
//!   (a committed value lies in a range) and [`eligibility`] (a signed credential makes
//!   its holder an adult resident, with a per-dataset nullifier);
//! - [`rollup`]: a roll-up's cells, and how a sealing proves them the aggregation of its
//!   rows with two sets of [`aggregate`] proofs at one challenge;
//! - [`noise`]: binomial noise from a committed secret and a researcher's nonce;
//! - [`snark`]: Groth16 setup, proving from cached constraint matrices, verification,
//!   batch verification, key (de)serialization and fingerprints.

pub mod aggregate;
pub mod attribute;
pub mod circom;
pub mod combine;
pub mod commitment;
pub mod eddsa;
pub mod eligibility;
mod error;
pub mod evaluation;
pub mod gadgets;
pub mod noise;
pub mod poseidon;
pub mod rollup;
pub mod snark;

pub use error::CircuitError;

/// The scalar field of BN254, in which every value, digest and public input lives.
pub type Fr = ark_bn254::Fr;
