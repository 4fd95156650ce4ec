//! What differential privacy costs and what it leaves of an answer.
//!
//! 1. The root combine of a `GROUP BY district` answer (K = 8, G = 12): constraints and
//!    prove time released exactly (k) against noisy at epsilon 1 (delta 1e-7; district
//!    is a unit attribute, so each value gets half the cost); the constraints at
//!    epsilon 0.5.
//! 2. Accuracy: per district, the median relative error of the COUNT and SUM(kwh)
//!    estimates against the true (clipped) values, and how often the district is
//!    suppressed, at epsilon 0.1, 0.5 and 1, on 100,000 and 1,000,000 generated rows. The
//!    noise is drawn natively from Binomial(n, 1/2) (101 draws per district), the
//!    distribution `circuits/tests/noise.rs` checks the in-circuit sampler against.
//!
//! `cargo bench --bench privacy` (`ZKFABRIC_BENCH_ROWS=100000` for one size only).

mod common;

use criterion::{criterion_group, criterion_main, Criterion};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfabric::{
    circuits::{
        combine::{CombineCircuit, CombineOutput, CombineParams, CombineShape, NoiseParams},
        evaluation::{GroupColumn, GroupDomain},
        noise::NoiseSeed,
        snark::{self, Circuit},
        Fr,
    },
    shared::synth,
    verifier::{
        privacy::{Cost, NoisePlan},
        query::{Aggregand, Grouping, ProvableQuery},
        schema::{Privacy, Schema},
    },
};

const GROUPS: usize = 12;

fn consumption() -> Schema {
    Schema::builtin("consumption").expect("built in")
}

fn by_district() -> ProvableQuery {
    ProvableQuery {
        purpose: "energy-research".into(),
        filters: Vec::new(),
        group_by: vec![Grouping::column("district")],
        aggregand: Aggregand::Sum(vec!["kwh".into()]),
        outputs: Vec::new(),
        post: Default::default(),
    }
}

fn plan(epsilon: f64) -> NoisePlan {
    let schema = consumption();
    let Privacy::Dp(bounds) = &schema.privacy else {
        unreachable!("consumption is dp")
    };
    NoisePlan::new(
        &schema,
        bounds,
        &by_district(),
        GROUPS,
        Cost::new(epsilon, 1e-7).unwrap(),
    )
    .expect("a plan")
}

/// The root of `GROUP BY district` (12 districts, 4-bit codes) with one sum, K = 8.
fn root_shape(output: CombineOutput) -> CombineShape {
    CombineShape {
        inputs: 8,
        domain: GroupDomain {
            columns: vec![GroupColumn {
                width: 4,
                codes: GROUPS as u64,
            }],
        },
        sums: 1,
        output,
    }
}

fn root_combine(c: &mut Criterion) {
    let mut rng = ChaCha20Rng::seed_from_u64(16);
    let mut group = c.benchmark_group("privacy");
    group.sample_size(10);
    let exact = CombineParams {
        min_group_size: 10,
        threshold: 0,
        noise: None,
    };
    // Larger noisy roots, by their constraints only: proving them is the same work at
    // the same rate per constraint, and their setup alone takes minutes here.
    for epsilon in [0.5, 0.1] {
        let p = plan(epsilon);
        let shape = root_shape(CombineOutput::Noisy { coins: p.coins });
        if p.coins <= 4096 {
            let blank = CombineCircuit::blank(&shape).expect("blank");
            let m = snark::ConstraintMatrices::of(blank).expect("matrices");
            println!(
                "root G=12 noisy eps={epsilon} (n={}): {} constraints",
                p.coins, m.num_constraints
            );
        } else {
            println!(
                "root G=12 noisy eps={epsilon} (n={}): not synthesized here",
                p.coins
            );
        }
    }
    let mut roots = vec![(
        "root G=12 exact (k)".to_string(),
        CombineOutput::Release,
        exact.clone(),
    )];
    {
        let epsilon = 1.0;
        let p = plan(epsilon);
        let params = CombineParams {
            noise: Some(NoiseParams {
                seed: NoiseSeed {
                    secret: Fr::from(rng.gen::<u128>()),
                    query: Fr::from(rng.gen::<u128>()),
                    nonce: Fr::from(rng.gen::<u128>()),
                },
                count_step: p.count_step,
                sum_steps: p.sum_steps.clone(),
                threshold: p.threshold,
            }),
            ..exact
        };
        roots.push((
            format!("root G=12 noisy eps={epsilon} (n={})", p.coins),
            CombineOutput::Noisy { coins: p.coins },
            params,
        ));
    }
    for (label, output, params) in roots {
        let shape = root_shape(output);
        let (openings, closing) = common::random_root(&shape, 2048, &mut rng);
        let circuit =
            CombineCircuit::new(shape.clone(), params, openings, closing).expect("honest openings");
        let pk = snark::setup::<CombineCircuit, _>(&shape, &mut rng).expect("setup");
        common::whole_path_against_core(&mut group, &label, &pk, &circuit);
    }
    group.finish();
}

/// Heads of `coins` fair coins.
fn binomial(rng: &mut ChaCha20Rng, coins: u32) -> u64 {
    let mut heads = 0;
    let mut left = coins;
    while left > 0 {
        let take = left.min(64);
        let word = rng.next_u64() & (u64::MAX >> (64 - take));
        heads += u64::from(word.count_ones());
        left -= take;
    }
    heads
}

fn median(mut values: Vec<f64>) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn accuracy(_: &mut Criterion) {
    let sizes: Vec<usize> = match std::env::var("ZKFABRIC_BENCH_ROWS") {
        Ok(rows) => vec![rows.parse().expect("ZKFABRIC_BENCH_ROWS is a number")],
        Err(_) => vec![100_000, 1_000_000],
    };
    let schema = consumption();
    let Privacy::Dp(bounds) = &schema.privacy else {
        unreachable!("consumption is dp")
    };
    let clip = u128::from(bounds.clip_of(&schema, "kwh"));
    let (district, kwh) = (
        schema.column("district").unwrap().0,
        schema.column("kwh").unwrap().0,
    );
    let mut rng = ChaCha20Rng::seed_from_u64(1);
    println!(
        "\naccuracy: median relative error of a district's noisy COUNT and SUM(kwh) \
         (101 draws), and how often it is suppressed"
    );
    println!(
        "{:>9} {:>7} {:>6} {:>13} {:>10} {:>10} {:>10}",
        "rows", "epsilon", "coins", "district rows", "COUNT err", "SUM err", "suppressed"
    );
    for rows in sizes {
        let columns = synth::generate(&schema, rows, 2026, |_| {}).expect("generated");
        let mut truth = [(0u64, 0u128); GROUPS];
        for (d, k) in columns[district].iter().zip(&columns[kwh]) {
            let t = &mut truth[*d as usize];
            t.0 += 1;
            t.1 += u128::from(*k).min(clip);
        }
        let mut order: Vec<usize> = (0..GROUPS).collect();
        order.sort_by_key(|&g| truth[g].0);
        for epsilon in [0.1, 0.5, 1.0] {
            let p = plan(epsilon);
            // The smallest, the median and the largest district.
            for g in [order[0], order[GROUPS / 2], order[GROUPS - 1]] {
                let (count, sum) = truth[g];
                let (mut count_errors, mut sum_errors, mut suppressed) =
                    (Vec::new(), Vec::new(), 0);
                for _ in 0..101 {
                    let released = count / p.count_step + binomial(&mut rng, p.coins);
                    if released < p.threshold {
                        suppressed += 1;
                        continue;
                    }
                    let step = u128::from(p.count_step);
                    let estimate = p.estimate(u128::from(released), step) as f64;
                    count_errors.push((estimate - count as f64).abs() / count as f64);
                    let sum_step = p.sum_steps[0];
                    let released = sum / sum_step + u128::from(binomial(&mut rng, p.coins));
                    let estimate = p.estimate(released, sum_step) as f64;
                    sum_errors.push((estimate - sum as f64).abs() / sum as f64);
                }
                println!(
                    "{rows:>9} {epsilon:>7} {:>6} {count:>13} {:>9.1}% {:>9.1}% {:>9}%",
                    p.coins,
                    100.0 * median(count_errors),
                    100.0 * median(sum_errors),
                    suppressed * 100 / 101
                );
            }
        }
    }
}

criterion_group!(benches, accuracy, root_combine);
criterion_main!(benches);
