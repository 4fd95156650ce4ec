//! Interoperability with the circom/snarkjs tool chain, so that proving keys can come from
//! a public multi-party ceremony instead of a single party:
//! - [`r1cs`]: a shape's constraint system in iden3's `.r1cs` format, the ceremony's input;
//! - [`zkey`]: a ceremony's final `.zkey` read into a proving key, once it is checked to be
//!   for exactly the shape's constraint system;
//! - [`CircomReduction`]: the R1CS-to-QAP reduction such keys are made for.
//!
//! Verification does not depend on the reduction: a proof made under a ceremony key is an
//! ordinary Groth16 proof, which snarkjs verifies too.

pub mod r1cs;
mod reduction;
pub mod zkey;

pub use reduction::CircomReduction;
