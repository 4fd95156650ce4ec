//! What every circuit bench measures the same way: our whole prove path against
//! ark-groth16's proving core alone, and the parts in between; and the witnesses they
//! share.
#![allow(dead_code)] // each bench uses what it measures

use criterion::{measurement::WallTime, BenchmarkGroup};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfabric::circuits::{
    aggregate::Partial,
    combine::{Closing, CombineShape, Opening},
    snark, Fr,
};

/// Benches `circuit` under `pk` as `label: ...`: the whole path (`snark::prove`: witness
/// generation, satisfiability check, proving core), the proving core alone on the finished
/// assignment and cached matrices, and the two parts that the whole path adds. Prints the
/// constraint count first; returns the assignment for further measurements.
pub fn whole_path_against_core<C>(
    group: &mut BenchmarkGroup<'_, WallTime>,
    label: &str,
    pk: &snark::ProvingKey,
    circuit: &C,
) -> Vec<Fr>
where
    C: snark::Circuit,
{
    let mut rng = ChaCha20Rng::seed_from_u64(0x5eed);
    let z = snark::assignment(circuit.clone()).expect("assignment");
    println!(
        "{label}: {} constraints, {} witness variables, {} public inputs",
        pk.matrices().num_constraints,
        pk.matrices().num_witness_variables,
        pk.matrices().num_instance_variables - 1
    );
    group.bench_function(format!("{label}: prove, whole path"), |b| {
        b.iter(|| snark::prove(pk, circuit.clone(), &mut rng).expect("prove"))
    });
    group.bench_function(format!("{label}: prove, groth16 core alone"), |b| {
        b.iter(|| {
            let (r, s) = (Fr::from(rng.gen::<u128>()), Fr::from(rng.gen::<u128>()));
            snark::groth16_core(pk, &z, r, s).expect("core")
        })
    });
    group.bench_function(format!("{label}: witness generation"), |b| {
        b.iter(|| snark::assignment(circuit.clone()).expect("assignment"))
    });
    group.bench_function(format!("{label}: satisfiability check"), |b| {
        b.iter(|| pk.matrices().check(&z).expect("satisfied"))
    });
    z
}

/// A root combine's witness over `K = shape.inputs` random chunk totals (counts below
/// `max_count`, sums below 2^30): each input is that chunk's share of the evaluation at a
/// random challenge, and the root opens their sum.
pub fn random_root(
    shape: &CombineShape,
    max_count: u64,
    rng: &mut ChaCha20Rng,
) -> (Vec<Opening>, Closing) {
    let challenge = Fr::from(rng.gen::<u128>());
    let mut totals = Partial::zero(shape.groups(), shape.sums);
    let openings = (0..shape.inputs)
        .map(|_| {
            let partial = Partial {
                sums: (0..shape.sums)
                    .map(|_| {
                        (0..shape.groups())
                            .map(|_| rng.gen_range(0..1 << 30))
                            .collect()
                    })
                    .collect(),
                counts: (0..shape.groups())
                    .map(|_| rng.gen_range(0..max_count))
                    .collect(),
            };
            totals.add(&partial);
            Opening {
                evaluation: partial.evaluate(&shape.domain, challenge),
                blind: Fr::from(rng.gen::<u128>()),
            }
        })
        .collect();
    let closing = Closing::Root {
        totals,
        blind: Fr::from(rng.gen::<u128>()),
        challenge,
    };
    (openings, closing)
}
