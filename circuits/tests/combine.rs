//! Combine circuit: release with minimum group size, predicates, subtotal trees.

mod common;

use ark_ff::One;
use common::*;
use proptest::prelude::*;
use zkfabric_circuits::{
    aggregate::Partial,
    combine::{
        empty_slot_commitment, CombineCircuit, CombineOutput, CombineParams, CombineResult,
        CombineShape, GroupAnswer, GroupRelease, Opening,
    },
    snark, Fr,
};

fn opening(sums: [u128; 2], counts: [u64; 2], blind: u64) -> Opening {
    Opening {
        partial: Partial {
            sums: vec![sums.to_vec()],
            counts: counts.to_vec(),
        },
        blind: Fr::from(blind),
    }
}

fn shape(output: CombineOutput) -> CombineShape {
    CombineShape {
        inputs: 4,
        groups: 2,
        sums: 1,
        output,
    }
}

fn params(k: u64, t: u64) -> CombineParams {
    CombineParams {
        min_group_size: k,
        threshold: t,
        noise: None,
    }
}

/// A combine over [`openings`] with output `output`, minimum group size `k` and
/// predicate threshold `t`.
fn combine(output: CombineOutput, k: u64, t: u64) -> CombineCircuit {
    CombineCircuit::new(shape(output), params(k, t), openings(), Fr::from(77u8)).unwrap()
}

/// Group 0 totals 10 rows, group 1 totals 9.
fn openings() -> Vec<Opening> {
    vec![
        opening([1000, 40], [6, 5], 11),
        opening([500, 60], [4, 4], 12),
        opening([0, 0], [0, 0], 13),
    ]
}

#[test]
fn release_suppresses_groups_below_k_exactly_at_the_edge() {
    let c = combine(CombineOutput::Release, 10, 0);
    // Count exactly k is released; k - 1 is suppressed with nothing else about it.
    assert_eq!(
        c.instance.result,
        CombineResult::Release {
            min_group_size: 10,
            groups: vec![
                GroupRelease::Released {
                    count: 10,
                    sums: vec![1500]
                },
                GroupRelease::Suppressed
            ],
        }
    );
    assert_eq!(
        c.instance.partial_commitments[3],
        empty_slot_commitment(&shape(CombineOutput::Release))
    );
    assert!(satisfied(c.clone()));

    // Claiming the suppressed group's real numbers, or suppressing a large group, fails.
    for result in [
        vec![
            GroupRelease::Released {
                count: 10,
                sums: vec![1500],
            },
            GroupRelease::Released {
                count: 9,
                sums: vec![100],
            },
        ],
        vec![GroupRelease::Suppressed, GroupRelease::Suppressed],
        vec![
            GroupRelease::Released {
                count: 10,
                sums: vec![1501],
            },
            GroupRelease::Suppressed,
        ],
        vec![
            GroupRelease::Released {
                count: 11,
                sums: vec![1500],
            },
            GroupRelease::Suppressed,
        ],
    ] {
        let mut lying = c.clone();
        lying.instance.result = CombineResult::Release {
            min_group_size: 10,
            groups: result.clone(),
        };
        assert!(!satisfied(lying), "{result:?}");
    }
    // Lowering k in the statement without changing the release is caught too.
    let mut lying = c.clone();
    lying.instance.result = CombineResult::Release {
        min_group_size: 9,
        groups: vec![
            GroupRelease::Released {
                count: 10,
                sums: vec![1500],
            },
            GroupRelease::Suppressed,
        ],
    };
    assert!(!satisfied(lying));
}

#[test]
fn openings_must_match_their_commitments() {
    let c = combine(CombineOutput::Release, 1, 0);
    let mut lying = c.clone();
    lying.openings[1].partial.sums[0][0] += 1;
    assert!(!satisfied(lying));
    let mut lying = c.clone();
    lying.openings[0].blind += Fr::one();
    assert!(!satisfied(lying));
    // A padded slot opens only to zeros.
    let mut lying = c;
    lying.openings[3].partial.counts[1] = 5;
    assert!(!satisfied(lying));
}

#[test]
fn proofs_of_every_output_bind_every_public_input() {
    let mut rng = rng(3);
    for (output, k, t) in [
        (CombineOutput::Release, 10, 0),
        (CombineOutput::Predicate, 5, 1000),
        (CombineOutput::Subtotal, 0, 0),
    ] {
        let pk = snark::setup::<CombineCircuit, _>(&shape(output), &mut rng).unwrap();
        let c = combine(output, k, t);
        let inputs = c.instance.public_inputs(&c.shape).unwrap();
        let proof = snark::prove(&pk, c, &mut rng).unwrap();
        assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
    }
}

/// A predicate combine over [`openings`] and the bits it releases.
fn predicate(k: u64, t: u64) -> (CombineCircuit, Vec<GroupAnswer>) {
    let c = combine(CombineOutput::Predicate, k, t);
    let CombineResult::Predicate { groups, .. } = c.instance.result.clone() else {
        panic!("a predicate result")
    };
    (c, groups)
}

#[test]
fn predicate_releases_one_bit_per_group() {
    // Sums 1500 and 100 against t = 1000: group 0 holds, group 1 does not.
    let (c, groups) = predicate(5, 1000);
    assert_eq!(
        groups,
        vec![GroupAnswer::Holds(true), GroupAnswer::Holds(false)]
    );
    assert!(satisfied(c.clone()));
    let mut lying = c;
    lying.instance.result = CombineResult::Predicate {
        min_group_size: 5,
        threshold: 1000,
        groups: vec![GroupAnswer::Holds(true), GroupAnswer::Holds(true)],
    };
    assert!(!satisfied(lying));
    // The edge t = sum holds.
    assert_eq!(predicate(5, 1500).1[0], GroupAnswer::Holds(true));
    assert_eq!(predicate(5, 1501).1[0], GroupAnswer::Holds(false));
    // Small groups are suppressed in predicate mode too.
    let (c, groups) = predicate(10, 1);
    assert_eq!(
        groups,
        vec![GroupAnswer::Holds(true), GroupAnswer::Suppressed]
    );
    assert!(satisfied(c));
}

#[test]
fn a_tree_of_combines_covers_more_chunks_than_one_combine() {
    let mut rng = rng(4);
    let sub_shape = CombineShape {
        inputs: 2,
        groups: 2,
        sums: 1,
        output: CombineOutput::Subtotal,
    };
    let root_shape = CombineShape {
        inputs: 2,
        groups: 2,
        sums: 1,
        output: CombineOutput::Release,
    };
    let sub_pk = snark::setup::<CombineCircuit, _>(&sub_shape, &mut rng).unwrap();
    let root_pk = snark::setup::<CombineCircuit, _>(&root_shape, &mut rng).unwrap();
    let leaves = [
        opening([10, 1], [3, 1], 1),
        opening([20, 2], [4, 1], 2),
        opening([30, 3], [5, 1], 3),
        opening([40, 4], [6, 1], 4),
    ];
    let mut subtotals = Vec::new();
    for (i, pair) in leaves.chunks(2).enumerate() {
        let blind = Fr::from(100 + i as u64);
        let c = CombineCircuit::new(sub_shape, params(0, 0), pair.to_vec(), blind).unwrap();
        let inputs = c.instance.public_inputs(&c.shape).unwrap();
        let proof = snark::prove(&sub_pk, c, &mut rng).unwrap();
        assert!(snark::verify(sub_pk.verifying_key(), &inputs, &proof).unwrap());
        let total = Partial {
            sums: vec![vec![
                pair[0].partial.sums[0][0] + pair[1].partial.sums[0][0],
                pair[0].partial.sums[0][1] + pair[1].partial.sums[0][1],
            ]],
            counts: vec![
                pair[0].partial.counts[0] + pair[1].partial.counts[0],
                pair[0].partial.counts[1] + pair[1].partial.counts[1],
            ],
        };
        assert_eq!(
            inputs[3],
            total.commit(blind),
            "the subtotal is the committed total"
        );
        subtotals.push(Opening {
            partial: total,
            blind,
        });
    }
    let root = CombineCircuit::new(root_shape, params(10, 0), subtotals, Fr::from(0u8)).unwrap();
    assert_eq!(
        root.instance.result,
        CombineResult::Release {
            min_group_size: 10,
            groups: vec![
                GroupRelease::Released {
                    count: 18,
                    sums: vec![100]
                },
                GroupRelease::Suppressed
            ],
        }
    );
    let inputs = root.instance.public_inputs(&root.shape).unwrap();
    let proof = snark::prove(&root_pk, root, &mut rng).unwrap();
    assert!(snark::verify(root_pk.verifying_key(), &inputs, &proof).unwrap());
}

/// The same statement with its first group's released value changed.
fn altered(result: &CombineResult) -> CombineResult {
    let mut result = result.clone();
    match &mut result {
        CombineResult::Release { groups, .. } => {
            groups[0] = match groups[0].clone() {
                GroupRelease::Suppressed => GroupRelease::Released {
                    count: 0,
                    sums: vec![0],
                },
                GroupRelease::Released { count, sums } => GroupRelease::Released {
                    count,
                    sums: vec![sums[0] + 1],
                },
            }
        }
        CombineResult::Predicate { groups, .. } => {
            groups[0] = match groups[0] {
                GroupAnswer::Suppressed => GroupAnswer::Holds(false),
                GroupAnswer::Holds(h) => GroupAnswer::Holds(!h),
            }
        }
        CombineResult::Noisy { .. } => unreachable!("noisy combines: tests/noise.rs"),
        CombineResult::Subtotal { commitment } => *commitment += Fr::one(),
    }
    result
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// The circuit accepts the native twin's output, and not a changed one.
    #[test]
    fn circuit_agrees_with_native_twin(
        partials in prop::collection::vec(
            (prop::collection::vec(0u128..1_000_000, 2), prop::collection::vec(0u64..40, 2)),
            0..=4,
        ),
        k in 1u64..60,
        t in 0u64..2_000_000,
        output in 0usize..3,
    ) {
        let output = [CombineOutput::Release, CombineOutput::Predicate, CombineOutput::Subtotal][output];
        let openings = partials
            .into_iter()
            .enumerate()
            .map(|(i, (sums, counts))| Opening { partial: Partial { sums: vec![sums], counts }, blind: Fr::from(i as u64 + 1) })
            .collect();
        let c = CombineCircuit::new(shape(output), params(k, t), openings, Fr::from(9u8)).unwrap();
        prop_assert!(satisfied(c.clone()));
        let mut wrong = c.clone();
        wrong.instance.result = altered(&c.instance.result);
        prop_assert!(!satisfied(wrong));
    }
}

#[test]
fn verifiers_refuse_statements_of_another_shape() {
    let c = combine(CombineOutput::Release, 10, 0);
    assert!(c
        .instance
        .public_inputs(&shape(CombineOutput::Predicate))
        .is_err());
    assert!(c
        .instance
        .public_inputs(&CombineShape {
            inputs: 3,
            groups: 2,
            sums: 1,
            output: CombineOutput::Release
        })
        .is_err());
    assert!(c
        .instance
        .public_inputs(&CombineShape {
            inputs: 4,
            groups: 3,
            sums: 1,
            output: CombineOutput::Release
        })
        .is_err());
}

#[test]
fn a_minimum_group_size_of_zero_is_refused_and_cannot_be_proven() {
    // Natively: no release or predicate under k = 0.
    for output in [CombineOutput::Release, CombineOutput::Predicate] {
        let refused = CombineCircuit::new(shape(output), params(0, 1), openings(), Fr::from(7u8));
        assert!(
            refused.is_err_and(|e| e.to_string().contains("minimum group size 0")),
            "{output:?}"
        );
    }
    // In the circuit: a dishonest node answers "does any row meet the condition?" over
    // an empty group with k = 0, hoping for "holds" over zero rows. With every opening
    // zero, the only statement k = 0 could make is unsatisfiable.
    let empty = vec![opening([0, 0], [0, 0], 5)];
    let c = CombineCircuit::new(
        shape(CombineOutput::Predicate),
        params(1, 0),
        empty,
        Fr::from(1u8),
    )
    .unwrap();
    assert_eq!(
        c.instance.result,
        CombineResult::Predicate {
            min_group_size: 1,
            threshold: 0,
            groups: vec![GroupAnswer::Suppressed, GroupAnswer::Suppressed],
        },
        "a group of no rows is suppressed, never true"
    );
    assert!(satisfied(c.clone()));
    let mut lying = c;
    lying.instance.result = CombineResult::Predicate {
        min_group_size: 0,
        threshold: 0,
        groups: vec![GroupAnswer::Holds(true), GroupAnswer::Holds(true)],
    };
    assert!(!satisfied(lying));
}

#[test]
fn a_key_of_one_combine_shape_verifies_no_statement_of_another() {
    // Release and Predicate roots over one group have the same number of public inputs
    // (K + 4). Both keys are trusted; the proof of a suppressed release must not verify
    // as the predicate "holds" under the predicate key, nor under its own key.
    let mut rng = rng(8);
    let one_group = |output| CombineShape {
        inputs: 2,
        groups: 1,
        sums: 1,
        output,
    };
    let (release, predicate) = (
        one_group(CombineOutput::Release),
        one_group(CombineOutput::Predicate),
    );
    let release_pk = snark::setup::<CombineCircuit, _>(&release, &mut rng).unwrap();
    let predicate_pk = snark::setup::<CombineCircuit, _>(&predicate, &mut rng).unwrap();
    let leaf = Opening {
        partial: Partial {
            sums: vec![vec![3]],
            counts: vec![3],
        },
        blind: Fr::from(3u8),
    };
    let c = CombineCircuit::new(release, params(10, 0), vec![leaf], Fr::from(0u8)).unwrap();
    let honest = c.instance.public_inputs(&release).unwrap();
    let proof = snark::prove(&release_pk, c.clone(), &mut rng).unwrap();
    assert!(snark::verify(release_pk.verifying_key(), &honest, &proof).unwrap());
    // The relabelled statement: same commitments, "k = 10, suppressed? no, holds? yes".
    let relabelled = zkfabric_circuits::combine::CombineInstance {
        partial_commitments: c.instance.partial_commitments.clone(),
        result: CombineResult::Predicate {
            min_group_size: 10,
            threshold: 1,
            groups: vec![GroupAnswer::Holds(true)],
        },
    }
    .public_inputs(&predicate)
    .unwrap();
    assert_eq!(relabelled.len(), honest.len(), "the layouts are the same");
    assert_ne!(relabelled[0], honest[0], "the shape digests differ");
    for vk in [release_pk.verifying_key(), predicate_pk.verifying_key()] {
        assert!(!snark::verify(vk, &relabelled, &proof).unwrap());
    }
}

#[test]
fn several_sums_are_released_together_and_each_is_bound() {
    // Two measures per group: kWh and water. Group 0 totals 10 rows, group 1 totals 9.
    let shape = CombineShape {
        inputs: 2,
        groups: 2,
        sums: 2,
        output: CombineOutput::Release,
    };
    assert_eq!(
        shape.description(),
        "combine/v3 inputs=2 groups=2 sums=2 output=release"
    );
    let leaf = |kwh: [u128; 2], water: [u128; 2], counts: [u64; 2], blind: u64| Opening {
        partial: Partial {
            sums: vec![kwh.to_vec(), water.to_vec()],
            counts: counts.to_vec(),
        },
        blind: Fr::from(blind),
    };
    let leaves = vec![
        leaf([1000, 40], [7, 1], [6, 5], 1),
        leaf([500, 60], [3, 2], [4, 4], 2),
    ];
    let c = CombineCircuit::new(shape, params(10, 0), leaves.clone(), Fr::from(0u8)).unwrap();
    assert_eq!(
        c.instance.result,
        CombineResult::Release {
            min_group_size: 10,
            groups: vec![
                GroupRelease::Released {
                    count: 10,
                    sums: vec![1500, 10]
                },
                GroupRelease::Suppressed
            ],
        }
    );
    let mut rng = rng(9);
    let pk = snark::setup::<CombineCircuit, _>(&shape, &mut rng).unwrap();
    let inputs = c.instance.public_inputs(&shape).unwrap();
    assert_eq!(inputs.len(), 1 + 2 + 1 + 2 * (2 + 2));
    let proof = snark::prove(&pk, c.clone(), &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
    // The two sums swapped, one sum left out, or a third one added: refused.
    for sums in [vec![10, 1500], vec![1500], vec![1500, 10, 0]] {
        let mut lying = c.clone();
        lying.instance.result = CombineResult::Release {
            min_group_size: 10,
            groups: vec![
                GroupRelease::Released { count: 10, sums },
                GroupRelease::Suppressed,
            ],
        };
        match lying.instance.public_inputs(&shape) {
            Ok(_) => assert!(!satisfied(lying)),
            Err(e) => assert!(e.to_string().contains("sums"), "{e}"),
        }
    }
    // A partial whose second measure differs from the committed one is caught.
    let mut lying = c;
    lying.openings[0].partial.sums[1][0] += 1;
    assert!(!satisfied(lying));
    // A predicate counts one condition: two sums is not its shape.
    let predicate = CombineShape {
        output: CombineOutput::Predicate,
        ..shape
    };
    assert!(CombineCircuit::new(predicate, params(1, 1), leaves, Fr::from(0u8)).is_err());
}
