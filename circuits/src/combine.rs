//! The combine circuit: opens `K` committed partials (chunk results or subtotals), adds
//! them per group, and outputs one of:
//! - [`CombineOutput::Release`]: per group the SUM and COUNT, or "suppressed" for a group
//!   of fewer than `k` rows (public minimum group size), with nothing else about it;
//! - [`CombineOutput::Predicate`]: per group one bit, "the group's sum is at least `t`"
//!   (with a [counted condition](crate::aggregate::Aggregand::CountWhere) the sum is the
//!   number of selected rows meeting it, so `t = 1` asks "does any?"), suppressed likewise
//!   below `k` rows;
//! - [`CombineOutput::Subtotal`]: a fresh commitment to the totals, which a parent combine
//!   opens like any partial, so a tree of combines covers any number of chunks.
//!
//! Public inputs: the shape's digest ([`CombineShape::digest`], fixed by a constraint),
//! the `K` partial commitments (unused slots hold [`empty_slot_commitment`]), then for
//! Release `k` and per group `(suppressed, count, sum)`; for Predicate `k`, `t` and per
//! group `(suppressed, holds)`; for Subtotal the output commitment. The minimum group
//! size `k` is at least 1: a group of no rows is always suppressed, so a predicate over
//! no rows is never "true".

use ark_ff::Zero;
use ark_r1cs_std::{
    alloc::AllocVar,
    boolean::Boolean,
    eq::EqGadget,
    fields::{fp::FpVar, FieldVar},
};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::{
    aggregate::Partial,
    commitment::PARTIAL_TAG,
    gadgets::{is_ge, to_bits},
    poseidon::gadget::chain,
    snark, CircuitError, Fr,
};

/// Counts and the minimum group size are compared as 40-bit numbers (a trillion rows).
pub const COUNT_BITS: u32 = 40;
/// Predicate sums and thresholds are compared as 64-bit numbers.
pub const PREDICATE_BITS: u32 = 64;

/// What a combine releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CombineOutput {
    /// Per-group SUM and COUNT, small groups suppressed.
    Release,
    /// Per-group bit "sum >= t", small groups suppressed.
    Predicate,
    /// A committed subtotal for a parent combine.
    Subtotal,
}

/// Everything that fixes the combine circuit's constraint system.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CombineShape {
    /// Partial slots `K`.
    pub inputs: usize,
    /// Group slots `G`, as in the chunk proofs.
    pub groups: usize,
    /// What it outputs.
    pub output: CombineOutput,
}

impl CombineShape {
    /// The canonical text of the shape: what keys are filed and pinned under, and what
    /// [`CombineShape::digest`] hashes.
    pub fn description(&self) -> String {
        let output = match self.output {
            CombineOutput::Release => "release",
            CombineOutput::Predicate => "predicate",
            CombineOutput::Subtotal => "subtotal",
        };
        format!(
            "combine/v2 inputs={} groups={} output={output}",
            self.inputs, self.groups
        )
    }

    /// The shape's digest, the circuit's first public input.
    pub fn digest(&self) -> Fr {
        snark::shape_digest(&self.description())
    }
}

/// A committed partial and its blind: what the prover opens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opening {
    /// The opened partial.
    pub partial: Partial,
    /// Its blinding factor.
    pub blind: Fr,
}

/// Public parameters of a combine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CombineParams {
    /// Groups of fewer selected rows are suppressed (Release and Predicate).
    pub min_group_size: u64,
    /// The predicate holds for a group whose sum is at least this (Predicate).
    pub threshold: u64,
}

/// One group of a released answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupRelease {
    /// Fewer than `k` rows: nothing is said about the group.
    Suppressed,
    /// The group's COUNT and SUM.
    Released { count: u64, sum: u128 },
}

/// One group of a predicate answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupAnswer {
    /// Fewer than `k` rows: nothing is said about the group.
    Suppressed,
    /// Whether the group's sum reaches the threshold.
    Holds(bool),
}

/// What a combine proves, matching its [`CombineOutput`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CombineResult {
    /// Released sums and counts.
    Release {
        min_group_size: u64,
        groups: Vec<GroupRelease>,
    },
    /// Predicate bits.
    Predicate {
        min_group_size: u64,
        threshold: u64,
        groups: Vec<GroupAnswer>,
    },
    /// Commitment to the totals.
    Subtotal { commitment: Fr },
}

/// The public statement of one combine proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CombineInstance {
    /// `K` partial commitments, unused slots padded.
    pub partial_commitments: Vec<Fr>,
    /// The output.
    pub result: CombineResult,
}

impl CombineInstance {
    /// The public-input vector a verifier checks a combine proof against, in the order
    /// the module documentation gives, after checking the statement fits `shape`.
    pub fn public_inputs(&self, shape: &CombineShape) -> Result<Vec<Fr>, CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidQuery(msg));
        if self.partial_commitments.len() != shape.inputs {
            return bad(format!(
                "{} partial commitments for {} slots",
                self.partial_commitments.len(),
                shape.inputs
            ));
        }
        let (k, groups) = match (&self.result, shape.output) {
            (
                CombineResult::Release {
                    min_group_size,
                    groups,
                },
                CombineOutput::Release,
            ) => (*min_group_size, groups.len()),
            (
                CombineResult::Predicate {
                    min_group_size,
                    groups,
                    ..
                },
                CombineOutput::Predicate,
            ) => (*min_group_size, groups.len()),
            (CombineResult::Subtotal { .. }, CombineOutput::Subtotal) => (0, shape.groups),
            _ => {
                return bad(format!(
                    "result is not of the shape's kind {:?}",
                    shape.output
                ))
            }
        };
        if groups != shape.groups {
            return bad(format!("{groups} groups for a shape of {}", shape.groups));
        }
        check_min_group_size(k, shape.output)?;
        Ok(self.assemble(shape))
    }

    /// The public-input vector, unchecked (the circuit allocates exactly this).
    fn assemble(&self, shape: &CombineShape) -> Vec<Fr> {
        let mut out = vec![shape.digest()];
        out.extend(&self.partial_commitments);
        let flag = |b: bool| Fr::from(u8::from(b));
        match &self.result {
            CombineResult::Release {
                min_group_size,
                groups,
            } => {
                out.push(Fr::from(*min_group_size));
                for g in groups {
                    out.extend(match *g {
                        GroupRelease::Suppressed => [flag(true), Fr::zero(), Fr::zero()],
                        GroupRelease::Released { count, sum } => {
                            [flag(false), Fr::from(count), Fr::from(sum)]
                        }
                    });
                }
            }
            CombineResult::Predicate {
                min_group_size,
                threshold,
                groups,
            } => {
                out.extend([Fr::from(*min_group_size), Fr::from(*threshold)]);
                for g in groups {
                    out.extend(match *g {
                        GroupAnswer::Suppressed => [flag(true), flag(false)],
                        GroupAnswer::Holds(h) => [flag(false), flag(h)],
                    });
                }
            }
            CombineResult::Subtotal { commitment } => out.push(*commitment),
        }
        out
    }
}

/// `k` fits its bits and, for what releases anything, is at least 1.
fn check_min_group_size(k: u64, output: CombineOutput) -> Result<(), CircuitError> {
    if k >> COUNT_BITS != 0 {
        return Err(CircuitError::InvalidQuery(format!(
            "minimum group size {k} exceeds {COUNT_BITS} bits"
        )));
    }
    if k == 0 && output != CombineOutput::Subtotal {
        return Err(CircuitError::InvalidQuery(
            "minimum group size 0: k is at least 1, so that no group of zero rows is released"
                .into(),
        ));
    }
    Ok(())
}

/// Commitment of an unused slot: the zero partial under a zero blind. Anyone can open it,
/// and it opens only to zeros.
pub fn empty_slot_commitment(groups: usize) -> Fr {
    Partial::zero(groups).commit(Fr::zero())
}

/// Native twin: the totals of `openings` and what the combine releases about them.
pub fn evaluate(
    shape: &CombineShape,
    params: CombineParams,
    openings: &[Opening],
    output_blind: Fr,
) -> Result<(Partial, CombineResult), CircuitError> {
    let bad = |msg: String| Err(CircuitError::InvalidWitness(msg));
    if shape.inputs == 0 || shape.groups == 0 {
        return Err(CircuitError::InvalidShape(
            "a combine needs K >= 1 and G >= 1".into(),
        ));
    }
    if openings.len() > shape.inputs {
        return bad(format!(
            "{} partials for {} slots",
            openings.len(),
            shape.inputs
        ));
    }
    let mut total = Partial::zero(shape.groups);
    for (i, o) in openings.iter().enumerate() {
        if o.partial.sums.len() != shape.groups || o.partial.counts.len() != shape.groups {
            return bad(format!("partial {i} does not have {} groups", shape.groups));
        }
        for g in 0..shape.groups {
            total.sums[g] += o.partial.sums[g];
            total.counts[g] += o.partial.counts[g];
        }
    }
    check_min_group_size(params.min_group_size, shape.output)?;
    if let Some(c) = total.counts.iter().find(|c| *c >> COUNT_BITS != 0) {
        return bad(format!("count {c} exceeds {COUNT_BITS} bits"));
    }
    let k = params.min_group_size;
    let result = match shape.output {
        CombineOutput::Release => CombineResult::Release {
            min_group_size: k,
            groups: (0..shape.groups)
                .map(|g| match total.counts[g] >= k {
                    true => GroupRelease::Released {
                        count: total.counts[g],
                        sum: total.sums[g],
                    },
                    false => GroupRelease::Suppressed,
                })
                .collect(),
        },
        CombineOutput::Predicate => {
            if let Some(s) = total.sums.iter().find(|s| *s >> PREDICATE_BITS != 0) {
                return bad(format!("predicate sum {s} exceeds {PREDICATE_BITS} bits"));
            }
            CombineResult::Predicate {
                min_group_size: k,
                threshold: params.threshold,
                groups: (0..shape.groups)
                    .map(|g| match total.counts[g] >= k {
                        true => GroupAnswer::Holds(total.sums[g] >= u128::from(params.threshold)),
                        false => GroupAnswer::Suppressed,
                    })
                    .collect(),
            }
        }
        CombineOutput::Subtotal => CombineResult::Subtotal {
            commitment: total.commit(output_blind),
        },
    };
    Ok((total, result))
}

/// One combine proof's statement and witness.
#[derive(Clone, Debug)]
pub struct CombineCircuit {
    /// The circuit's shape.
    pub shape: CombineShape,
    /// The public statement.
    pub instance: CombineInstance,
    /// `K` openings, unused slots padded with zero partials.
    pub openings: Vec<Opening>,
    /// Blind of the output commitment (Subtotal).
    pub output_blind: Fr,
    /// The per-group totals of the openings: what a Subtotal's commitment opens to.
    pub total: Partial,
}

impl CombineCircuit {
    /// An honest circuit over `openings` (at most `K`), padded to `K` slots.
    pub fn new(
        shape: CombineShape,
        params: CombineParams,
        mut openings: Vec<Opening>,
        output_blind: Fr,
    ) -> Result<Self, CircuitError> {
        let (total, result) = evaluate(&shape, params, &openings, output_blind)?;
        openings.resize(
            shape.inputs,
            Opening {
                partial: Partial::zero(shape.groups),
                blind: Fr::zero(),
            },
        );
        let partial_commitments = openings.iter().map(|o| o.partial.commit(o.blind)).collect();
        Ok(Self {
            shape,
            instance: CombineInstance {
                partial_commitments,
                result,
            },
            openings,
            output_blind,
            total,
        })
    }
}

impl snark::Circuit for CombineCircuit {
    type Shape = CombineShape;

    fn blank(shape: &CombineShape) -> Result<Self, CircuitError> {
        let params = CombineParams {
            min_group_size: 1,
            threshold: 0,
        };
        Self::new(*shape, params, Vec::new(), Fr::zero())
    }

    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        self.instance.public_inputs(&self.shape)
    }
}

impl ConstraintSynthesizer<Fr> for CombineCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        // The total is recomputed in-circuit from the openings, never taken as given.
        let Self {
            shape,
            instance,
            openings,
            output_blind,
            total: _,
        } = self;
        let witness = |v: Fr| FpVar::new_witness(cs.clone(), || Ok(v));
        let inputs = instance
            .assemble(&shape)
            .into_iter()
            .map(|v| FpVar::new_input(cs.clone(), || Ok(v)))
            .collect::<Result<Vec<_>, _>>()?;
        // The statement is about this shape and no other.
        inputs[0].enforce_equal(&FpVar::constant(shape.digest()))?;
        let (commitments, outputs) = inputs[1..].split_at(shape.inputs);

        // Open every slot and add it up.
        let mut sums = vec![FpVar::zero(); shape.groups];
        let mut counts = vec![FpVar::zero(); shape.groups];
        for (opening, commitment) in openings.iter().zip(commitments) {
            let slot_sums = opening
                .partial
                .sums
                .iter()
                .map(|&s| witness(Fr::from(s)))
                .collect::<Result<Vec<_>, _>>()?;
            let slot_counts = opening
                .partial
                .counts
                .iter()
                .map(|&c| witness(Fr::from(c)))
                .collect::<Result<Vec<_>, _>>()?;
            let mut preimage = vec![
                FpVar::constant(Fr::from(PARTIAL_TAG)),
                witness(opening.blind)?,
            ];
            preimage.extend(slot_sums.iter().cloned());
            preimage.extend(slot_counts.iter().cloned());
            chain(&preimage)?.enforce_equal(commitment)?;
            for g in 0..shape.groups {
                sums[g] += &slot_sums[g];
                counts[g] += &slot_counts[g];
            }
        }

        // Whether each group reaches the minimum size k, which is 1 or more (k and k - 1
        // both fit COUNT_BITS).
        let large_enough = |k: &FpVar<Fr>| -> Result<Vec<Boolean<Fr>>, SynthesisError> {
            to_bits(k, COUNT_BITS)?;
            to_bits(&(k - Fr::from(1u8)), COUNT_BITS)?;
            counts
                .iter()
                .map(|count| {
                    to_bits(count, COUNT_BITS)?;
                    is_ge(count, k, COUNT_BITS)
                })
                .collect()
        };
        match shape.output {
            CombineOutput::Release => {
                let large = large_enough(&outputs[0])?;
                for (g, released) in outputs[1..].chunks(3).enumerate() {
                    let shown = FpVar::from(large[g].clone());
                    FpVar::from(!&large[g]).enforce_equal(&released[0])?;
                    (&counts[g] * &shown).enforce_equal(&released[1])?;
                    (&sums[g] * &shown).enforce_equal(&released[2])?;
                }
            }
            CombineOutput::Predicate => {
                let large = large_enough(&outputs[0])?;
                let threshold = &outputs[1];
                to_bits(threshold, PREDICATE_BITS)?;
                for (g, answer) in outputs[2..].chunks(2).enumerate() {
                    to_bits(&sums[g], PREDICATE_BITS)?;
                    let holds = is_ge(&sums[g], threshold, PREDICATE_BITS)?;
                    FpVar::from(!&large[g]).enforce_equal(&answer[0])?;
                    FpVar::from(&holds & &large[g]).enforce_equal(&answer[1])?;
                }
            }
            CombineOutput::Subtotal => {
                let mut preimage = vec![
                    FpVar::constant(Fr::from(PARTIAL_TAG)),
                    witness(output_blind)?,
                ];
                preimage.extend(sums);
                preimage.extend(counts);
                chain(&preimage)?.enforce_equal(&outputs[0])?;
            }
        }
        Ok(())
    }
}
