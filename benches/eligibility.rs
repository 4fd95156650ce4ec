//! The donor's eligibility proof: an issuer-signed credential (EdDSA-Poseidon on
//! BabyJubJub), birth date on or before the cutoff, district in an allowed set of 16, a
//! per-dataset nullifier, bound to the donated records' hash, and a week of hourly rows
//! (168) whose age and district are checked against the credential.
//!
//! Prints constraints (and those of the rows: against the same circuit binding none, per
//! row), setup time and proof size, then measures proving (our whole path: synthesis of
//! the witness, satisfiability check, proving core) and verification.
//!
//! `cargo bench --bench eligibility` (add `--profile dev` to reuse the test build).

mod common;

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zkfabric::circuits::{
    eddsa::{Scalar, SecretKey},
    eligibility::{
        age_at, holder, Bound, BoundRow, Credential, EligibilityCircuit, EligibilityShape, Holding,
        Requirement, Segment,
    },
    snark, Fr,
};

/// A week of hourly rows a proof, age and district bound (the consumption dataset's).
const SHAPE: EligibilityShape = EligibilityShape {
    districts: 16,
    rows: 168,
    bound: Bound {
        age: true,
        district: true,
    },
};

/// The same circuit binding no rows.
const NO_ROWS: EligibilityShape = EligibilityShape {
    districts: 16,
    rows: 0,
    bound: Bound {
        age: false,
        district: false,
    },
};

fn circuit() -> EligibilityCircuit {
    circuit_of(SHAPE)
}

fn circuit_of(shape: EligibilityShape) -> EligibilityCircuit {
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
    // 2026-11-23 00:00 UTC onwards, a reading an hour: the holder turns 39 that week.
    let start = 1_795_392_000;
    let rows = (0..shape.rows as u64)
        .map(|hour| {
            let time = start + 3_600 * hour;
            BoundRow {
                time,
                age: age_at(credential.birth_date, time).expect("born"),
                district: 4,
            }
        })
        .collect();
    let segment = Segment { index: 0, rows };
    EligibilityCircuit::new(
        shape,
        &requirement,
        Fr::from(1u8),
        Fr::from(42u8),
        holding,
        segment,
    )
    .expect("an eligible holder")
}

fn bench(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(18);
    let started = Instant::now();
    let pk = snark::setup::<EligibilityCircuit, _>(&SHAPE, &mut rng).expect("setup");
    let setup = started.elapsed();
    let inputs = circuit().instance.public_inputs(&SHAPE).expect("valid");
    let proof = snark::prove(&pk, circuit(), &mut rng).expect("proof");
    let without_rows = snark::setup::<EligibilityCircuit, _>(&NO_ROWS, &mut rng).expect("setup");
    let (all, base) = (
        pk.matrices().num_constraints,
        without_rows.matrices().num_constraints,
    );
    println!(
        "eligibility ({}): {all} constraints ({base} without rows, {:.1} per row), {} public \
         inputs, setup {:.2} s, proof {} bytes (compressed)",
        SHAPE.description(),
        (all - base) as f64 / SHAPE.rows as f64,
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
