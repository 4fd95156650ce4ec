//! The one error type of the circuits crate.

use ark_relations::gr1cs::SynthesisError;
use ark_serialize::SerializationError;

/// Why a shape, a witness, a key or a proof was refused.
#[derive(Debug, thiserror::Error)]
pub enum CircuitError {
    /// A circuit shape or chunk layout is malformed (named field and reason).
    #[error("invalid shape: {0}")]
    InvalidShape(String),
    /// Query parameters do not fit the shape (named parameter and reason).
    #[error("invalid query parameters: {0}")]
    InvalidQuery(String),
    /// Witness data do not fit the shape (named column, row or slot and reason).
    #[error("invalid witness: {0}")]
    InvalidWitness(String),
    /// The assignment violates a constraint: the statement is false, so nothing is proven.
    #[error("the witness does not satisfy the circuit (constraint {0})")]
    Unsatisfied(usize),
    /// A proving key was used with a circuit of another shape.
    #[error("proving key does not fit this circuit: {0}")]
    KeyMismatch(String),
    /// arkworks refused to synthesize or prove.
    #[error("constraint synthesis failed: {0}")]
    Synthesis(#[from] SynthesisError),
    /// A verifying key or proof decodes but cannot be honest (an identity point, no
    /// input bases): named part and reason.
    #[error("refused key or proof: {0}")]
    Degenerate(String),
    /// Bytes are not a valid compressed key or proof.
    #[error("malformed key or proof bytes: {0}")]
    Serialization(#[from] SerializationError),
}
