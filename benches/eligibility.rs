//! The donor's eligibility proof: an issuer-signed credential (EdDSA-Poseidon on
//! BabyJubJub), birth date on or before the cutoff, district in an allowed set of 16, a
//! per-dataset nullifier, bound to the donated records' hash.
//!
//! Prints constraints, setup time and proof size, then measures proving (our whole path:
//! synthesis of the witness, satisfiability check, proving core) and verification.
//!
//! `cargo bench --bench eligibility` (add `--profile dev` to reuse the test build).

mod common;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zkfabric::circuits::{
    eddsa::{Scalar, SecretKey},
    eligibility::{holder, Credential, EligibilityCircuit, EligibilityShape, Holding, Requirement},
    snark, Fr,
};

const SHAPE: EligibilityShape = EligibilityShape { districts: 16 };

fn circuit() -> EligibilityCircuit {
    let issuer = SecretKey(Scalar::from(0x1551_u64 << 40));
    let secret = Fr::from(0xfeed_u64);
    let credential = Credential {
        holder: holder(secret),
        birth_date: 19871130,
        district: 4,
    };
    let requirement = Requirement {
        issuer: issuer.public_key(),
        cutoff: 20081123,
        districts: (0..12).collect(),
    };
    let holding = Holding {
        credential,
        signature: credential.sign(&issuer),
        secret,
    };
    EligibilityCircuit::new(SHAPE, &requirement, Fr::from(1u8), Fr::from(42u8), holding)
        .expect("an eligible holder")
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let started = Instant::now();
    let pk = snark::setup::<EligibilityCircuit, _>(&SHAPE, &mut rng).expect("setup");
    let setup = started.elapsed();
    let inputs = circuit().instance.public_inputs(&SHAPE).expect("valid");
    let proof = snark::prove(&pk, circuit(), &mut rng).expect("proof");
    println!(
        "eligibility: {} constraints, {} public inputs, setup {:.2} s, proof {} bytes \
         (compressed)",
        pk.matrices().num_constraints,
        inputs.len(),
        setup.as_secs_f64(),
        snark::proof_to_bytes(&proof).len()
    );
    let mut group = c.benchmark_group("eligibility");
    group.sample_size(10);
    common::whole_path_against_core(&mut group, "eligibility", &pk, &circuit());
    group.bench_function("verify", |b| {
        b.iter(|| assert!(snark::verify(pk.verifying_key(), &inputs, &proof).expect("verifies")))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
