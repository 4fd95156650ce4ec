//! Poseidon inside a constraint system: exactly three constraints per S-box.
//!
//! The permutation is written at the level of linear combinations: round constants and the
//! MDS matrix are free, and only S-box outputs become witness variables. Linear
//! combinations are built only when the constraint system records constraints (setup, or
//! a satisfiability check); when proving from cached matrices the gadget computes values
//! natively and allocates nothing else.

use ark_ff::Field;
use ark_r1cs_std::{
    fields::fp::{AllocatedFp, FpVar},
    GR1CSVar,
};
use ark_relations::gr1cs::{ConstraintSystemRef, LinearCombination, SynthesisError, Variable};

use super::{chain_blocks, params::params, MAX_INPUTS};
use crate::Fr;

/// circomlib's `Poseidon(n)` of `inputs` (n = 1..=16), as a gadget; equals
/// [`super::hash`] on the assigned values.
pub fn hash(inputs: &[FpVar<Fr>]) -> Result<FpVar<Fr>, SynthesisError> {
    assert!(
        (1..=MAX_INPUTS).contains(&inputs.len()),
        "Poseidon takes 1..={MAX_INPUTS} inputs, got {}",
        inputs.len()
    );
    let cs = inputs.cs();
    if cs.is_none() {
        // Every input is a constant: so is the digest.
        let values: Vec<Fr> = inputs.iter().map(|x| x.value()).collect::<Result<_, _>>()?;
        return Ok(FpVar::Constant(super::hash(&values)));
    }
    let record = cs.should_construct_matrices();
    let mut state = Vec::with_capacity(inputs.len() + 1);
    state.push(Cell::constant(Fr::from(0u8)));
    state.extend(inputs.iter().map(Cell::from_var));
    permute(&cs, &mut state, record)?;
    let out = state.swap_remove(0);
    let variable = cs.new_lc(|| out.lc)?;
    Ok(FpVar::Var(AllocatedFp::new(out.value, variable, cs)))
}

/// The chained digest of any number of inputs; equals [`super::chain`].
pub fn chain(inputs: &[FpVar<Fr>]) -> Result<FpVar<Fr>, SynthesisError> {
    let mut blocks = chain_blocks(inputs.len()).into_iter();
    let first = blocks.next().expect("a chain has at least one block");
    let mut digest = hash(&inputs[first])?;
    for range in blocks {
        let mut block = Vec::with_capacity(MAX_INPUTS);
        block.push(digest);
        block.extend_from_slice(&inputs[range]);
        digest = hash(&block)?;
    }
    Ok(digest)
}

/// One cell of the permutation state: a linear combination over the constraint system's
/// variables (kept only while recording constraints) and its value (known only when the
/// system has an assignment).
struct Cell {
    lc: LinearCombination<Fr>,
    value: Option<Fr>,
}

impl Cell {
    fn constant(c: Fr) -> Self {
        Self {
            lc: LinearCombination::from((c, Variable::One)),
            value: Some(c),
        }
    }

    fn from_var(x: &FpVar<Fr>) -> Self {
        match x {
            FpVar::Constant(c) => Self::constant(*c),
            FpVar::Var(v) => Self {
                lc: LinearCombination::from(v.variable),
                value: v.value().ok(),
            },
        }
    }
}

fn permute(
    cs: &ConstraintSystemRef<Fr>,
    state: &mut [Cell],
    record: bool,
) -> Result<(), SynthesisError> {
    let width = state.len();
    let p = params(width);
    for round in 0..p.rounds() {
        for (cell, constant) in state.iter_mut().zip(&p.ark[round]) {
            cell.value = cell.value.map(|v| v + constant);
            if record {
                cell.lc += (*constant, Variable::One);
            }
        }
        let sboxed = if p.is_full_round(round) { width } else { 1 };
        for cell in &mut state[..sboxed] {
            *cell = sbox(cs, cell)?;
        }
        let values: Option<Vec<Fr>> = state.iter().map(|c| c.value).collect();
        let mixed_values = values.map(|v| {
            p.mds
                .iter()
                .map(|row| row.iter().zip(&v).map(|(m, x)| *m * x).sum::<Fr>())
                .collect::<Vec<_>>()
        });
        let mixed_lcs: Vec<LinearCombination<Fr>> = if record {
            p.mds
                .iter()
                .map(|row| {
                    let mut lc = LinearCombination::zero();
                    for (m, cell) in row.iter().zip(state.iter()) {
                        lc = lc + (*m, &cell.lc);
                    }
                    lc.compactify();
                    lc
                })
                .collect()
        } else {
            (0..width).map(|_| LinearCombination::zero()).collect()
        };
        for (i, (cell, lc)) in state.iter_mut().zip(mixed_lcs).enumerate() {
            cell.lc = lc;
            cell.value = mixed_values.as_ref().map(|v| v[i]);
        }
    }
    Ok(())
}

/// x^5 with three constraints: x·x = x2, x2·x2 = x4, x4·x = x5.
fn sbox(cs: &ConstraintSystemRef<Fr>, x: &Cell) -> Result<Cell, SynthesisError> {
    let value = x.value;
    let power = |e: u64| {
        value
            .map(|v| v.pow([e]))
            .ok_or(SynthesisError::AssignmentMissing)
    };
    let x2 = cs.new_witness_variable(|| power(2))?;
    let x4 = cs.new_witness_variable(|| power(4))?;
    let x5 = cs.new_witness_variable(|| power(5))?;
    cs.enforce_r1cs_constraint(|| x.lc.clone(), || x.lc.clone(), || x2.into())?;
    cs.enforce_r1cs_constraint(|| x2.into(), || x2.into(), || x4.into())?;
    cs.enforce_r1cs_constraint(|| x4.into(), || x.lc.clone(), || x5.into())?;
    Ok(Cell {
        lc: x5.into(),
        value: value.map(|v| v.square().square() * v),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_r1cs_std::alloc::AllocVar;
    use ark_relations::gr1cs::ConstraintSystem;

    #[test]
    fn gadget_matches_native_hash_and_chain_with_three_constraints_per_sbox() {
        for len in [1usize, 2, 5, 16, 17, 40] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            let inputs: Vec<Fr> = (0..len as u64).map(|i| Fr::from(i * 7 + 3)).collect();
            let vars: Vec<FpVar<Fr>> = inputs
                .iter()
                .map(|x| FpVar::new_witness(cs.clone(), || Ok(*x)).unwrap())
                .collect();
            let digest = chain(&vars).unwrap();
            assert_eq!(digest.value().unwrap(), super::super::chain(&inputs));
            assert!(cs.is_satisfied().unwrap());
            let expected: usize = chain_blocks(len)
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    super::super::permutation_constraints(r.len() + 1 + usize::from(i > 0))
                })
                .sum();
            assert_eq!(cs.num_constraints(), expected, "len {len}");
        }
    }

    #[test]
    fn gadget_rejects_a_wrong_digest() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let x = FpVar::new_witness(cs.clone(), || Ok(Fr::from(5u8))).unwrap();
        let claimed =
            FpVar::new_input(cs.clone(), || Ok(super::super::hash(&[Fr::from(6u8)]))).unwrap();
        use ark_r1cs_std::eq::EqGadget;
        hash(&[x]).unwrap().enforce_equal(&claimed).unwrap();
        assert!(!cs.is_satisfied().unwrap());
    }
}
