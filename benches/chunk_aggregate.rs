//! The proving hot path for one 1024-row chunk of a consumption-like schema:
//!
//! ```text
//! SELECT district, SUM(kwh), COUNT(*) WHERE district IN (4 values)
//!   AND hour BETWEEN 7 AND 9 GROUP BY district          -- 4-bit key
//! ```
//!
//! Prints constraints per row, setup time and proof size, then measures with criterion:
//! our whole prove path (`snark::prove`: witness-only synthesis, satisfiability check,
//! proving core), its parts, ark-groth16's proving core alone on the finished assignment
//! and matrices, the core's own stages (the witness map's FFTs and each MSM), ark-groth16's
//! default prove (which synthesizes the constraint system again), and verification. It
//! also counts how many assignment values are bits, small or full field elements, which is
//! what an MSM's cost depends on.
//!
//! `cargo bench --bench chunk_aggregate` (`ZKFABRIC_BENCH_ROWS=256` for a quick run).

mod common;

use std::time::Instant;

use ark_bn254::{Bn254, G1Projective, G2Projective};
use ark_ec::VariableBaseMSM;
use ark_ff::{BigInteger, One, PrimeField, Zero};
use ark_groth16::{
    r1cs_to_qap::{LibsnarkReduction, R1CSToQAP},
    Groth16,
};
use ark_poly::GeneralEvaluationDomain;
use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfabric::circuits::{
    aggregate::{
        Aggregand, AggregateCircuit, AggregateQuery, AggregateShape, FilterParams, FilterShape,
        Grouping, Selection,
    },
    combine::{CombineCircuit, CombineOutput, CombineParams, CombineShape},
    commitment::{Chunk, ChunkLayout, ColumnSpec},
    evaluation::{GroupColumn, GroupDomain},
    snark, Fr,
};

const DISTRICT: usize = 1;
const HOUR: usize = 2;
const CONSENT: usize = 5;
const PRESENT: usize = 6;
const KWH: usize = 7;

/// time, district (4 bits), hour (5), household band (3), age (7), consent (4),
/// present (1), kWh x 1000 (24), water litres (20), retail spend in cents (24).
fn layout(rows: usize) -> ChunkLayout {
    let columns = vec![
        ColumnSpec::wide(32),
        ColumnSpec::narrow(4),
        ColumnSpec::narrow(5),
        ColumnSpec::narrow(3),
        ColumnSpec::narrow(7),
        ColumnSpec::narrow(4),
        ColumnSpec::narrow(1),
        ColumnSpec::wide(24),
        ColumnSpec::wide(20),
        ColumnSpec::wide(24),
    ];
    ChunkLayout::new(columns, PRESENT, rows).expect("valid layout")
}

fn circuit(rows: usize, rng: &mut ChaCha20Rng) -> AggregateCircuit {
    let layout = layout(rows);
    let maxima = [1 << 31, 12, 24, 5, 100, 16, 2, 3_000, 400_000, 1 << 23];
    let mut columns: Vec<Vec<u64>> = maxima
        .iter()
        .map(|&max| (0..rows).map(|_| rng.gen_range(0..max)).collect())
        .collect();
    columns[PRESENT] = vec![1; rows];
    let chunk = Chunk::seal(&layout, 1, 0, columns, rng).expect("values fit");
    let shape = AggregateShape {
        layout,
        selection: Selection::Purpose { consent: CONSENT },
        filters: vec![
            FilterShape::In {
                column: DISTRICT,
                len: 4,
            },
            FilterShape::Range { column: HOUR },
        ],
        group_by: vec![Grouping::Column(DISTRICT)],
        aggregand: Aggregand::Sum { columns: vec![KWH] },
        weight: None,
    };
    let query = AggregateQuery {
        purpose: 2,
        filters: vec![
            FilterParams::In(vec![0, 3, 5, 7]),
            FilterParams::Range { lo: 7, hi: 9 },
        ],
        condition: None,
        clips: Vec::new(),
        origins: Vec::new(),
    };
    let challenge = Fr::from(rng.gen::<u128>());
    AggregateCircuit::new(shape, query, chunk, challenge, Fr::from(rng.gen::<u128>()))
        .expect("honest")
}

fn bench(c: &mut Criterion) {
    let rows: usize = std::env::var("ZKFABRIC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let circuit = circuit(rows, &mut rng);

    let t = Instant::now();
    let pk = snark::setup::<AggregateCircuit, _>(&circuit.shape, &mut rng).expect("setup");
    let setup = t.elapsed();
    let m = pk.matrices();
    let inputs = circuit
        .instance
        .public_inputs(&circuit.shape)
        .expect("valid query");
    let proof = snark::prove(&pk, circuit.clone(), &mut rng).expect("prove");
    assert!(snark::verify(pk.verifying_key(), &inputs, &proof).expect("verify"));
    println!("chunk_aggregate: {rows} rows, grouped by a 4-bit column, IN of 4, one range filter");
    println!(
        "  constraints      {} ({:.1} per row), {} witness variables, {} public inputs",
        m.num_constraints,
        m.num_constraints as f64 / rows as f64,
        m.num_witness_variables,
        m.num_instance_variables - 1
    );
    println!("  setup            {setup:.2?}");
    println!(
        "  proof size       {} bytes (compressed); verifying key {} bytes",
        snark::proof_to_bytes(&proof).len(),
        snark::verifying_key_to_bytes(pk.verifying_key()).len()
    );

    let mut group = c.benchmark_group(format!("chunk_aggregate_{rows}"));
    group.sample_size(10);
    let z = common::whole_path_against_core(&mut group, "chunk", &pk, &circuit);
    let bits = z.iter().filter(|v| v.is_zero() || v.is_one()).count();
    let small = z
        .iter()
        .filter(|v| v.into_bigint().num_bits() <= 64)
        .count();
    println!(
        "  assignment       {} values: {bits} are 0 or 1, {} more fit 64 bits, {} are full \
         field elements",
        z.len(),
        small - bits,
        z.len() - small
    );
    core_stages(&mut group, &pk, &z);
    group.bench_function("prove: ark-groth16 default (re-synthesizes)", |b| {
        b.iter(|| {
            Groth16::<Bn254>::create_random_proof_with_reduction(
                circuit.clone(),
                pk.groth16(),
                &mut rng,
            )
            .expect("prove")
        })
    });
    group.bench_function("verify", |b| {
        b.iter(|| snark::verify(pk.verifying_key(), &inputs, &proof).expect("verify"))
    });
    combine(&mut group, &mut rng);
    group.finish();
}

/// The root combine that opens K = 8 chunk evaluations and the totals of G = 8 groups,
/// and releases the groups of at least k = 10 rows: the root of the demo-sized answer.
fn combine(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    rng: &mut ChaCha20Rng,
) {
    let shape = CombineShape {
        inputs: 8,
        domain: GroupDomain {
            columns: vec![GroupColumn { width: 4, codes: 8 }],
        },
        sums: 1,
        output: CombineOutput::Release,
    };
    let params = CombineParams {
        min_group_size: 10,
        threshold: 0,
        noise: None,
    };
    let (openings, closing) = common::random_root(&shape, 128, rng);
    let circuit =
        CombineCircuit::new(shape.clone(), params, openings, closing).expect("honest openings");
    let pk = snark::setup::<CombineCircuit, _>(&shape, rng).expect("setup");
    common::whole_path_against_core(group, "combine K=8 G=8", &pk, &circuit);
}

/// ark-groth16's proving core taken apart, to see where its time goes: the witness map
/// (R1CS to QAP: the FFTs) and each multi-scalar multiplication, as its prover runs them.
fn core_stages(
    group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>,
    pk: &snark::ProvingKey,
    z: &[Fr],
) {
    let m = pk.matrices();
    let key = pk.groth16();
    let witness_map = || {
        LibsnarkReduction::witness_map_from_matrices::<Fr, GeneralEvaluationDomain<Fr>>(
            m.r1cs(),
            m.num_instance_variables,
            m.num_constraints,
            z,
        )
        .expect("witness map")
    };
    let big = |values: &[Fr]| values.iter().map(|v| v.into_bigint()).collect::<Vec<_>>();
    let h = big(&witness_map());
    let all = big(z);
    let aux = &all[m.num_instance_variables..];
    group.bench_function("core: witness map (FFTs)", |b| b.iter(witness_map));
    group.bench_function("core: MSM H (G1, full scalars)", |b| {
        b.iter(|| G1Projective::msm_bigint(&key.h_query, &h))
    });
    group.bench_function("core: MSM L (G1, witness)", |b| {
        b.iter(|| G1Projective::msm_bigint(&key.l_query, aux))
    });
    group.bench_function("core: MSM A (G1)", |b| {
        b.iter(|| G1Projective::msm_bigint(&key.a_query[1..], &all[1..]))
    });
    group.bench_function("core: MSM B (G1)", |b| {
        b.iter(|| G1Projective::msm_bigint(&key.b_g1_query[1..], &all[1..]))
    });
    group.bench_function("core: MSM B (G2)", |b| {
        b.iter(|| G2Projective::msm_bigint(&key.b_g2_query[1..], &all[1..]))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
