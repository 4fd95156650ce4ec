//! What every circuit bench measures the same way: our whole prove path against
//! ark-groth16's proving core alone, and the parts in between.

use criterion::{measurement::WallTime, BenchmarkGroup};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfabric::circuits::{snark, Fr};

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
