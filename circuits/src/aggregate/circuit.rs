//! The chunk-aggregate constraint system.

use std::collections::{BTreeMap, BTreeSet};

use ark_ff::Zero;
use ark_r1cs_std::{
    alloc::AllocVar,
    boolean::Boolean,
    eq::EqGadget,
    fields::{fp::FpVar, FieldVar},
};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use super::{
    evaluate, share, Aggregand, AggregateInstance, AggregateQuery, AggregateShape, FilterParams,
    FilterShape, Grouping, Selection,
};
use crate::{
    commitment::{Chunk, Group, CHUNK_TAG, GROUP_TAG},
    evaluation::{self, combine_values, gated_power, powers_of, squares, Tallies},
    gadgets::{is_ge, is_in_range, is_member, to_bits, witness_bits},
    poseidon::gadget::chain,
    snark, CircuitError, Fr,
};

/// One chunk proof's statement and witness. [`AggregateCircuit::new`] builds an honest one
/// from the chunk and the query; [`AggregateCircuit::blank`] the placeholder that setup
/// synthesizes.
#[derive(Clone, Debug)]
pub struct AggregateCircuit {
    /// The circuit's shape.
    pub shape: AggregateShape,
    /// The public statement.
    pub instance: AggregateInstance,
    /// The committed rows and salts.
    pub chunk: Chunk,
    /// The evaluation's blinding factor.
    pub blind: Fr,
    /// The chunk's tallies by group key (the native twin's output).
    pub tallies: Tallies,
    /// The chunk's share of the evaluation at the challenge, which the statement commits
    /// to.
    pub share: Fr,
    /// Per row and per time bucket of the key (GROUP BY order), the row's bucket and its
    /// offset in it: the witness the bucket's division is checked with.
    pub buckets: Vec<Vec<(u64, u64)>>,
}

impl AggregateCircuit {
    /// An honest circuit: runs the native twin on `chunk` and commits to its share of
    /// the evaluation at `challenge` under `blind`.
    pub fn new(
        shape: AggregateShape,
        query: AggregateQuery,
        chunk: Chunk,
        challenge: Fr,
        blind: Fr,
    ) -> Result<Self, CircuitError> {
        let tallies = evaluate(&shape, &query, &chunk)?;
        let share = share(&shape, &tallies, challenge);
        let buckets = (0..shape.layout.capacity())
            .map(|row| {
                shape
                    .buckets()
                    .zip(&query.origins)
                    .map(|(b, &origin)| b.split(chunk.columns[b.column][row], origin))
                    .collect()
            })
            .collect();
        let instance = AggregateInstance {
            chunk_commitment: chunk.commitment(&shape.layout),
            chunk: chunk.id(&shape.layout),
            query,
            challenge,
            evaluation_commitment: evaluation::commit(share, blind),
        };
        Ok(Self {
            shape,
            instance,
            chunk,
            blind,
            tallies,
            share,
            buckets,
        })
    }
}

impl snark::Circuit for AggregateCircuit {
    type Shape = AggregateShape;

    fn blank(shape: &AggregateShape) -> Result<Self, CircuitError> {
        shape.validate()?;
        let shape = shape.clone();
        let layout = &shape.layout;
        let chunk = Chunk {
            dataset_id: 0,
            index: 0,
            columns: vec![vec![0; layout.capacity()]; layout.columns().len()],
            salts: vec![Fr::zero(); layout.groups().len()],
        };
        let query = AggregateQuery {
            purpose: 0,
            filters: shape
                .filters
                .iter()
                .map(|f| match f {
                    FilterShape::Range { .. } => FilterParams::Range { lo: 0, hi: 0 },
                    FilterShape::In { .. } => FilterParams::In(vec![0]),
                    FilterShape::Ranges { count, .. } => FilterParams::Ranges(vec![(0, 0); *count]),
                })
                .collect(),
            condition: matches!(shape.aggregand, Aggregand::CountWhere { .. }).then_some((0, 0)),
            clips: match &shape.aggregand {
                Aggregand::ClippedSum { columns } => vec![0; columns.len()],
                _ => Vec::new(),
            },
            origins: vec![0; shape.buckets().count()],
        };
        Self::new(shape, query, chunk, Fr::zero(), Fr::zero())
    }

    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        self.instance.public_inputs(&self.shape)
    }
}

/// A touched column's per-row values (linear combinations of their bits) and bits.
struct ColumnVars {
    values: Vec<FpVar<Fr>>,
    bits: Vec<Vec<Boolean<Fr>>>,
}

impl ConstraintSynthesizer<Fr> for AggregateCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let Self {
            shape,
            instance,
            chunk,
            blind,
            tallies: _,
            share: _,
            buckets,
        } = self;
        let layout = &shape.layout;
        let width = |c: usize| layout.width(c);
        let witness = |v: Fr| FpVar::new_witness(cs.clone(), || Ok(v));

        // Public inputs, in documented order.
        let inputs = instance
            .assemble(&shape)
            .into_iter()
            .map(|v| FpVar::new_input(cs.clone(), || Ok(v)))
            .collect::<Result<Vec<_>, _>>()?;
        let mut next = inputs.iter();
        let mut take = |n: usize| next.by_ref().take(n).cloned().collect::<Vec<_>>();
        let shape_digest = take(1).remove(0);
        let chunk_commitment = take(1).remove(0);
        let chunk_id = take(3);
        let purpose = match shape.selection {
            Selection::Purpose { .. } => take(1).pop(),
            Selection::ByPurpose { .. } | Selection::Present => None,
        };
        let filter_params: Vec<Vec<FpVar<Fr>>> = shape
            .filters
            .iter()
            .map(|f| match f {
                FilterShape::Range { .. } => take(2),
                FilterShape::In { len, .. } => take(*len),
                FilterShape::Ranges { count, .. } => take(2 * count),
            })
            .collect();
        let condition = match shape.aggregand {
            Aggregand::CountWhere { .. } => take(2),
            _ => Vec::new(),
        };
        let clips = match &shape.aggregand {
            Aggregand::ClippedSum { columns } => take(columns.len()),
            _ => Vec::new(),
        };
        let origins = take(shape.buckets().count());
        let challenge = take(1).remove(0);
        let evaluation_commitment = take(1).remove(0);

        // The statement is about this shape and no other.
        shape_digest.enforce_equal(&FpVar::constant(shape.digest()))?;

        // Public bounds lie below 2^width of their column, as comparisons require.
        for (f, params) in shape.filters.iter().zip(&filter_params) {
            if let FilterShape::Range { column } | FilterShape::Ranges { column, .. } = f {
                for bound in params {
                    to_bits(bound, width(*column))?;
                }
            }
        }
        if let Aggregand::CountWhere { column } = shape.aggregand {
            for bound in &condition {
                to_bits(bound, width(column))?;
            }
        }
        if let Aggregand::ClippedSum { columns } = &shape.aggregand {
            for (clip, &column) in clips.iter().zip(columns) {
                to_bits(clip, width(column))?;
            }
        }

        // The purpose as a one-hot vector over the consent bits; exactly one is set, so
        // the purpose names an existing bit.
        let purpose_onehot = match (&purpose, shape.selection) {
            (Some(purpose), Selection::Purpose { consent }) => {
                let onehot = (0..width(consent))
                    .map(|i| purpose.is_eq(&FpVar::constant(Fr::from(i))))
                    .collect::<Result<Vec<_>, _>>()?;
                onehot
                    .iter()
                    .map(|bit| FpVar::from(bit.clone()))
                    .sum::<FpVar<Fr>>()
                    .enforce_equal(&FpVar::constant(Fr::from(1u8)))?;
                onehot
            }
            _ => Vec::new(),
        };

        // Re-hash the touched groups from per-value bits: every value a query reads is
        // range-checked to its width, and every packed slot is unpacked uniquely.
        let mut touched: BTreeSet<usize> = [layout.present()].into();
        touched.extend(shape.selection.consent());
        touched.extend(shape.filters.iter().map(FilterShape::column));
        touched.extend(shape.group_by.iter().map(Grouping::column));
        touched.extend(shape.aggregand.columns());
        touched.extend(shape.weight);
        let touched_groups: BTreeSet<usize> = touched.iter().map(|&c| layout.group_of(c)).collect();
        let mut columns: BTreeMap<usize, ColumnVars> = BTreeMap::new();
        let mut digests = Vec::with_capacity(layout.groups().len());
        for (g, group) in layout.groups().iter().enumerate() {
            if !touched_groups.contains(&g) {
                digests.push(witness(chunk.group_digest(layout, g))?);
                continue;
            }
            let mut elements = Vec::new();
            let mut column_bits =
                |c: usize, row: usize| -> Result<Vec<Boolean<Fr>>, SynthesisError> {
                    let bits =
                        witness_bits(cs.clone(), Some(Fr::from(chunk.columns[c][row])), width(c))?;
                    if touched.contains(&c) {
                        let entry = columns.entry(c).or_insert_with(|| ColumnVars {
                            values: Vec::new(),
                            bits: Vec::new(),
                        });
                        entry.values.push(Boolean::le_bits_to_fp(&bits)?);
                        entry.bits.push(bits.clone());
                    }
                    Ok(bits)
                };
            let group_columns: Vec<usize> = match *group {
                Group::Wide(c) => vec![c],
                Group::Packed => (0..layout.columns().len())
                    .filter(|&c| layout.packed_offset(c).is_some())
                    .collect(),
            };
            for rows in layout.element_rows(g) {
                let mut bits = Vec::with_capacity(layout.row_bits(g) as usize * rows.len());
                for row in rows {
                    for &c in &group_columns {
                        bits.extend(column_bits(c, row)?);
                    }
                }
                elements.push(Boolean::le_bits_to_fp(&bits)?);
            }
            let mut preimage = vec![
                FpVar::constant(Fr::from(GROUP_TAG)),
                witness(chunk.salts[g])?,
            ];
            preimage.extend(elements);
            digests.push(chain(&preimage)?);
        }

        // The chunk commitment binds the public dataset id, index and number of present
        // rows (which the present flags must add up to), and every group digest.
        let present = &columns[&layout.present()];
        present
            .values
            .iter()
            .sum::<FpVar<Fr>>()
            .enforce_equal(&chunk_id[2])?;
        let mut preimage = vec![FpVar::constant(Fr::from(CHUNK_TAG))];
        preimage.extend(chunk_id);
        preimage.extend(digests);
        chain(&preimage)?.enforce_equal(&chunk_commitment)?;

        // Row by row: the selection gate, the row's monomial `gate · r^key` and its values
        // (count, then sums; per purpose for a row split by purpose), each value's
        // monomial multiple added up over the rows in its slot.
        let key_bits = shape.key_width() as usize;
        let squares = squares(&challenge, key_bits as u32)?;
        let mut slot_terms: Vec<Vec<FpVar<Fr>>> = vec![Vec::new(); shape.sums() + 1];
        for (row, splits) in buckets.iter().enumerate() {
            let consented: FpVar<Fr> = match shape.selection {
                Selection::Purpose { consent } => purpose_onehot
                    .iter()
                    .zip(&columns[&consent].bits[row])
                    .map(|(wanted, bit)| FpVar::from(wanted & bit))
                    .sum(),
                Selection::ByPurpose { .. } | Selection::Present => FpVar::one(),
            };
            let mut selected = present.bits[row][0].clone();
            for (f, params) in shape.filters.iter().zip(&filter_params) {
                let v = &columns[&f.column()].values[row];
                let passes = match f {
                    FilterShape::Range { column } => {
                        is_in_range(v, &params[0], &params[1], width(*column))?
                    }
                    FilterShape::In { .. } => is_member(v, params)?,
                    FilterShape::Ranges { column, .. } => Boolean::kary_or(
                        &params
                            .chunks(2)
                            .map(|b| is_in_range(v, &b[0], &b[1], width(*column)))
                            .collect::<Result<Vec<_>, _>>()?,
                    )?,
                };
                selected = &selected & &passes;
            }
            let gate = match shape.selection {
                Selection::Purpose { .. } => FpVar::from(selected) * consented,
                Selection::ByPurpose { .. } | Selection::Present => FpVar::from(selected),
            };
            // The key's bits, least significant first: the last part's code is the
            // lowest (as `AggregateShape::group_key` packs it).
            let mut parts = Vec::with_capacity(shape.group_by.len());
            let mut bucket = 0;
            for g in &shape.group_by {
                parts.push(match g {
                    Grouping::Column(c) => columns[c].bits[row].clone(),
                    Grouping::Bucket(b) => {
                        let (code, offset) = splits[bucket];
                        let time = &columns[&b.column].values[row];
                        let bits =
                            bucket_code(&cs, time, &origins[bucket], b, code, offset, &gate)?;
                        bucket += 1;
                        bits
                    }
                });
            }
            let bits: Vec<Boolean<Fr>> = parts.into_iter().rev().flatten().collect();
            let monomial = gated_power(&gate, &bits, &squares)?;
            let value = |c: usize| &columns[&c].values[row];
            let addends: Vec<FpVar<Fr>> = match &shape.aggregand {
                Aggregand::CountOnly => Vec::new(),
                Aggregand::Sum { columns } => columns.iter().map(|&c| value(c).clone()).collect(),
                Aggregand::CountWhere { column } => vec![FpVar::from(is_in_range(
                    value(*column),
                    &condition[0],
                    &condition[1],
                    width(*column),
                )?)],
                Aggregand::ClippedSum { columns } => columns
                    .iter()
                    .zip(&clips)
                    .map(|(&c, clip)| {
                        // min(v, clip): v less its excess over clip, when it has one.
                        let v = value(c);
                        let over = FpVar::from(!is_ge(clip, v, width(c))?);
                        Ok(v - over * (v - clip))
                    })
                    .collect::<Result<_, SynthesisError>>()?,
            };
            let mut terms: Vec<FpVar<Fr>> = addends.iter().map(|a| &monomial * a).collect();
            terms.insert(
                0,
                match shape.weight {
                    Some(w) => &monomial * value(w),
                    None => monomial,
                },
            );
            if let Selection::ByPurpose { consent } = shape.selection {
                // Once per consent bit, times the bit: one constraint a value and purpose.
                terms = columns[&consent].bits[row]
                    .iter()
                    .flat_map(|bit| terms.iter().map(move |t| t * FpVar::from(bit.clone())))
                    .collect();
            }
            for (slot, term) in slot_terms.iter_mut().zip(terms) {
                slot.push(term);
            }
        }

        // The share `count + s·sum_1 + ... + s^M·sum_M` (each a sum of monomials), with
        // `s = r^(2^key bits)`, committed under the blind.
        let mut slots = slot_terms.iter().map(|t| t.iter().sum::<FpVar<Fr>>());
        let count = slots.next().expect("a count slot");
        let sums: Vec<FpVar<Fr>> = slots.collect();
        let share = combine_values(&count, &sums, &powers_of(&squares[key_bits], sums.len()));
        evaluation::commit_gadget(&share, &witness(blind)?)?
            .enforce_equal(&evaluation_commitment)?;
        Ok(())
    }
}

/// The bits of a time bucket's code for one row: witnessed `code` (in `bucket.width`
/// bits) and `offset` (below `bucket.seconds`), with `time = origin + code · seconds +
/// offset` enforced when the row is selected (`gate` is 1), so that a selected row has
/// exactly one code. `width + 2·bits(seconds - 1) + 2` constraints.
fn bucket_code(
    cs: &ConstraintSystemRef<Fr>,
    time: &FpVar<Fr>,
    origin: &FpVar<Fr>,
    bucket: &super::TimeBucket,
    code: u64,
    offset: u64,
    gate: &FpVar<Fr>,
) -> Result<Vec<Boolean<Fr>>, SynthesisError> {
    let code_bits = witness_bits(cs.clone(), Some(Fr::from(code)), bucket.width)?;
    let largest = bucket.seconds - 1;
    let offset_width = u64::BITS - largest.leading_zeros();
    let offset_bits = witness_bits(cs.clone(), Some(Fr::from(offset)), offset_width)?;
    let offset = Boolean::le_bits_to_fp(&offset_bits)?;
    if !bucket.seconds.is_power_of_two() {
        // offset <= seconds - 1, beyond what its bits bound.
        to_bits(
            &(FpVar::constant(Fr::from(largest)) - &offset),
            offset_width,
        )?;
    }
    let split = origin
        + Boolean::le_bits_to_fp(&code_bits)? * FpVar::constant(Fr::from(bucket.seconds))
        + offset;
    gate.mul_equals(&(time - split), &FpVar::zero())?;
    Ok(code_bits)
}
