//! Eligibility circuit: an adult resident proves it from a signed credential; every
//! public input is bound, and a forged signature, a birth date one day too late, a
//! district outside the set or another holder's secret leave the constraints unsatisfied.

mod common;

use ark_ec::CurveGroup;
use common::*;
use zkfabric_circuits::{
    eddsa::{self, Scalar, SecretKey},
    eligibility::{
        holder, holds, nullifier, Credential, EligibilityCircuit, EligibilityShape, Holding,
        Requirement, WithdrawalCircuit, WithdrawalShape,
    },
    snark, Fr,
};

const SHAPE: EligibilityShape = EligibilityShape { districts: 4 };

fn issuer() -> SecretKey {
    SecretKey(Scalar::from(0x5eed_1234_u64))
}

/// Born 1990-04-02 in district 4, issued by [`issuer`].
fn holding() -> Holding {
    let secret = Fr::from(0xabcdef_u64);
    let credential = Credential {
        holder: holder(secret),
        birth_date: 19900402,
        district: 4,
    };
    Holding {
        credential,
        signature: credential.sign(&issuer()),
        secret,
    }
}

/// Adults on 2026-11-23 (born on or before 2008-11-23) in districts 2, 4 and 7.
fn requirement() -> Requirement {
    Requirement {
        issuer: issuer().public_key(),
        cutoff: 20081123,
        districts: vec![2, 4, 7],
    }
}

fn honest() -> EligibilityCircuit {
    EligibilityCircuit::new(
        SHAPE,
        &requirement(),
        Fr::from(1u8),
        Fr::from(99u8),
        holding(),
    )
    .unwrap()
}

#[test]
fn an_adult_resident_proves_eligibility_and_every_input_is_bound() {
    let mut rng = rng(61);
    let pk = snark::setup::<EligibilityCircuit, _>(&SHAPE, &mut rng).unwrap();
    let circuit = honest();
    let inputs = circuit.instance.public_inputs(&SHAPE).unwrap();
    // issuer x and y, cutoff, 4 district slots, scope, records, nullifier.
    assert_eq!(inputs.len(), 10);
    assert_eq!(inputs[9], nullifier(holding().secret, Fr::from(1u8)));
    let proof = snark::prove(&pk, circuit, &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
}

#[test]
fn nullifiers_repeat_within_a_scope_and_differ_across_scopes() {
    let secret = holding().secret;
    assert_eq!(
        nullifier(secret, Fr::from(1u8)),
        nullifier(secret, Fr::from(1u8))
    );
    assert_ne!(
        nullifier(secret, Fr::from(1u8)),
        nullifier(secret, Fr::from(2u8))
    );
    assert_ne!(
        nullifier(secret, Fr::from(1u8)),
        nullifier(secret + Fr::from(1u8), Fr::from(1u8))
    );
}

#[test]
fn ineligible_holders_are_refused_before_proving() {
    let at = |birth_date, district| {
        let mut h = holding();
        h.credential.birth_date = birth_date;
        h.credential.district = district;
        h.signature = h.credential.sign(&issuer());
        EligibilityCircuit::new(SHAPE, &requirement(), Fr::from(1u8), Fr::from(9u8), h)
    };
    assert!(at(20081123, 4).is_ok(), "18 today");
    assert!(at(20081124, 4).is_err(), "18 tomorrow");
    assert!(at(19900402, 5).is_err(), "district outside the set");
    let mut other_issuer = holding();
    other_issuer.signature = other_issuer.credential.sign(&SecretKey(Scalar::from(77u8)));
    assert!(EligibilityCircuit::new(
        SHAPE,
        &requirement(),
        Fr::from(1u8),
        Fr::from(9u8),
        other_issuer
    )
    .is_err());
}

#[test]
fn lying_witnesses_leave_the_constraints_unsatisfied() {
    assert!(satisfied(honest()));

    // A forged signature: S changed, or R8 moved.
    let mut lying = honest();
    lying.holding.signature.s += Scalar::from(1u8);
    assert!(!satisfied(lying));
    let mut lying = honest();
    lying.holding.signature.r8 = (lying.holding.signature.r8 + eddsa::base8()).into_affine();
    assert!(!satisfied(lying));

    // A minor by one day, with a genuine signature on that birth date.
    let mut lying = honest();
    lying.holding.credential.birth_date = 20081124;
    lying.holding.signature = lying.holding.credential.sign(&issuer());
    assert!(!holds(&lying.instance, &lying.holding));
    assert!(!satisfied(lying));

    // A genuine credential for a district outside the set.
    let mut lying = honest();
    lying.holding.credential.district = 5;
    lying.holding.signature = lying.holding.credential.sign(&issuer());
    assert!(!satisfied(lying));

    // Someone else's secret (so someone else's nullifier), or a changed birth date under
    // the old signature.
    let mut lying = honest();
    lying.holding.secret += Fr::from(1u8);
    assert!(!satisfied(lying));
    let mut lying = honest();
    lying.holding.credential.birth_date = 19800101;
    assert!(!satisfied(lying));

    // A claimed nullifier that is not the holder's.
    let mut lying = honest();
    lying.instance.nullifier += Fr::from(1u8);
    assert!(!satisfied(lying));
}

#[test]
fn only_the_holder_of_the_secret_proves_a_withdrawal() {
    let mut rng = rng(62);
    let pk = snark::setup::<WithdrawalCircuit, _>(&WithdrawalShape, &mut rng).unwrap();
    let secret = holding().secret;
    let circuit = WithdrawalCircuit::new(secret, Fr::from(1u8), Fr::from(7u8));
    let inputs = WithdrawalCircuit::public_inputs_of(
        Fr::from(1u8),
        nullifier(secret, Fr::from(1u8)),
        Fr::from(7u8),
    );
    let proof = snark::prove(&pk, circuit, &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
    // Another secret does not open this nullifier.
    let mut lying = circuit;
    lying.secret += Fr::from(1u8);
    assert!(!satisfied(lying));
}
