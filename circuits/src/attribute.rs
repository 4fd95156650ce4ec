//! The attribute-predicate circuit: a committed value lies in `[lo, hi]` (for example an
//! age of at least 18), revealing nothing else about it.
//!
//! The commitment is `poseidon::hash([ATTRIBUTE_TAG, salt, value])`. Public inputs:
//! the commitment, `lo`, `hi`. The value lies below `2^width` (the shape), and so must
//! the bounds.

use ark_r1cs_std::{
    alloc::AllocVar,
    boolean::Boolean,
    eq::EqGadget,
    fields::{fp::FpVar, FieldVar},
};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::{
    commitment::{fits, ATTRIBUTE_TAG, MAX_WIDTH},
    gadgets::{enforce_in_range, to_bits, witness_bits},
    poseidon, snark, CircuitError, Fr,
};

/// Everything that fixes the attribute circuit: the value's width in bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct AttributeShape {
    /// Values and bounds lie below `2^width` (1..=64).
    pub width: u32,
}

/// The public statement: the committed value lies in `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttributeInstance {
    /// Commitment to the value.
    pub commitment: Fr,
    /// Inclusive lower bound.
    pub lo: u64,
    /// Inclusive upper bound.
    pub hi: u64,
}

impl AttributeInstance {
    /// The public-input vector `[commitment, lo, hi]` a verifier checks a proof against,
    /// after checking that the bounds fit the shape's width.
    pub fn public_inputs(&self, shape: &AttributeShape) -> Result<Vec<Fr>, CircuitError> {
        if !fits(self.lo, shape.width) || !fits(self.hi, shape.width) {
            return Err(CircuitError::InvalidQuery(format!(
                "bounds [{}, {}] exceed {} bits",
                self.lo, self.hi, shape.width
            )));
        }
        Ok(self.assemble())
    }

    /// The public-input vector, unchecked (the circuit allocates exactly this).
    fn assemble(&self) -> Vec<Fr> {
        vec![self.commitment, Fr::from(self.lo), Fr::from(self.hi)]
    }
}

/// Commitment to an attribute value under a secret salt.
pub fn commit(value: u64, salt: Fr) -> Fr {
    poseidon::hash(&[Fr::from(ATTRIBUTE_TAG), salt, Fr::from(value)])
}

/// Native twin: whether the statement holds for `value` of `width` bits.
pub fn holds(width: u32, value: u64, lo: u64, hi: u64) -> bool {
    [value, lo, hi].iter().all(|&v| fits(v, width)) && lo <= value && value <= hi
}

/// One attribute proof's statement and witness.
#[derive(Clone, Debug)]
pub struct AttributeCircuit {
    /// The circuit's shape.
    pub shape: AttributeShape,
    /// The public statement.
    pub instance: AttributeInstance,
    /// The committed value.
    pub value: u64,
    /// The commitment's salt.
    pub salt: Fr,
}

impl AttributeCircuit {
    /// An honest circuit, refused when the value does not lie in `[lo, hi]`: there is
    /// nothing true to prove.
    pub fn new(
        shape: AttributeShape,
        value: u64,
        salt: Fr,
        lo: u64,
        hi: u64,
    ) -> Result<Self, CircuitError> {
        if !(1..=MAX_WIDTH).contains(&shape.width) {
            return Err(CircuitError::InvalidShape(format!(
                "attribute width {}",
                shape.width
            )));
        }
        if !holds(shape.width, value, lo, hi) {
            return Err(CircuitError::InvalidWitness(format!(
                "the value is not within [{lo}, {hi}] (or exceeds {} bits)",
                shape.width
            )));
        }
        Ok(Self {
            shape,
            instance: AttributeInstance {
                commitment: commit(value, salt),
                lo,
                hi,
            },
            value,
            salt,
        })
    }
}

impl snark::Circuit for AttributeCircuit {
    type Shape = AttributeShape;

    fn blank(shape: &AttributeShape) -> Result<Self, CircuitError> {
        Self::new(*shape, 0, Fr::from(0u8), 0, 0)
    }

    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        self.instance.public_inputs(&self.shape)
    }
}

impl ConstraintSynthesizer<Fr> for AttributeCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let width = self.shape.width;
        let inputs = self
            .instance
            .assemble()
            .into_iter()
            .map(|v| FpVar::new_input(cs.clone(), || Ok(v)))
            .collect::<Result<Vec<_>, _>>()?;
        let [commitment, lo, hi] = &inputs[..] else {
            unreachable!("three public inputs")
        };
        let value = Boolean::le_bits_to_fp(&witness_bits(
            cs.clone(),
            Some(Fr::from(self.value)),
            width,
        )?)?;
        to_bits(lo, width)?;
        to_bits(hi, width)?;
        enforce_in_range(&value, lo, hi, width)?;
        let salt = FpVar::new_witness(cs.clone(), || Ok(self.salt))?;
        poseidon::gadget::hash(&[FpVar::constant(Fr::from(ATTRIBUTE_TAG)), salt, value])?
            .enforce_equal(commitment)?;
        Ok(())
    }
}
