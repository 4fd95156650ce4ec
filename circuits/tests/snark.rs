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
