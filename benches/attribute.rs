//! The attribute predicate "age >= 18" and proof verification in batches.
//!
//! 1. Our Groth16 attribute proof (`circuits/src/attribute.rs`: a Poseidon-committed age
//!    lies in `[18, 255]`, 8-bit shape) side by side with the `bulletproofs` crate's range
//!    proofs over 8, 32 and 64 bits in the same run: prove time, verify time, proof size.
//!    A Bulletproof shows that a Pedersen-committed value lies in `[0, 2^n)`; "age >= 18"
//!    is the 8-bit proof over `age - 18`.
//! 2. Verification of 1, 10 and 100 attribute proofs under one verifying key, one by one
//!    against one batched multi-pairing (`snark::batch_verify`).
//!
//! Prints constraints and sizes first, then measures with criterion.
//! `cargo bench --bench attribute` (add `--workspace --profile dev` to reuse the test build).

mod common;

use std::time::Instant;

use bulletproofs::{BulletproofGens, PedersenGens, RangeProof};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use curve25519_dalek::scalar::Scalar as RistrettoScalar;
use merlin::Transcript;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfabric::circuits::{
    attribute::{AttributeCircuit, AttributeShape},
    snark, Fr,
};

const SHAPE: AttributeShape = AttributeShape { width: 8 };
const ADULT: u64 = 18;
const MAX_AGE: u64 = 255;

/// An honest "age >= 18" circuit for a random adult age and salt.
fn adult(rng: &mut ChaCha20Rng) -> AttributeCircuit {
    let age = rng.gen_range(ADULT..=120);
    AttributeCircuit::new(SHAPE, age, Fr::from(rng.gen::<u128>()), ADULT, MAX_AGE)
        .expect("an adult")
}

/// A Bulletproofs range proof that `value` lies below `2^bits`, and its commitment.
fn bulletproof(
    gens: &(BulletproofGens, PedersenGens),
    value: u64,
    bits: usize,
    rng: &mut ChaCha20Rng,
) -> (RangeProof, curve25519_dalek::ristretto::CompressedRistretto) {
    let blinding = RistrettoScalar::random(rng);
    RangeProof::prove_single(
        &gens.0,
        &gens.1,
        &mut Transcript::new(b"zkfabric attribute bench"),
        value,
        &blinding,
        bits,
    )
    .expect("value fits")
}

fn attribute_against_bulletproofs(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let started = Instant::now();
    let pk = snark::setup::<AttributeCircuit, _>(&SHAPE, &mut rng).expect("setup");
    let setup = started.elapsed();
    let circuit = adult(&mut rng);
    let inputs = circuit.instance.public_inputs(&SHAPE).expect("valid");
    let proof = snark::prove(&pk, circuit.clone(), &mut rng).expect("proof");
    println!(
        "attribute (age >= 18, 8 bits): {} constraints, setup {:.0} ms, proof {} bytes \
         (compressed)",
        pk.matrices().num_constraints,
        setup.as_secs_f64() * 1e3,
        snark::proof_to_bytes(&proof).len()
    );

    let mut group = c.benchmark_group("age_at_least_18");
    common::whole_path_against_core(&mut group, "groth16 attribute", &pk, &circuit);
    group.bench_function("groth16 attribute: verify", |b| {
        b.iter(|| assert!(snark::verify(pk.verifying_key(), &inputs, &proof).expect("verifies")))
    });
    let prepared = snark::prepare(pk.verifying_key());
    group.bench_function("groth16 attribute: verify, key prepared once", |b| {
        b.iter(|| assert!(snark::verify_prepared(&prepared, &inputs, &proof).expect("verifies")))
    });
    let age = circuit.value;
    for bits in [8usize, 32, 64] {
        let gens = (BulletproofGens::new(bits, 1), PedersenGens::default());
        let (proof, commitment) = bulletproof(&gens, age - ADULT, bits, &mut rng);
        println!(
            "bulletproofs {bits}-bit range proof: {} bytes",
            proof.to_bytes().len()
        );
        group.bench_function(format!("bulletproofs {bits}-bit: prove"), |b| {
            b.iter(|| bulletproof(&gens, age - ADULT, bits, &mut rng))
        });
        group.bench_function(format!("bulletproofs {bits}-bit: verify"), |b| {
            b.iter(|| {
                proof
                    .verify_single(
                        &gens.0,
                        &gens.1,
                        &mut Transcript::new(b"zkfabric attribute bench"),
                        &commitment,
                        bits,
                    )
                    .expect("verifies")
            })
        });
    }
    group.finish();
}

fn batch_verification(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(100);
    let pk = snark::setup::<AttributeCircuit, _>(&SHAPE, &mut rng).expect("setup");
    let proofs: Vec<(Vec<Fr>, snark::Proof)> = (0..100)
        .map(|_| {
            let circuit = adult(&mut rng);
            let inputs = circuit.instance.public_inputs(&SHAPE).expect("valid");
            (inputs, snark::prove(&pk, circuit, &mut rng).expect("proof"))
        })
        .collect();
    let vk = pk.verifying_key();
    let mut group = c.benchmark_group("verify_under_one_key");
    group.sample_size(20);
    for n in [1usize, 10, 100] {
        let batch = &proofs[..n];
        group.bench_with_input(BenchmarkId::new("one by one", n), batch, |b, batch| {
            b.iter(|| {
                for (inputs, proof) in batch {
                    assert!(snark::verify(vk, inputs, proof).expect("verifies"));
                }
            })
        });
        group.bench_with_input(BenchmarkId::new("batched", n), batch, |b, batch| {
            b.iter(|| assert!(snark::batch_verify(vk, batch, &mut rng).expect("verifies")))
        });
    }
    group.finish();
}

criterion_group!(benches, attribute_against_bulletproofs, batch_verification);
criterion_main!(benches);
