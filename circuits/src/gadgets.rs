//! Small gadgets the circuits are made of, each with its exact constraint cost.
//!
//! Comparisons never use `FpVar::enforce_cmp`/`is_cmp` (about 1.9k constraints each): a
//! value already known to lie below `2^w` is compared with `w + 2` constraints.

use ark_ff::{BigInteger, Field, PrimeField};
use ark_r1cs_std::{
    alloc::AllocVar,
    boolean::{AllocatedBool, Boolean},
    eq::EqGadget,
    fields::{fp::FpVar, FieldVar},
    GR1CSVar,
};
use ark_relations::gr1cs::{LinearCombination, SynthesisError, Variable};

use crate::Fr;

/// `2^exponent` as a field element.
pub fn pow2(exponent: u32) -> Fr {
    Fr::from(2u8).pow([u64::from(exponent)])
}

/// The linear combination an `FpVar` stands for.
pub fn lc_of(x: &FpVar<Fr>) -> LinearCombination<Fr> {
    match x {
        FpVar::Constant(c) => LinearCombination::from((*c, Variable::One)),
        FpVar::Var(v) => LinearCombination::from(v.variable),
    }
}

/// Allocates `width` witness bits (little-endian) of `value`, each boolean-constrained:
/// `width` constraints. The bits recompose to `value` only when `value < 2^width`; callers
/// tie the recomposition to something (a hash input, an equality).
pub fn witness_bits(
    cs: ark_relations::gr1cs::ConstraintSystemRef<Fr>,
    value: Option<Fr>,
    width: u32,
) -> Result<Vec<Boolean<Fr>>, SynthesisError> {
    let bits = value.map(|v| v.into_bigint().to_bits_le());
    (0..width as usize)
        .map(|i| {
            Boolean::new_witness(cs.clone(), || {
                bits.as_ref()
                    .map(|b| b[i])
                    .ok_or(SynthesisError::AssignmentMissing)
            })
        })
        .collect()
}

/// Range check: enforces `v < 2^width` and returns its bits, little-endian;
/// `width + 1` constraints.
pub fn to_bits(v: &FpVar<Fr>, width: u32) -> Result<Vec<Boolean<Fr>>, SynthesisError> {
    assert!(width < Fr::MODULUS_BIT_SIZE, "range checks are below 2^253");
    let cs = v.cs();
    if cs.is_none() {
        let value = v.value()?;
        if value.into_bigint().num_bits() > width {
            return Err(SynthesisError::Unsatisfiable);
        }
        let bits = value.into_bigint().to_bits_le();
        return Ok((0..width as usize)
            .map(|i| Boolean::constant(bits[i]))
            .collect());
    }
    let bits = witness_bits(cs, v.value().ok(), width)?;
    Boolean::le_bits_to_fp(&bits)?.enforce_equal(v)?;
    Ok(bits)
}

/// The bit `v >= bound`, for `v` and `bound` already known to lie below `2^width`:
/// the top bit of the `(width + 1)`-bit decomposition of `v - bound + 2^width`;
/// `width + 2` constraints.
pub fn is_ge(v: &FpVar<Fr>, bound: &FpVar<Fr>, width: u32) -> Result<Boolean<Fr>, SynthesisError> {
    let shifted = v - bound + FpVar::constant(pow2(width));
    let bits = to_bits(&shifted, width + 1)?;
    Ok(bits[width as usize].clone())
}

/// The bit `lo <= v <= hi`, all three already known to lie below `2^width`;
/// `2 * width + 5` constraints.
pub fn is_in_range(
    v: &FpVar<Fr>,
    lo: &FpVar<Fr>,
    hi: &FpVar<Fr>,
    width: u32,
) -> Result<Boolean<Fr>, SynthesisError> {
    Ok(&is_ge(v, lo, width)? & &is_ge(hi, v, width)?)
}

/// Enforces `lo <= v <= hi`, all three already known to lie below `2^width`:
/// `v - lo` and `hi - v` must both lie below `2^width`; `2 * width + 2` constraints.
pub fn enforce_in_range(
    v: &FpVar<Fr>,
    lo: &FpVar<Fr>,
    hi: &FpVar<Fr>,
    width: u32,
) -> Result<(), SynthesisError> {
    to_bits(&(v - lo), width)?;
    to_bits(&(hi - v), width)?;
    Ok(())
}

/// The bit `v ∈ list`: the product of `v - item` is zero exactly when some item equals
/// `v`; `list.len() + 1` constraints. Pad a list by repeating one of its items.
pub fn is_member(v: &FpVar<Fr>, list: &[FpVar<Fr>]) -> Result<Boolean<Fr>, SynthesisError> {
    let (first, rest) = list
        .split_first()
        .expect("an IN list has at least one item");
    let mut product = v - first;
    for item in rest {
        product *= v - item;
    }
    product.is_zero()
}

/// The bit `gate · [a == b]` for a boolean-valued `gate`, with two constraints:
/// `(a - b) · s = 0` and `(a - b) · inv = gate - s`. If `a == b` the second forces
/// `s = gate`; otherwise the first forces `s = 0`. Either way `s` is boolean.
pub fn gated_eq(
    a: &FpVar<Fr>,
    b: &FpVar<Fr>,
    gate: &FpVar<Fr>,
) -> Result<FpVar<Fr>, SynthesisError> {
    let cs = a.cs().or(b.cs()).or(gate.cs());
    if cs.is_none() {
        let equal = a.value()? == b.value()?;
        return Ok(FpVar::constant(if equal {
            gate.value()?
        } else {
            Fr::from(0u8)
        }));
    }
    let values =
        || -> Result<(Fr, Fr), SynthesisError> { Ok((a.value()? - b.value()?, gate.value()?)) };
    let s = AllocatedBool::new_witness_without_booleanity_check(cs.clone(), || {
        let (diff, gate) = values()?;
        Ok(diff == Fr::from(0u8) && gate == Fr::from(1u8))
    })?;
    let inv = cs.new_witness_variable(|| {
        let (diff, gate) = values()?;
        Ok(diff.inverse().map_or(Fr::from(0u8), |i| i * gate))
    })?;
    let diff = lc_of(a) - lc_of(b);
    let s_var = s.variable();
    cs.enforce_r1cs_constraint(|| diff.clone(), || s_var.into(), LinearCombination::zero)?;
    cs.enforce_r1cs_constraint(|| diff.clone(), || inv.into(), || lc_of(gate) - s_var)?;
    Ok(FpVar::from(Boolean::from(s)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_relations::gr1cs::{ConstraintSystem, ConstraintSystemRef, R1CS_PREDICATE_LABEL};

    /// A lying prover: whether the constraints still hold once the boolean witness
    /// behind `var` is replaced by its negation (evaluated from the matrices, since the
    /// constraint system caches linear-combination values).
    fn satisfied_with_flip(cs: &ConstraintSystemRef<Fr>, var: Variable) -> bool {
        assert!(
            cs.is_satisfied().unwrap(),
            "the honest assignment satisfies"
        );
        cs.finalize();
        let mut m = cs.to_matrices().unwrap();
        let [a, b, c]: [_; 3] = m.remove(R1CS_PREDICATE_LABEL).unwrap().try_into().unwrap();
        let inner = cs.borrow().unwrap();
        let mut z = [
            inner.instance_assignment().unwrap(),
            inner.witness_assignment().unwrap(),
        ]
        .concat();
        assert!(var.is_witness());
        let i = var
            .get_variable_index(inner.num_instance_variables)
            .unwrap();
        z[i] = Fr::from(1u8) - z[i];
        let eval = |row: &[(Fr, usize)]| row.iter().map(|(coeff, j)| *coeff * z[*j]).sum::<Fr>();
        (0..a.len()).all(|r| eval(&a[r]) * eval(&b[r]) == eval(&c[r]))
    }

    fn witness(cs: &ConstraintSystemRef<Fr>, v: u64) -> FpVar<Fr> {
        FpVar::new_witness(cs.clone(), || Ok(Fr::from(v))).unwrap()
    }

    #[test]
    fn range_check_edges_and_cost() {
        for (v, width, ok) in [
            (0u64, 8, true),
            (255, 8, true),
            (256, 8, false),
            (u64::MAX, 64, true),
        ] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            let _ = to_bits(&witness(&cs, v), width).unwrap();
            assert_eq!(cs.is_satisfied().unwrap(), ok, "{v} < 2^{width}");
            assert_eq!(cs.num_constraints(), width as usize + 1);
        }
        // 2^64 itself is out of a 64-bit range.
        let cs = ConstraintSystem::<Fr>::new_ref();
        let v = FpVar::new_witness(cs.clone(), || Ok(pow2(64))).unwrap();
        to_bits(&v, 64).unwrap();
        assert!(!cs.is_satisfied().unwrap());
    }

    #[test]
    fn comparisons_at_the_edges_of_the_width() {
        let width = 64;
        let max = u64::MAX;
        for (v, lo, hi) in [
            (0, 0, max),
            (max, 0, max),
            (5, 5, 5),
            (4, 5, 9),
            (10, 5, 9),
            (max, max, max),
            (max - 1, max, max),
        ] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            let bit = is_in_range(
                &witness(&cs, v),
                &witness(&cs, lo),
                &witness(&cs, hi),
                width,
            )
            .unwrap();
            assert_eq!(
                bit.value().unwrap(),
                lo <= v && v <= hi,
                "{lo} <= {v} <= {hi}"
            );
            assert!(cs.is_satisfied().unwrap());
            assert_eq!(cs.num_constraints(), 2 * width as usize + 5);

            let cs = ConstraintSystem::<Fr>::new_ref();
            enforce_in_range(
                &witness(&cs, v),
                &witness(&cs, lo),
                &witness(&cs, hi),
                width,
            )
            .unwrap();
            assert_eq!(cs.is_satisfied().unwrap(), lo <= v && v <= hi);
        }
    }

    #[test]
    fn a_lying_comparison_bit_is_unsatisfiable() {
        // Flip the top bit of the decomposition behind `is_ge`: the recomposition breaks.
        let cs = ConstraintSystem::<Fr>::new_ref();
        let bit = is_ge(&witness(&cs, 3), &witness(&cs, 7), 4).unwrap();
        assert!(!bit.value().unwrap());
        assert!(cs.is_satisfied().unwrap());
        let Boolean::Var(v) = bit else {
            panic!("allocated")
        };
        assert!(!satisfied_with_flip(&cs, v.variable()));
    }

    #[test]
    fn membership_and_gated_equality() {
        let cs = ConstraintSystem::<Fr>::new_ref();
        let list: Vec<_> = [3u64, 9, 12, 3].iter().map(|x| witness(&cs, *x)).collect();
        for (v, expected) in [(9u64, true), (4, false), (3, true)] {
            assert_eq!(
                is_member(&witness(&cs, v), &list).unwrap().value().unwrap(),
                expected
            );
        }
        for (a, b, gate) in [(4u64, 4u64, 1u64), (4, 4, 0), (4, 5, 1), (4, 5, 0)] {
            let s = gated_eq(&witness(&cs, a), &witness(&cs, b), &witness(&cs, gate)).unwrap();
            assert_eq!(s.value().unwrap(), Fr::from(u64::from(a == b && gate == 1)));
        }
        assert!(cs.is_satisfied().unwrap());
    }

    #[test]
    fn lying_membership_and_group_bits_are_unsatisfiable() {
        for v in [9u64, 4] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            let list: Vec<_> = [3u64, 9].iter().map(|x| witness(&cs, *x)).collect();
            let bit = is_member(&witness(&cs, v), &list).unwrap();
            assert!(cs.is_satisfied().unwrap());
            assert_eq!(bit.value().unwrap(), v == 9);
            // `is_zero` allocates the "product is not zero" bit, then its inverse hint.
            let not_zero_bit = Variable::witness(cs.num_witness_variables() - 2);
            assert!(
                !satisfied_with_flip(&cs, not_zero_bit),
                "member bit for {v} flipped"
            );
        }
        for (a, b, gate) in [(4u64, 4u64, 1u64), (4, 5, 1), (4, 4, 0)] {
            let cs = ConstraintSystem::<Fr>::new_ref();
            let s = gated_eq(&witness(&cs, a), &witness(&cs, b), &witness(&cs, gate)).unwrap();
            let FpVar::Var(s) = s else {
                panic!("allocated")
            };
            assert!(
                !satisfied_with_flip(&cs, s.variable),
                "group bit for {a}=={b} gate {gate} flipped"
            );
        }
    }
}
