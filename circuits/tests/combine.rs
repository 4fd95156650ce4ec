//! Combine circuit: the root's release with minimum group size, predicates, the
//! random-evaluation check against the chunks' shares, subtotal trees.

mod common;

use ark_ff::One;
use common::*;
use proptest::prelude::*;
use zkfabric_circuits::{
    aggregate::Partial,
    combine::{
        empty_slot_commitment, Closing, CombineCircuit, CombineOutput, CombineParams,
        CombineResult, CombineShape, GroupAnswer, GroupRelease, Opening,
    },
    evaluation::{GroupColumn, GroupDomain},
    snark, Fr,
};

fn partial(sums: [u128; 2], counts: [u64; 2]) -> Partial {
    Partial {
        sums: vec![sums.to_vec()],
        counts: counts.to_vec(),
    }
}

/// Two groups (codes 0 and 1 of a 1-bit column).
fn two_groups() -> GroupDomain {
    GroupDomain {
        columns: vec![GroupColumn { width: 1, codes: 2 }],
    }
}

fn shape(output: CombineOutput) -> CombineShape {
    match output {
        CombineOutput::Subtotal => CombineShape::subtotal(4),
        output => CombineShape {
            inputs: 4,
            domain: two_groups(),
            sums: 1,
            output,
        },
    }
}

fn params(k: u64, t: u64) -> CombineParams {
    CombineParams {
        min_group_size: k,
        threshold: t,
        noise: None,
    }
}

/// A combine over [`partials`] with output `output`, minimum group size `k` and
/// predicate threshold `t`: a root opening their sum, or a subtotal of their shares.
fn combine(output: CombineOutput, k: u64, t: u64) -> CombineCircuit {
    combine_over(output, k, t, &partials())
}

fn combine_over(output: CombineOutput, k: u64, t: u64, partials: &[Partial]) -> CombineCircuit {
    match output {
        CombineOutput::Subtotal => {
            let (openings, _) = shares(&shape(CombineOutput::Release), partials);
            let closing = Closing::Subtotal {
                blind: Fr::from(9u8),
            };
            CombineCircuit::new(shape(output), params(k, t), openings, closing).unwrap()
        }
        output => root(shape(output), params(k, t), partials).unwrap(),
    }
}

/// Group 0 totals 10 rows, group 1 totals 9.
fn partials() -> Vec<Partial> {
    vec![
        partial([1000, 40], [6, 5]),
        partial([500, 60], [4, 4]),
        partial([0, 0], [0, 0]),
    ]
}

/// `c` (a release) with its totals replaced by `totals`, and the release they make: committed anew when `recommit` (a prover choosing totals after the
/// challenge), else under the old commitment. Only the evaluation check (or the
/// commitment) can fail.
fn with_totals(c: &CombineCircuit, totals: Partial, recommit: bool) -> CombineCircuit {
    let mut lying = c.clone();
    let CombineResult::Release { min_group_size, .. } = c.instance.result else {
        panic!("a release")
    };
    lying.instance.result = root(
        c.shape.clone(),
        params(min_group_size, 0),
        std::slice::from_ref(&totals),
    )
    .unwrap()
    .instance
    .result;
    let Closing::Root { blind, .. } = c.closing else {
        panic!("a root")
    };
    if recommit {
        lying.instance.totals.as_mut().unwrap().commitment = totals.commit(blind);
    }
    if let Closing::Root { totals: t, .. } = &mut lying.closing {
        *t = totals;
    }
    lying
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
    assert_eq!(c.instance.input_commitments[3], empty_slot_commitment());
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
    lying.openings[1].evaluation += Fr::one();
    assert!(!satisfied(lying));
    let mut lying = c.clone();
    lying.openings[0].blind += Fr::one();
    assert!(!satisfied(lying));
    // A padded slot opens only to zero.
    let mut lying = c.clone();
    lying.openings[3].evaluation = Fr::from(5u8);
    assert!(!satisfied(lying));
    // The totals must open their commitment.
    let Closing::Root { totals, .. } = c.closing.clone() else {
        panic!("a root")
    };
    let mut more = totals.clone();
    more.counts[1] += 1;
    assert!(!satisfied(with_totals(&c, more, false)));
}

#[test]
fn totals_other_than_the_chunks_do_not_evaluate_to_their_shares() {
    // The attacks the random-evaluation argument answers, each with the totals committed
    // anew (so the commitment opens) but the challenge the chunks were proven at.
    let c = combine(CombineOutput::Release, 1, 0);
    assert!(satisfied(c.clone()));
    let Closing::Root { totals, .. } = c.closing.clone() else {
        panic!("a root")
    };
    assert!(
        satisfied(with_totals(&c, totals.clone(), true)),
        "the true totals, committed anew, still satisfy"
    );
    let mut lies = Vec::new();
    // A row moved to another group, with its value.
    let mut moved = totals.clone();
    moved.counts[0] -= 1;
    moved.counts[1] += 1;
    moved.sums[0][0] -= 40;
    moved.sums[0][1] += 40;
    lies.push(("a row moved to another group", moved));
    // A group's total changed: its count, its sum.
    let mut count = totals.clone();
    count.counts[1] += 1;
    lies.push(("a count changed", count));
    let mut sum = totals.clone();
    sum.sums[0][0] -= 1;
    lies.push(("a sum changed", sum));
    // The two groups swapped, a count and a sum swapped.
    let mut swapped = totals.clone();
    swapped.counts.swap(0, 1);
    swapped.sums[0].swap(0, 1);
    lies.push(("groups swapped", swapped));
    let mut crossed = totals.clone();
    crossed.counts[1] = totals.sums[0][1] as u64;
    crossed.sums[0][1] = u128::from(totals.counts[1]);
    lies.push(("count and sum crossed", crossed));
    for (what, lie) in lies {
        assert!(!satisfied(with_totals(&c, lie, true)), "{what}");
    }
}

#[test]
fn a_vector_changed_after_the_challenge_fails_at_the_root_or_at_the_chunks() {
    // The prover proves its chunks at `r`, then commits to other totals. Kept at `r`, the
    // root is unsatisfied (above); with the challenge recomputed from the new commitment
    // the root statement names another `r` than every chunk proof was made at, so the
    // chunk statements a verifier recomputes differ from the proven ones.
    let c = combine(CombineOutput::Release, 1, 0);
    let Closing::Root { totals, blind, .. } = c.closing.clone() else {
        panic!("a root")
    };
    let mut lie = totals.clone();
    lie.counts[0] += 1;
    let mut lying = with_totals(&c, lie.clone(), true);
    let other_r = challenge() + Fr::one();
    lying.instance.totals.as_mut().unwrap().challenge = other_r;
    if let Closing::Root { challenge: r, .. } = &mut lying.closing {
        *r = other_r;
    }
    // The chunk shares were evaluated at the old challenge, so even the new one fails.
    assert!(!satisfied(lying));
    assert_ne!(lie.commit(blind), totals.commit(blind));
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
    let sub_shape = CombineShape::subtotal(2);
    let root_shape = CombineShape {
        inputs: 2,
        domain: two_groups(),
        sums: 1,
        output: CombineOutput::Release,
    };
    let sub_pk = snark::setup::<CombineCircuit, _>(&sub_shape, &mut rng).unwrap();
    let root_pk = snark::setup::<CombineCircuit, _>(&root_shape, &mut rng).unwrap();
    let leaves = [
        partial([10, 1], [3, 1]),
        partial([20, 2], [4, 1]),
        partial([30, 3], [5, 1]),
        partial([40, 4], [6, 1]),
    ];
    let (shares, totals) = shares(&root_shape, &leaves);
    let mut subtotals = Vec::new();
    for (i, pair) in shares.chunks(2).enumerate() {
        let blind = Fr::from(100 + i as u64);
        let c = CombineCircuit::new(
            sub_shape.clone(),
            params(0, 0),
            pair.to_vec(),
            Closing::Subtotal { blind },
        )
        .unwrap();
        let inputs = c.instance.public_inputs(&c.shape).unwrap();
        let evaluation = c.sum;
        assert_eq!(evaluation, pair[0].evaluation + pair[1].evaluation);
        let proof = snark::prove(&sub_pk, c.clone(), &mut rng).unwrap();
        assert!(snark::verify(sub_pk.verifying_key(), &inputs, &proof).unwrap());
        assert_eq!(
            inputs[3],
            zkfabric_circuits::evaluation::commit(evaluation, blind),
            "the subtotal is the committed sum"
        );
        // A subtotal other than the sum is unsatisfied.
        let mut lying = c.clone();
        lying.instance.result = CombineResult::Subtotal {
            commitment: zkfabric_circuits::evaluation::commit(evaluation + Fr::one(), blind),
        };
        assert!(!satisfied(lying));
        subtotals.push(Opening { evaluation, blind });
    }
    let root = CombineCircuit::new(
        root_shape,
        params(10, 0),
        subtotals,
        Closing::Root {
            totals,
            blind: Fr::from(5u8),
            challenge: challenge(),
        },
    )
    .unwrap();
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
        let partials: Vec<Partial> = partials
            .into_iter()
            .map(|(sums, counts)| Partial { sums: vec![sums], counts })
            .collect();
        let c = combine_over(output, k, t, &partials);
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
            ..shape(CombineOutput::Release)
        })
        .is_err());
    assert!(c
        .instance
        .public_inputs(&CombineShape {
            domain: GroupDomain {
                columns: vec![GroupColumn { width: 2, codes: 3 }]
            },
            ..shape(CombineOutput::Release)
        })
        .is_err());
    assert!(c
        .instance
        .public_inputs(&shape(CombineOutput::Subtotal))
        .is_err());
}

#[test]
fn a_minimum_group_size_of_zero_is_refused_and_cannot_be_proven() {
    // Natively: no release or predicate under k = 0.
    for output in [CombineOutput::Release, CombineOutput::Predicate] {
        let refused = root(shape(output), params(0, 1), &partials());
        assert!(
            refused.is_err_and(|e| e.to_string().contains("minimum group size 0")),
            "{output:?}"
        );
    }
    // In the circuit: a dishonest node answers "does any row meet the condition?" over
    // an empty group with k = 0, hoping for "holds" over zero rows. With every opening
    // zero, the only statement k = 0 could make is unsatisfiable.
    let c = combine_over(CombineOutput::Predicate, 1, 0, &[partial([0, 0], [0, 0])]);
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
        domain: GroupDomain::default(),
        sums: 1,
        output,
    };
    let (release, predicate) = (
        one_group(CombineOutput::Release),
        one_group(CombineOutput::Predicate),
    );
    let release_pk = snark::setup::<CombineCircuit, _>(&release, &mut rng).unwrap();
    let predicate_pk = snark::setup::<CombineCircuit, _>(&predicate, &mut rng).unwrap();
    let leaf = Partial {
        sums: vec![vec![3]],
        counts: vec![3],
    };
    let c = root(release.clone(), params(10, 0), &[leaf]).unwrap();
    let honest = c.instance.public_inputs(&release).unwrap();
    let proof = snark::prove(&release_pk, c.clone(), &mut rng).unwrap();
    assert!(snark::verify(release_pk.verifying_key(), &honest, &proof).unwrap());
    // The relabelled statement: same commitments, "k = 10, suppressed? no, holds? yes".
    let relabelled = zkfabric_circuits::combine::CombineInstance {
        input_commitments: c.instance.input_commitments.clone(),
        totals: c.instance.totals,
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
        domain: two_groups(),
        sums: 2,
        output: CombineOutput::Release,
    };
    assert_eq!(
        shape.description(),
        "combine/v4 inputs=2 groups=2/1 sums=2 output=release"
    );
    let leaf = |kwh: [u128; 2], water: [u128; 2], counts: [u64; 2]| Partial {
        sums: vec![kwh.to_vec(), water.to_vec()],
        counts: counts.to_vec(),
    };
    let leaves = vec![
        leaf([1000, 40], [7, 1], [6, 5]),
        leaf([500, 60], [3, 2], [4, 4]),
    ];
    let c = root(shape.clone(), params(10, 0), &leaves).unwrap();
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
    assert_eq!(inputs.len(), 1 + 2 + 2 + 1 + 2 * (2 + 2));
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
    // Totals whose second measure differs from the chunks' are caught, committed anew or
    // not; so are the two measures swapped.
    let Closing::Root { totals, .. } = c.closing.clone() else {
        panic!("a root")
    };
    let mut changed = totals.clone();
    changed.sums[1][0] += 1;
    let mut swapped = totals.clone();
    swapped.sums.swap(0, 1);
    for lie in [changed, swapped] {
        assert!(!satisfied(with_totals(&c, lie.clone(), true)));
        assert!(!satisfied(with_totals(&c, lie, false)));
    }
    // A predicate counts one condition: two sums is not its shape.
    let predicate = CombineShape {
        output: CombineOutput::Predicate,
        ..shape
    };
    assert!(root(predicate, params(1, 1), &leaves).is_err());
}
