//! The combine circuit: opens `K` committed evaluations (chunk shares or subtotals) and
//! adds them. An inner combine outputs [`CombineOutput::Subtotal`], a fresh commitment to
//! the sum, which a parent opens like any input, so a tree of combines covers any number
//! of chunks at a cost that does not depend on the groups. The root combine also opens
//! the query's per-group totals under their commitment, checks that their evaluation at
//! the challenge equals the sum of the shares ([`crate::evaluation`]), and outputs one of:
//! - [`CombineOutput::Release`]: per group the COUNT and SUMs, or "suppressed" for a group
//!   of fewer than `k` rows (public minimum group size), with nothing else about it;
//! - [`CombineOutput::Predicate`]: per group one bit, "the group's sum is at least `t`"
//!   (with a [counted condition](crate::aggregate::Aggregand::CountWhere) the sum is the
//!   number of selected rows meeting it, so `t = 1` asks "does any?"), suppressed likewise
//!   below `k` rows;
//! - [`CombineOutput::Noisy`]: per group the COUNT and SUMs with binomial noise drawn by
//!   [`crate::noise`] (differential privacy): each value is first divided by its public
//!   step (its sensitivity), then the heads of `n` coins are added; a group whose noisy
//!   count is under a public threshold is suppressed.
//!
//! Public inputs: the shape's digest ([`CombineShape::digest`], fixed by a constraint),
//! the `K` evaluation commitments (unused slots hold [`empty_slot_commitment`]); for a
//! subtotal then its output commitment; for the root the challenge `r` and the totals'
//! commitment ([`Partial::commit`]), then for Release `k` and per group
//! `(suppressed, count, sum...)` (one sum per measure); for Predicate `k`, `t` and per
//! group `(suppressed, holds)`; for Noisy the noise secret's commitment, the query hash,
//! the nonce, the count step, each sum's step, the threshold and per group
//! `(suppressed, noisy count, noisy sum...)`. The minimum group size `k` is at least 1: a
//! group of no rows is always suppressed, so a predicate over no rows is never "true".

use ark_ff::Zero;
use ark_r1cs_std::{
    alloc::AllocVar,
    boolean::Boolean,
    eq::EqGadget,
    fields::{fp::FpVar, FieldVar},
    GR1CSVar,
};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::{
    aggregate::{AggregateQuery, AggregateShape, Partial, MAX_MEASURES},
    commitment::{CHALLENGE_TAG, PARTIAL_TAG},
    evaluation::{self, combine_values, powers_of, slot_powers, squares, GroupDomain},
    gadgets::{is_ge, to_bits},
    noise::{noise, noise_gadget, open_secret, secret_commitment, NoiseSeed, MAX_COINS},
    poseidon::{self, gadget::chain},
    snark, CircuitError, Fr,
};

/// Counts and the minimum group size are compared as 40-bit numbers (a trillion rows).
pub const COUNT_BITS: u32 = 40;
/// Predicate sums and thresholds are compared as 64-bit numbers.
pub const PREDICATE_BITS: u32 = 64;
/// Noise steps (sensitivities) lie below 2^96, so `step * quotient + remainder` never
/// wraps the field for quotients below 2^128.
pub const STEP_BITS: u32 = 96;
/// Quotients of a value by its step lie below 2^128 (a `u128` sum always does).
pub const QUOTIENT_BITS: u32 = 128;
/// Noisy counts (a quotient below 2^40 plus at most 2^20 heads) and their threshold are
/// compared as 41-bit numbers.
pub const NOISY_COUNT_BITS: u32 = COUNT_BITS + 1;

/// What a combine releases.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CombineOutput {
    /// Per-group SUM and COUNT, small groups suppressed.
    Release,
    /// Per-group bit "sum >= t", small groups suppressed.
    Predicate,
    /// Per-group SUM and COUNT with binomial noise of `coins` coins each.
    Noisy { coins: u32 },
    /// A committed subtotal of the evaluations, for a parent combine.
    Subtotal,
}

/// Everything that fixes the combine circuit's constraint system.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CombineShape {
    /// Input slots `K`.
    pub inputs: usize,
    /// The group slots the root opens totals over (none for a subtotal).
    pub domain: GroupDomain,
    /// Sums per group `M` (measures; 0 for COUNT alone, 1 for a predicate's condition;
    /// 0 for a subtotal).
    pub sums: usize,
    /// What it outputs.
    pub output: CombineOutput,
}

impl CombineShape {
    /// The inner combine of `inputs` slots: the same for every query.
    pub fn subtotal(inputs: usize) -> Self {
        Self {
            inputs,
            domain: GroupDomain::default(),
            sums: 0,
            output: CombineOutput::Subtotal,
        }
    }

    /// Group slots `G` of the totals.
    pub fn groups(&self) -> usize {
        self.domain.slots()
    }

    /// Checks the shape: at least one input, a valid domain, sums that fit the output,
    /// and nothing about groups in a subtotal.
    pub fn validate(&self) -> Result<(), CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidShape(msg));
        if self.inputs == 0 {
            return bad("a combine needs at least one input".into());
        }
        self.domain.validate()?;
        check_sums(self)?;
        if self.output == CombineOutput::Subtotal && *self != Self::subtotal(self.inputs) {
            return bad("a subtotal has no groups and no sums".into());
        }
        Ok(())
    }

    /// The canonical text of the shape: what keys are filed and pinned under, and what
    /// [`CombineShape::digest`] hashes.
    pub fn description(&self) -> String {
        let output = match self.output {
            CombineOutput::Release => "release".to_string(),
            CombineOutput::Predicate => "predicate".to_string(),
            CombineOutput::Noisy { coins } => format!("noisy coins={coins}"),
            CombineOutput::Subtotal => {
                return format!("combine/v4 inputs={} output=subtotal", self.inputs)
            }
        };
        format!(
            "combine/v4 inputs={} groups={} sums={} output={output}",
            self.inputs,
            self.domain.description(),
            self.sums
        )
    }

    /// The shape's digest, the circuit's first public input.
    pub fn digest(&self) -> Fr {
        snark::shape_digest(&self.description())
    }
}

/// A committed evaluation and its blind: what the prover opens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Opening {
    /// The opened evaluation (a chunk's share, or a subtotal).
    pub evaluation: Fr,
    /// Its blinding factor.
    pub blind: Fr,
}

/// What a combine closes with, besides its inputs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Closing {
    /// An inner combine: the blind of the subtotal it outputs.
    Subtotal { blind: Fr },
    /// The root: the query's totals, their blind, and the challenge they are evaluated at.
    Root {
        totals: Partial,
        blind: Fr,
        challenge: Fr,
    },
}

/// The root's statement about the totals: the challenge and the totals' commitment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TotalsClaim {
    /// The query's challenge `r` ([`challenge`]).
    pub challenge: Fr,
    /// [`Partial::commit`] of the totals.
    pub commitment: Fr,
}

/// The query's challenge `r`: the hash of the chunk shape's digest, the root shape's
/// digest, the chunk proofs' public parameters, the totals' commitment and every chunk
/// commitment the answer covers, in manifest order. The node computes it after
/// committing to the totals and before proving any chunk; a verifier recomputes it. So
/// the totals and the rows are fixed before `r` is known, and each is bound by `r`.
pub fn challenge(
    chunk_shape: &AggregateShape,
    query: &AggregateQuery,
    root: &CombineShape,
    totals_commitment: Fr,
    chunk_commitments: &[Fr],
) -> Fr {
    let mut inputs = vec![Fr::from(CHALLENGE_TAG), chunk_shape.digest(), root.digest()];
    inputs.extend(query.public_parameters(chunk_shape));
    inputs.push(totals_commitment);
    inputs.extend(chunk_commitments);
    poseidon::chain(&inputs)
}

/// Public parameters of a combine.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CombineParams {
    /// Groups of fewer selected rows are suppressed (Release and Predicate).
    pub min_group_size: u64,
    /// The predicate holds for a group whose sum is at least this (Predicate).
    pub threshold: u64,
    /// What the noise is drawn from and how it is scaled (Noisy).
    pub noise: Option<NoiseParams>,
}

/// The public parameters of noisy release, and the seed (with the secret) of its noise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoiseParams {
    /// Secret, query hash and nonce.
    pub seed: NoiseSeed,
    /// The count's step: a count is released as `count / step` plus noise.
    pub count_step: u64,
    /// Each sum's step, below 2^96, one per measure.
    pub sum_steps: Vec<u128>,
    /// A group whose noisy count (in steps, noise included) is below this is suppressed.
    pub threshold: u64,
}

/// One group of a noisy answer, in steps: `value / step + heads`, where the heads of
/// `n` fair coins have mean `n / 2`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupNoisy {
    /// The noisy count fell below the threshold.
    Suppressed,
    /// The noisy COUNT and SUMs, in steps.
    Released { count: u64, sums: Vec<u128> },
}

impl GroupNoisy {
    /// The noisy count and sums, unless the group is suppressed.
    pub fn shown(&self) -> Option<(u64, &[u128])> {
        match self {
            Self::Suppressed => None,
            Self::Released { count, sums } => Some((*count, sums.as_slice())),
        }
    }
}

/// One group of a released answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupRelease {
    /// Fewer than `k` rows: nothing is said about the group.
    Suppressed,
    /// The group's COUNT and SUMs.
    Released { count: u64, sums: Vec<u128> },
}

impl GroupRelease {
    /// The count and sums, unless the group is suppressed.
    pub fn shown(&self) -> Option<(u64, &[u128])> {
        match self {
            Self::Suppressed => None,
            Self::Released { count, sums } => Some((*count, sums.as_slice())),
        }
    }
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
    /// Noisy sums and counts.
    Noisy {
        /// The commitment to the noise secret, as the manifest published it.
        secret_commitment: Fr,
        /// The canonical query's hash.
        query: Fr,
        /// The researcher's nonce.
        nonce: Fr,
        /// Steps and threshold (the seed's secret is not part of the statement).
        count_step: u64,
        sum_steps: Vec<u128>,
        threshold: u64,
        groups: Vec<GroupNoisy>,
    },
    /// Commitment to the totals.
    Subtotal { commitment: Fr },
}

/// The public statement of one combine proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CombineInstance {
    /// `K` evaluation commitments, unused slots padded.
    pub input_commitments: Vec<Fr>,
    /// The root's claim about the totals (`None` for a subtotal).
    pub totals: Option<TotalsClaim>,
    /// The output.
    pub result: CombineResult,
}

impl CombineInstance {
    /// The public-input vector a verifier checks a combine proof against, in the order
    /// the module documentation gives, after checking the statement fits `shape`.
    pub fn public_inputs(&self, shape: &CombineShape) -> Result<Vec<Fr>, CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidQuery(msg));
        shape.validate()?;
        if self.input_commitments.len() != shape.inputs {
            return bad(format!(
                "{} input commitments for {} slots",
                self.input_commitments.len(),
                shape.inputs
            ));
        }
        if self.totals.is_some() == (shape.output == CombineOutput::Subtotal) {
            return bad("the root, and only the root, opens the totals".into());
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
            (CombineResult::Noisy { groups, .. }, CombineOutput::Noisy { .. }) => (1, groups.len()),
            (CombineResult::Subtotal { .. }, CombineOutput::Subtotal) => (0, shape.groups()),
            _ => {
                return bad(format!(
                    "result is not of the shape's kind {:?}",
                    shape.output
                ))
            }
        };
        if groups != shape.groups() {
            return bad(format!("{groups} groups for a shape of {}", shape.groups()));
        }
        check_min_group_size(k, shape.output)?;
        let shown: Vec<Option<(u64, &[u128])>> = match &self.result {
            CombineResult::Release { groups, .. } => {
                groups.iter().map(GroupRelease::shown).collect()
            }
            CombineResult::Noisy { groups, .. } => groups.iter().map(GroupNoisy::shown).collect(),
            _ => Vec::new(),
        };
        if let Some(n) = shown
            .iter()
            .flatten()
            .map(|(_, sums)| sums.len())
            .find(|n| *n != shape.sums)
        {
            return bad(format!(
                "a group with {n} sums for a shape of {}",
                shape.sums
            ));
        }
        if let CombineResult::Noisy {
            count_step,
            sum_steps,
            threshold,
            ..
        } = &self.result
        {
            check_noise(shape, *count_step, sum_steps, *threshold)?;
        }
        Ok(self.assemble(shape))
    }

    /// The public-input vector, unchecked (the circuit allocates exactly this).
    fn assemble(&self, shape: &CombineShape) -> Vec<Fr> {
        let mut out = vec![shape.digest()];
        out.extend(&self.input_commitments);
        if let Some(claim) = &self.totals {
            out.extend([claim.challenge, claim.commitment]);
        }
        let flag = |b: bool| Fr::from(u8::from(b));
        match &self.result {
            CombineResult::Release {
                min_group_size,
                groups,
            } => {
                out.push(Fr::from(*min_group_size));
                for g in groups {
                    out.extend(released(g.shown(), shape.sums));
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
            CombineResult::Noisy {
                secret_commitment,
                query,
                nonce,
                count_step,
                sum_steps,
                threshold,
                groups,
            } => {
                out.extend([*secret_commitment, *query, *nonce, Fr::from(*count_step)]);
                out.extend(sum_steps.iter().map(|&s| Fr::from(s)));
                out.push(Fr::from(*threshold));
                for g in groups {
                    out.extend(released(g.shown(), shape.sums));
                }
            }
            CombineResult::Subtotal { commitment } => out.push(*commitment),
        }
        out
    }
}

/// A released group's public inputs: `(suppressed, count, sums...)`, zeros when
/// suppressed.
fn released(group: Option<(u64, &[u128])>, sums: usize) -> Vec<Fr> {
    match group {
        None => [Fr::from(1u8)]
            .into_iter()
            .chain(std::iter::repeat_n(Fr::zero(), 1 + sums))
            .collect(),
        Some((count, values)) => [Fr::zero(), Fr::from(count)]
            .into_iter()
            .chain(values.iter().map(|&s| Fr::from(s)))
            .collect(),
    }
}

/// A shape's sums fit its output: a predicate counts one condition, release and noise
/// handle at most [`MAX_MEASURES`].
fn check_sums(shape: &CombineShape) -> Result<(), CircuitError> {
    let fits = match shape.output {
        CombineOutput::Predicate => shape.sums == 1,
        _ => shape.sums <= MAX_MEASURES,
    };
    match fits {
        true => Ok(()),
        false => Err(CircuitError::InvalidShape(format!(
            "{} sums for a {:?} combine",
            shape.sums, shape.output
        ))),
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

/// Steps are at least 1 and fit [`STEP_BITS`], the threshold fits [`NOISY_COUNT_BITS`],
/// and a value draws at most [`MAX_COINS`] coins.
fn check_noise(
    shape: &CombineShape,
    count_step: u64,
    sum_steps: &[u128],
    threshold: u64,
) -> Result<(), CircuitError> {
    let bad = |msg: String| Err(CircuitError::InvalidQuery(msg));
    if sum_steps.len() != shape.sums {
        return bad(format!(
            "{} sum steps for {} sums",
            sum_steps.len(),
            shape.sums
        ));
    }
    if let CombineOutput::Noisy { coins } = shape.output {
        if coins == 0 || coins > MAX_COINS {
            return bad(format!(
                "{coins} coins: a noisy value draws 1..={MAX_COINS}"
            ));
        }
    }
    if let Some(step) = std::iter::once(u128::from(count_step))
        .chain(sum_steps.iter().copied())
        .find(|&s| s == 0 || s >> STEP_BITS != 0)
    {
        return bad(format!(
            "step {step}: a step is at least 1 and below 2^{STEP_BITS}"
        ));
    }
    if threshold >> NOISY_COUNT_BITS != 0 {
        return bad(format!(
            "threshold {threshold} exceeds {NOISY_COUNT_BITS} bits"
        ));
    }
    Ok(())
}

/// Commitment of an unused input slot: the zero evaluation under a zero blind. Anyone
/// can open it, and it opens only to zero.
pub fn empty_slot_commitment() -> Fr {
    evaluation::commit(Fr::zero(), Fr::zero())
}

/// Native twin: the sum of the `openings`' evaluations and what the combine outputs: for
/// a subtotal its commitment; for the root what it releases about the totals, after
/// checking that their evaluation at the challenge is that sum.
pub fn evaluate(
    shape: &CombineShape,
    params: &CombineParams,
    openings: &[Opening],
    closing: &Closing,
) -> Result<(Fr, CombineResult), CircuitError> {
    let bad = |msg: String| Err(CircuitError::InvalidWitness(msg));
    shape.validate()?;
    if openings.len() > shape.inputs {
        return bad(format!(
            "{} inputs for {} slots",
            openings.len(),
            shape.inputs
        ));
    }
    let sum: Fr = openings.iter().map(|o| o.evaluation).sum();
    let total = match (closing, shape.output) {
        (Closing::Subtotal { blind }, CombineOutput::Subtotal) => {
            return Ok((
                sum,
                CombineResult::Subtotal {
                    commitment: evaluation::commit(sum, *blind),
                },
            ))
        }
        (Closing::Root { .. }, CombineOutput::Subtotal) | (Closing::Subtotal { .. }, _) => {
            return bad("the root, and only the root, opens the totals".into())
        }
        (
            Closing::Root {
                totals, challenge, ..
            },
            _,
        ) => {
            if totals.counts.len() != shape.groups()
                || totals.sums.len() != shape.sums
                || totals.sums.iter().any(|s| s.len() != shape.groups())
            {
                return bad(format!(
                    "totals do not have {} groups of {} sums",
                    shape.groups(),
                    shape.sums
                ));
            }
            if totals.evaluate(&shape.domain, *challenge) != sum {
                return bad("the totals' evaluation is not the sum of the chunks' shares".into());
            }
            totals
        }
    };
    check_min_group_size(params.min_group_size, shape.output)?;
    if let Some(c) = total.counts.iter().find(|c| *c >> COUNT_BITS != 0) {
        return bad(format!("count {c} exceeds {COUNT_BITS} bits"));
    }
    let k = params.min_group_size;
    let sums_of = |g: usize| total.sums.iter().map(|s| s[g]).collect::<Vec<_>>();
    let result = match shape.output {
        CombineOutput::Release => CombineResult::Release {
            min_group_size: k,
            groups: (0..shape.groups())
                .map(|g| match total.counts[g] >= k {
                    true => GroupRelease::Released {
                        count: total.counts[g],
                        sums: sums_of(g),
                    },
                    false => GroupRelease::Suppressed,
                })
                .collect(),
        },
        CombineOutput::Predicate => {
            if let Some(s) = total.sums[0].iter().find(|s| *s >> PREDICATE_BITS != 0) {
                return bad(format!("predicate sum {s} exceeds {PREDICATE_BITS} bits"));
            }
            CombineResult::Predicate {
                min_group_size: k,
                threshold: params.threshold,
                groups: (0..shape.groups())
                    .map(|g| match total.counts[g] >= k {
                        true => {
                            GroupAnswer::Holds(total.sums[0][g] >= u128::from(params.threshold))
                        }
                        false => GroupAnswer::Suppressed,
                    })
                    .collect(),
            }
        }
        CombineOutput::Noisy { coins } => {
            let Some(noise_params) = &params.noise else {
                return Err(CircuitError::InvalidQuery(
                    "a noisy combine needs noise parameters".into(),
                ));
            };
            let NoiseParams {
                seed,
                count_step,
                sum_steps,
                threshold,
            } = noise_params;
            check_noise(shape, *count_step, sum_steps, *threshold)?;
            CombineResult::Noisy {
                secret_commitment: secret_commitment(seed.secret),
                query: seed.query,
                nonce: seed.nonce,
                count_step: *count_step,
                sum_steps: sum_steps.clone(),
                threshold: *threshold,
                groups: (0..shape.groups())
                    .map(|g| {
                        let heads =
                            |value: usize| noise(seed, noise_position(shape, g, value), coins);
                        let count = total.counts[g] / count_step + u64::from(heads(0));
                        let sums = sum_steps
                            .iter()
                            .enumerate()
                            .map(|(m, step)| total.sums[m][g] / step + u128::from(heads(1 + m)))
                            .collect();
                        match count >= *threshold {
                            true => GroupNoisy::Released { count, sums },
                            false => GroupNoisy::Suppressed,
                        }
                    })
                    .collect(),
            }
        }
        CombineOutput::Subtotal => unreachable!("a subtotal returned above"),
    };
    Ok((sum, result))
}

/// The position of a group's noisy value (0: the count, 1 + m: measure m's sum), which
/// keys its coins: `(M + 1) g + value`.
fn noise_position(shape: &CombineShape, group: usize, value: usize) -> u64 {
    ((shape.sums + 1) * group + value) as u64
}

/// One combine proof's statement and witness.
#[derive(Clone, Debug)]
pub struct CombineCircuit {
    /// The circuit's shape.
    pub shape: CombineShape,
    /// The public statement.
    pub instance: CombineInstance,
    /// `K` openings, unused slots padded with the zero evaluation.
    pub openings: Vec<Opening>,
    /// The subtotal's blind, or the root's totals.
    pub closing: Closing,
    /// The sum of the openings' evaluations: what a subtotal's commitment opens to.
    pub sum: Fr,
    /// The noise secret (Noisy; zero otherwise).
    pub noise_secret: Fr,
}

impl CombineCircuit {
    /// An honest circuit over `openings` (at most `K`), padded to `K` slots.
    pub fn new(
        shape: CombineShape,
        params: CombineParams,
        mut openings: Vec<Opening>,
        closing: Closing,
    ) -> Result<Self, CircuitError> {
        let (sum, result) = evaluate(&shape, &params, &openings, &closing)?;
        openings.resize(
            shape.inputs,
            Opening {
                evaluation: Fr::zero(),
                blind: Fr::zero(),
            },
        );
        let input_commitments = openings
            .iter()
            .map(|o| evaluation::commit(o.evaluation, o.blind))
            .collect();
        let totals = match &closing {
            Closing::Subtotal { .. } => None,
            Closing::Root {
                totals,
                blind,
                challenge,
            } => Some(TotalsClaim {
                challenge: *challenge,
                commitment: totals.commit(*blind),
            }),
        };
        Ok(Self {
            shape,
            instance: CombineInstance {
                input_commitments,
                totals,
                result,
            },
            openings,
            closing,
            sum,
            noise_secret: params.noise.map_or(Fr::zero(), |n| n.seed.secret),
        })
    }
}

impl snark::Circuit for CombineCircuit {
    type Shape = CombineShape;

    fn blank(shape: &CombineShape) -> Result<Self, CircuitError> {
        let params = CombineParams {
            min_group_size: 1,
            threshold: 0,
            noise: Some(NoiseParams {
                seed: NoiseSeed {
                    secret: Fr::zero(),
                    query: Fr::zero(),
                    nonce: Fr::zero(),
                },
                count_step: 1,
                sum_steps: vec![1; shape.sums],
                threshold: 0,
            }),
        };
        let closing = match shape.output {
            CombineOutput::Subtotal => Closing::Subtotal { blind: Fr::zero() },
            _ => Closing::Root {
                totals: Partial::zero(shape.groups(), shape.sums),
                blind: Fr::zero(),
                challenge: Fr::zero(),
            },
        };
        Self::new(shape.clone(), params, Vec::new(), closing)
    }

    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        self.instance.public_inputs(&self.shape)
    }
}

impl ConstraintSynthesizer<Fr> for CombineCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let Self {
            shape,
            instance,
            openings,
            closing,
            sum: _,
            noise_secret,
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

        // Open every slot and add the evaluations up.
        let mut sum = FpVar::zero();
        for (opening, commitment) in openings.iter().zip(commitments) {
            let evaluation = witness(opening.evaluation)?;
            evaluation::commit_gadget(&evaluation, &witness(opening.blind)?)?
                .enforce_equal(commitment)?;
            sum += evaluation;
        }
        let (total, blind, outputs) = match closing {
            Closing::Subtotal { blind } => {
                return evaluation::commit_gadget(&sum, &witness(blind)?)?
                    .enforce_equal(&outputs[0]);
            }
            Closing::Root { totals, blind, .. } => (totals, blind, outputs),
        };
        let (claim, outputs) = outputs.split_at(2);
        let (challenge, totals_commitment) = (&claim[0], &claim[1]);

        // Open the totals: the commitment the challenge was drawn after.
        let sums = total
            .sums
            .iter()
            .map(|measure| measure.iter().map(|&s| witness(Fr::from(s))).collect())
            .collect::<Result<Vec<Vec<_>>, _>>()?;
        let counts = total
            .counts
            .iter()
            .map(|&c| witness(Fr::from(c)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut preimage = vec![FpVar::constant(Fr::from(PARTIAL_TAG)), witness(blind)?];
        preimage.extend(sums.iter().flatten().cloned());
        preimage.extend(counts.iter().cloned());
        chain(&preimage)?.enforce_equal(totals_commitment)?;

        // Their evaluation at the challenge is what the chunks' shares add up to.
        let squares = squares(challenge, shape.domain.key_width())?;
        let s_powers = powers_of(&squares[shape.domain.key_width() as usize], shape.sums);
        let powers = slot_powers(&shape.domain, &squares)?;
        let mut evaluation = FpVar::zero();
        for (g, power) in powers.iter().enumerate() {
            let group_sums: Vec<FpVar<Fr>> = sums.iter().map(|m| m[g].clone()).collect();
            evaluation += power * combine_values(&counts[g], &group_sums, &s_powers);
        }
        evaluation.enforce_equal(&sum)?;

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
        // A group's released values: its count and sums when shown, zeros when not, and
        // the suppressed flag.
        let release = |released: &[FpVar<Fr>],
                       shown: &Boolean<Fr>,
                       values: Vec<FpVar<Fr>>|
         -> Result<(), SynthesisError> {
            FpVar::from(!shown).enforce_equal(&released[0])?;
            let shown = FpVar::from(shown.clone());
            for (value, out) in values.iter().zip(&released[1..]) {
                (value * &shown).enforce_equal(out)?;
            }
            Ok(())
        };
        let width = 2 + shape.sums;
        match shape.output {
            CombineOutput::Release => {
                let large = large_enough(&outputs[0])?;
                for (g, released) in outputs[1..].chunks(width).enumerate() {
                    let mut values = vec![counts[g].clone()];
                    values.extend(sums.iter().map(|s| s[g].clone()));
                    release(released, &large[g], values)?;
                }
            }
            CombineOutput::Predicate => {
                let large = large_enough(&outputs[0])?;
                let threshold = &outputs[1];
                to_bits(threshold, PREDICATE_BITS)?;
                for (g, answer) in outputs[2..].chunks(2).enumerate() {
                    to_bits(&sums[0][g], PREDICATE_BITS)?;
                    let holds = is_ge(&sums[0][g], threshold, PREDICATE_BITS)?;
                    FpVar::from(!&large[g]).enforce_equal(&answer[0])?;
                    FpVar::from(&holds & &large[g]).enforce_equal(&answer[1])?;
                }
            }
            CombineOutput::Noisy { coins } => {
                let (parameters, groups) = outputs.split_at(5 + shape.sums);
                let [commitment, query, nonce, count_step] = &parameters[..4] else {
                    unreachable!("a noisy statement starts with four parameters")
                };
                let sum_steps = &parameters[4..4 + shape.sums];
                let threshold = &parameters[4 + shape.sums];
                let secret = witness(noise_secret)?;
                open_secret(&secret, commitment)?;
                for step in std::iter::once(count_step).chain(sum_steps) {
                    to_bits(step, STEP_BITS)?;
                    to_bits(&(step - Fr::from(1u8)), STEP_BITS)?;
                }
                to_bits(threshold, NOISY_COUNT_BITS)?;
                let (native_count_step, native_sum_steps) = step_values(&instance.result);
                for (g, released) in groups.chunks(width).enumerate() {
                    to_bits(&counts[g], COUNT_BITS)?;
                    let heads = |value: usize| {
                        noise_gadget(
                            &secret,
                            query,
                            nonce,
                            noise_position(&shape, g, value),
                            coins,
                        )
                    };
                    let count = quotient(
                        &counts[g],
                        u128::from(total.counts[g]),
                        count_step,
                        native_count_step,
                    )? + heads(0)?;
                    let mut values = vec![count.clone()];
                    for m in 0..shape.sums {
                        let native_step = native_sum_steps.get(m).copied().unwrap_or(1);
                        values.push(
                            quotient(&sums[m][g], total.sums[m][g], &sum_steps[m], native_step)?
                                + heads(1 + m)?,
                        );
                    }
                    let large = is_ge(&count, threshold, NOISY_COUNT_BITS)?;
                    release(released, &large, values)?;
                }
            }
            CombineOutput::Subtotal => unreachable!("a subtotal returned above"),
        }
        Ok(())
    }
}

/// The count step and sum steps of a noisy result (1 and none otherwise), for witness
/// values.
fn step_values(result: &CombineResult) -> (u128, Vec<u128>) {
    match result {
        CombineResult::Noisy {
            count_step,
            sum_steps,
            ..
        } => (
            u128::from(*count_step).max(1),
            sum_steps.iter().map(|s| (*s).max(1)).collect(),
        ),
        _ => (1, Vec::new()),
    }
}

/// `value / step`, rounded down, as a witness the constraints pin: `value = step * q + r`
/// with `q < 2^128` and `0 <= r < step` (so `r` and `step - 1 - r` fit [`STEP_BITS`]).
/// `step` is already known to lie in `[1, 2^96)`, so nothing wraps the field.
fn quotient(
    value: &FpVar<Fr>,
    native: u128,
    step: &FpVar<Fr>,
    native_step: u128,
) -> Result<FpVar<Fr>, SynthesisError> {
    let cs = value.cs().or(step.cs());
    let q = FpVar::new_witness(cs.clone(), || Ok(Fr::from(native / native_step)))?;
    let r = FpVar::new_witness(cs, || Ok(Fr::from(native % native_step)))?;
    to_bits(&q, QUOTIENT_BITS)?;
    to_bits(&r, STEP_BITS)?;
    to_bits(&(step - Fr::from(1u8) - &r), STEP_BITS)?;
    (&q * step + &r).enforce_equal(value)?;
    Ok(q)
}
