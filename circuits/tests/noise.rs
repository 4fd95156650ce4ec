//! Binomial noise: the sampler against the binomial distribution, the noisy combine
//! against its native twin, and provers who would steer or drop the noise.

mod common;

use common::*;
use proptest::prelude::*;
use zkfabric_circuits::{
    aggregate::Partial,
    combine::{
        CombineCircuit, CombineOutput, CombineParams, CombineResult, CombineShape, GroupNoisy,
        NoiseParams,
    },
    evaluation::{GroupColumn, GroupDomain},
    noise::{noise, secret_commitment, NoiseSeed},
    snark, Fr,
};

const SECRET: u64 = 0x5ec2e7;

fn seed(nonce: u64) -> NoiseSeed {
    NoiseSeed {
        secret: Fr::from(SECRET),
        query: Fr::from(4242u64),
        nonce: Fr::from(nonce),
    }
}

fn binomial(n: u64, k: u64) -> f64 {
    (0..k).fold(1.0, |c, i| c * (n - i) as f64 / (i + 1) as f64)
}

#[test]
fn heads_follow_the_binomial_distribution() {
    // 8192 values of 16 coins: a chi-squared test against Binomial(16, 1/2), the tails
    // (expected fewer than 20 draws) merged into their neighbours.
    let (coins, draws) = (16u32, 8192u64);
    let mut seen = vec![0u64; coins as usize + 1];
    for position in 0..draws {
        seen[noise(&seed(7), position, coins) as usize] += 1;
    }
    let expected: Vec<f64> = (0..=coins as u64)
        .map(|k| draws as f64 * binomial(coins as u64, k) / 2f64.powi(coins as i32))
        .collect();
    let mut bins: Vec<(f64, f64)> = Vec::new();
    let mut pending = (0.0, 0.0);
    for (o, e) in seen.iter().zip(&expected) {
        pending = (pending.0 + *o as f64, pending.1 + e);
        if pending.1 >= 20.0 {
            bins.push(pending);
            pending = (0.0, 0.0);
        }
    }
    let last = bins.last_mut().unwrap();
    *last = (last.0 + pending.0, last.1 + pending.1);
    let chi2: f64 = bins.iter().map(|(o, e)| (o - e) * (o - e) / e).sum();
    let df = bins.len() - 1;
    // The 99.9% quantile of chi-squared with 10 degrees of freedom is 29.59; the test is
    // deterministic (fixed seeds), so it cannot flake.
    assert_eq!(df, 10);
    assert!(
        chi2 < 29.59,
        "chi-squared {chi2:.2} over {df} degrees of freedom"
    );

    // Across word boundaries (201 coins take two words) the mean and variance are those
    // of Binomial(201, 1/2), within four standard errors.
    let (coins, draws) = (201u32, 4096u64);
    let heads: Vec<f64> = (0..draws)
        .map(|p| f64::from(noise(&seed(8), p, coins)))
        .collect();
    let mean = heads.iter().sum::<f64>() / draws as f64;
    let variance = heads.iter().map(|h| (h - mean).powi(2)).sum::<f64>() / (draws - 1) as f64;
    let (true_mean, true_variance) = (f64::from(coins) / 2.0, f64::from(coins) / 4.0);
    assert!((mean - true_mean).abs() < 4.0 * (true_variance / draws as f64).sqrt());
    assert!((variance / true_variance - 1.0).abs() < 4.0 * (2.0 / draws as f64).sqrt());
}

#[test]
fn each_party_alone_changes_the_noise() {
    // A new nonce, or another secret, draws other coins.
    let base: Vec<u32> = (0..32).map(|p| noise(&seed(1), p, 64)).collect();
    let renonced: Vec<u32> = (0..32).map(|p| noise(&seed(2), p, 64)).collect();
    let other_secret = NoiseSeed {
        secret: Fr::from(SECRET + 1),
        ..seed(1)
    };
    let resecreted: Vec<u32> = (0..32).map(|p| noise(&other_secret, p, 64)).collect();
    assert_ne!(base, renonced);
    assert_ne!(base, resecreted);
    // The same seed draws the same coins: an answer repeated is the same answer.
    assert_eq!(
        base,
        (0..32).map(|p| noise(&seed(1), p, 64)).collect::<Vec<_>>()
    );
}

fn shape(coins: u32) -> CombineShape {
    CombineShape {
        inputs: 2,
        domain: GroupDomain {
            columns: vec![GroupColumn { width: 1, codes: 2 }],
        },
        sums: 1,
        output: CombineOutput::Noisy { coins },
    }
}

fn params(nonce: u64, threshold: u64) -> CombineParams {
    CombineParams {
        min_group_size: 1,
        threshold: 0,
        noise: Some(NoiseParams {
            seed: seed(nonce),
            count_step: 3,
            sum_steps: vec![100],
            threshold,
        }),
    }
}

/// Two chunks, each with rows of one group only.
fn partials(counts: [u64; 2], sums: [u128; 2]) -> Vec<Partial> {
    vec![
        Partial {
            sums: vec![vec![sums[0], 0]],
            counts: vec![counts[0], 0],
        },
        Partial {
            sums: vec![vec![0, sums[1]]],
            counts: vec![0, counts[1]],
        },
    ]
}

fn noisy(coins: u32, nonce: u64, threshold: u64) -> CombineCircuit {
    root(
        shape(coins),
        params(nonce, threshold),
        &partials([40, 2], [12_345, 678]),
    )
    .unwrap()
}

fn groups(c: &CombineCircuit) -> Vec<GroupNoisy> {
    match &c.instance.result {
        CombineResult::Noisy { groups, .. } => groups.clone(),
        other => panic!("not a noisy result: {other:?}"),
    }
}

fn with_groups(c: &CombineCircuit, groups: Vec<GroupNoisy>) -> CombineCircuit {
    let mut lying = c.clone();
    if let CombineResult::Noisy { groups: g, .. } = &mut lying.instance.result {
        *g = groups;
    }
    lying
}

#[test]
fn noisy_release_is_the_quotient_plus_the_drawn_heads() {
    let c = noisy(24, 5, 10);
    let heads = |p| u64::from(noise(&seed(5), p, 24));
    // Group 0: 40 rows in steps of 3 is 13, released above the threshold 10 whatever
    // the heads. Group 1: 2 rows is 0 steps, so only heads could lift it to 10.
    let g0 = GroupNoisy::Released {
        count: 13 + heads(0),
        sums: vec![123 + u128::from(heads(1) as u32)],
    };
    assert_eq!(groups(&c)[0], g0);
    let g1 = match heads(2) >= 10 {
        true => GroupNoisy::Released {
            count: heads(2),
            sums: vec![6 + u128::from(heads(3) as u32)],
        },
        false => GroupNoisy::Suppressed,
    };
    assert_eq!(groups(&c)[1], g1);
    assert!(satisfied(c.clone()));
    match &c.instance.result {
        CombineResult::Noisy {
            secret_commitment: s,
            ..
        } => assert_eq!(*s, secret_commitment(Fr::from(SECRET))),
        _ => unreachable!(),
    }
}

#[test]
fn a_prover_cannot_steer_drop_or_rescale_the_noise() {
    let c = noisy(24, 5, 10);
    let GroupNoisy::Released { count, sums } = groups(&c)[0].clone() else {
        panic!("group 0 is released")
    };
    // The released numbers, one off either way, or the group suppressed.
    for g0 in [
        GroupNoisy::Released {
            count: count + 1,
            sums: sums.clone(),
        },
        GroupNoisy::Released {
            count: count - 1,
            sums: sums.clone(),
        },
        GroupNoisy::Released {
            count,
            sums: vec![sums[0] + 1],
        },
        GroupNoisy::Released {
            count: 13,
            sums: vec![123],
        },
        GroupNoisy::Suppressed,
    ] {
        let lying = with_groups(&c, vec![g0.clone(), groups(&c)[1].clone()]);
        assert!(!satisfied(lying), "{g0:?}");
    }

    // Noise drawn from another secret than the committed one.
    let mut lying = c.clone();
    lying.noise_secret = Fr::from(SECRET + 1);
    assert!(!satisfied(lying));
    // Noise drawn for another nonce than the stated one: the statement names nonce 5,
    // the released values are those of nonce 6.
    let other = noisy(24, 6, 10);
    let lying = with_groups(&c, groups(&other));
    assert_ne!(groups(&c), groups(&other));
    assert!(!satisfied(lying));
    // Changed steps or threshold under the same release.
    for change in 0..3 {
        let mut lying = c.clone();
        if let CombineResult::Noisy {
            count_step,
            sum_steps,
            threshold,
            ..
        } = &mut lying.instance.result
        {
            match change {
                0 => *count_step = 2,
                1 => sum_steps[0] = 99,
                _ => *threshold = 100,
            }
        }
        assert!(!satisfied(lying), "change {change}");
    }
    // Fewer coins is another shape, whose digest the statement's first input fixes.
    assert_ne!(shape(24).digest(), shape(23).digest());
    assert_eq!(
        shape(24).description(),
        "combine/v4 inputs=2 groups=2/1 sums=1 output=noisy coins=24"
    );
}

#[test]
fn a_noisy_proof_binds_every_public_input() {
    let pk = snark::setup::<CombineCircuit, _>(&shape(8), &mut rng(1)).unwrap();
    let c = noisy(8, 5, 1);
    let inputs = c.instance.public_inputs(&shape(8)).unwrap();
    let proof = snark::prove(&pk, c, &mut rng(2)).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(8))]
    #[test]
    fn the_circuit_agrees_with_its_native_twin(
        counts in proptest::array::uniform2(0u64..5_000),
        sums in proptest::array::uniform2(0u128..10_000_000),
        coins in 1u32..260,
        nonce in any::<u64>(),
        threshold in 0u64..200,
    ) {
        let c = root(shape(coins), params(nonce, threshold), &partials(counts, sums)).unwrap();
        for (g, group) in groups(&c).into_iter().enumerate() {
            let heads = |p: u64| noise(&seed(nonce), p, coins);
            let count = counts[g] / 3 + u64::from(heads(2 * g as u64));
            let expected = match count >= threshold {
                true => GroupNoisy::Released {
                    count,
                    sums: vec![sums[g] / 100 + u128::from(heads(2 * g as u64 + 1))],
                },
                false => GroupNoisy::Suppressed,
            };
            prop_assert_eq!(group, expected);
        }
        prop_assert!(satisfied(c));
    }
}

#[test]
fn each_of_several_sums_draws_its_own_noise_at_its_own_step() {
    // Two measures: steps 100 and 7. Positions key the coins: per group the count, then
    // each sum, (M + 1) g + value.
    let shape = CombineShape {
        sums: 2,
        ..shape(24)
    };
    let params = CombineParams {
        noise: Some(NoiseParams {
            sum_steps: vec![100, 7],
            ..params(5, 10).noise.unwrap()
        }),
        ..params(5, 10)
    };
    let mut partials = partials([40, 2], [12_345, 678]);
    for (p, water) in partials.iter_mut().zip([[700, 0], [0, 70]]) {
        p.sums.push(water.to_vec());
    }
    let c = root(shape.clone(), params, &partials).unwrap();
    let heads = |p| u128::from(noise(&seed(5), p, 24));
    assert_eq!(
        groups(&c)[0],
        GroupNoisy::Released {
            count: 13 + heads(0) as u64,
            sums: vec![123 + heads(1), 100 + heads(2)],
        }
    );
    assert!(satisfied(c.clone()));
    // The second sum's noise taken from the first's position, or its step changed.
    let GroupNoisy::Released { count, sums } = groups(&c)[0].clone() else {
        unreachable!()
    };
    let lying = with_groups(
        &c,
        vec![
            GroupNoisy::Released {
                count,
                sums: vec![sums[0], 100 + heads(1)],
            },
            groups(&c)[1].clone(),
        ],
    );
    assert!(heads(1) == heads(2) || !satisfied(lying));
    let mut lying = c.clone();
    if let CombineResult::Noisy { sum_steps, .. } = &mut lying.instance.result {
        sum_steps[1] = 8;
    }
    assert!(!satisfied(lying));
    // Every public input, both steps included, is bound.
    let pk = snark::setup::<CombineCircuit, _>(&shape, &mut rng(3)).unwrap();
    let inputs = c.instance.public_inputs(&shape).unwrap();
    let proof = snark::prove(&pk, c, &mut rng(4)).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
}
