//! The Groth16 layer: batch verification, serialization, fingerprints, key/shape checks.

mod common;

use ark_ff::One;
use common::*;
use zkfabric_circuits::{
    attribute::{AttributeCircuit, AttributeShape},
    snark::{self, ProvingKey},
    CircuitError, Fr,
};

const SHAPE: AttributeShape = AttributeShape { width: 8 };

fn proofs(pk: &ProvingKey, n: u64) -> Vec<(Vec<Fr>, snark::Proof)> {
    let mut rng = rng(8);
    (0..n)
        .map(|i| {
            let c = AttributeCircuit::new(SHAPE, 20 + i, Fr::from(i), 18, 255).unwrap();
            let inputs = c.instance.public_inputs(&SHAPE).unwrap();
            (inputs, snark::prove(pk, c, &mut rng).unwrap())
        })
        .collect()
}

#[test]
fn batch_verify_accepts_honest_batches_and_rejects_one_bad_proof() {
    let mut rng = rng(9);
    let pk = snark::setup::<AttributeCircuit, _>(&SHAPE, &mut rng).unwrap();
    let vk = pk.verifying_key();
    let batch = proofs(&pk, 5);
    assert!(snark::batch_verify(vk, &batch, &mut rng).unwrap());
    assert!(snark::batch_verify(vk, &batch[..1], &mut rng).unwrap());
    assert!(snark::batch_verify(vk, &[], &mut rng).unwrap());

    let mut bad = batch.clone();
    bad[3].0[1] += Fr::one();
    assert!(
        !snark::batch_verify(vk, &bad, &mut rng).unwrap(),
        "one tampered input"
    );
    let mut bad = batch.clone();
    bad[1].1 = batch[2].1.clone();
    assert!(
        !snark::batch_verify(vk, &bad, &mut rng).unwrap(),
        "one proof swapped"
    );
    let mut short = batch;
    short[0].0.pop();
    assert!(matches!(
        snark::batch_verify(vk, &short, &mut rng),
        Err(CircuitError::KeyMismatch(_))
    ));
}

#[test]
fn keys_and_proofs_round_trip_and_fingerprints_pin_keys() {
    let mut rng = rng(10);
    let pk = snark::setup::<AttributeCircuit, _>(&SHAPE, &mut rng).unwrap();
    let vk = pk.verifying_key();
    let loaded = ProvingKey::from_bytes::<AttributeCircuit>(&pk.to_bytes(), &SHAPE).unwrap();
    let vk_bytes = snark::verifying_key_to_bytes(vk);
    let vk2 = snark::verifying_key_from_bytes(&vk_bytes).unwrap();
    assert_eq!(&vk2, vk);
    assert_eq!(snark::fingerprint(&vk2), snark::fingerprint(vk));

    let (inputs, proof) = proofs(&loaded, 1).remove(0);
    let proof = snark::proof_from_bytes(&snark::proof_to_bytes(&proof)).unwrap();
    assert!(snark::verify(&vk2, &inputs, &proof).unwrap());

    // Another setup of the same shape is another key: another fingerprint, and its proofs
    // do not verify under the first key.
    let other = snark::setup::<AttributeCircuit, _>(&SHAPE, &mut rng).unwrap();
    assert_ne!(
        snark::fingerprint(other.verifying_key()),
        snark::fingerprint(vk)
    );
    let (inputs, foreign) = proofs(&other, 1).remove(0);
    assert!(!snark::verify(vk, &inputs, &foreign).unwrap());

    // A key loaded for another shape is refused; corrupt bytes are refused.
    let wider = AttributeShape { width: 16 };
    assert!(matches!(
        ProvingKey::from_bytes::<AttributeCircuit>(&pk.to_bytes(), &wider),
        Err(CircuitError::KeyMismatch(_))
    ));
    let mut corrupt = snark::proof_to_bytes(&proof);
    corrupt[5] ^= 0xff;
    assert!(
        snark::proof_from_bytes(&corrupt).is_err()
            || !snark::verify(vk, &inputs, &snark::proof_from_bytes(&corrupt).unwrap()).unwrap()
    );
}

#[test]
fn a_forged_key_with_identity_points_that_verifies_anything_is_refused() {
    // The forgery: input bases at the identity and the "proof" (alpha, beta, O). The
    // pairing equation e(A, B) = e(alpha, beta) e(sum x_i IC_i, gamma) e(C, delta) then
    // holds for every statement, which raw ark-groth16 accepts.
    use ark_bn254::{Bn254, G1Affine};
    use ark_ec::AffineRepr;
    let mut rng = rng(12);
    let pk = snark::setup::<AttributeCircuit, _>(&SHAPE, &mut rng).unwrap();
    let mut forged = pk.verifying_key().clone();
    forged.gamma_abc_g1 = vec![G1Affine::zero(); forged.gamma_abc_g1.len()];
    let proof = snark::Proof {
        a: forged.alpha_g1,
        b: forged.beta_g2,
        c: G1Affine::zero(),
    };
    let any_statement = vec![Fr::from(10u8); forged.gamma_abc_g1.len() - 1];
    let pvk = ark_groth16::prepare_verifying_key(&forged);
    assert!(
        ark_groth16::Groth16::<Bn254>::verify_proof(&pvk, &proof, &any_statement).unwrap(),
        "the forgery works against an unchecked key"
    );
    // Decoding refuses the key and the proof, naming what is wrong.
    let refused = snark::verifying_key_from_bytes(&snark::verifying_key_to_bytes(&forged));
    assert!(
        matches!(&refused, Err(CircuitError::Degenerate(m)) if m.contains("input base 0 is the identity")),
        "{refused:?}"
    );
    let refused = snark::proof_from_bytes(&snark::proof_to_bytes(&proof));
    assert!(
        matches!(refused, Err(CircuitError::Degenerate(_))),
        "{refused:?}"
    );
    // A key without input bases is refused too, and verification does not underflow.
    let mut empty = pk.verifying_key().clone();
    empty.gamma_abc_g1.clear();
    assert!(snark::verifying_key_from_bytes(&snark::verifying_key_to_bytes(&empty)).is_err());
    let honest = proofs(&pk, 1).remove(0).1;
    assert!(snark::verify(&empty, &[], &honest).is_err());
    assert!(snark::batch_verify(
        &empty,
        &[(vec![], honest.clone()), (vec![], honest)],
        &mut rng
    )
    .is_err());
}
