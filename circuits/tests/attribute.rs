//! Attribute-predicate circuit: "the committed age is at least 18" and its edges.

mod common;

use ark_ff::One;
use common::*;
use proptest::prelude::*;
use zkfabric_circuits::{
    attribute::{commit, holds, AttributeCircuit, AttributeShape},
    snark, Fr,
};

const AGE: AttributeShape = AttributeShape { width: 7 };

#[test]
fn adult_proof_verifies_reveals_only_the_bounds_and_binds_them() {
    let mut rng = rng(6);
    let pk = snark::setup::<AttributeCircuit, _>(&AGE, &mut rng).unwrap();
    let salt = Fr::from(0xdead_beefu64);
    let c = AttributeCircuit::new(AGE, 34, salt, 18, 127).unwrap();
    let inputs = c.instance.public_inputs(&AGE).unwrap();
    assert_eq!(
        inputs,
        vec![commit(34, salt), Fr::from(18u8), Fr::from(127u8)]
    );
    let proof = snark::prove(&pk, c, &mut rng).unwrap();
    assert_eq!(snark::proof_to_bytes(&proof).len(), 128);
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
}

#[test]
fn a_minor_cannot_prove_adulthood() {
    assert!(AttributeCircuit::new(AGE, 17, Fr::from(1u8), 18, 127).is_err());
    // A lying prover keeps the statement for age 34 but uses the witness of a 17-year-old,
    // or the right age under another salt.
    let honest = AttributeCircuit::new(AGE, 34, Fr::from(1u8), 18, 127).unwrap();
    let mut lying = honest.clone();
    lying.value = 17;
    lying.instance.commitment = commit(17, lying.salt);
    assert!(!satisfied(lying));
    let mut lying = honest.clone();
    lying.salt += Fr::one();
    assert!(!satisfied(lying));
    // A value beyond the width that wraps below the bound is no escape either.
    let mut lying = honest;
    lying.value = 128 + 20;
    lying.instance.commitment = commit(148, lying.salt);
    assert!(!satisfied(lying));
}

#[test]
fn edges_of_the_range_and_the_width() {
    for (v, lo, hi) in [
        (0u64, 0u64, 127u64),
        (127, 0, 127),
        (18, 18, 18),
        (127, 127, 127),
    ] {
        assert!(satisfied(
            AttributeCircuit::new(AGE, v, Fr::from(3u8), lo, hi).unwrap()
        ));
    }
    // Bounds beyond the width are refused natively and unsatisfiable in the circuit.
    assert!(AttributeCircuit::new(AGE, 20, Fr::from(3u8), 18, 128).is_err());
    let mut c = AttributeCircuit::new(AGE, 20, Fr::from(3u8), 18, 127).unwrap();
    c.instance.hi = 128;
    assert!(!satisfied(c));
    let wide = AttributeShape { width: 64 };
    assert!(satisfied(
        AttributeCircuit::new(wide, u64::MAX, Fr::from(3u8), 0, u64::MAX).unwrap()
    ));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// The circuit is satisfiable exactly when the native twin says the statement holds.
    #[test]
    fn circuit_agrees_with_native_twin(value in 0u64..128, lo in 0u64..128, hi in 0u64..128) {
        let salt = Fr::from(77u8);
        let circuit = AttributeCircuit::new(AGE, value, salt, lo.min(value), hi.max(value)).unwrap();
        let mut c = circuit;
        c.instance.lo = lo;
        c.instance.hi = hi;
        prop_assert_eq!(satisfied(c), holds(7, value, lo, hi));
    }
}
