//! The random-evaluation argument end to end: real chunk proofs' shares at a challenge
//! drawn after the totals, opened by the root; keys outside the domain; the edges of G.

mod common;

use ark_ff::One;
use common::*;
use zkfabric_circuits::{
    aggregate::{evaluate, AggregateCircuit, AggregateQuery, AggregateShape, Grouping, Partial},
    combine::{
        challenge, Closing, CombineCircuit, CombineOutput, CombineParams, CombineResult,
        CombineShape, Opening,
    },
    evaluation::{add_tallies, GroupColumn, GroupDomain, Tallies, MAX_SLOTS},
    Fr,
};

/// `GROUP BY district` with no filter on district: every district's rows count.
fn by_district() -> (AggregateShape, AggregateQuery) {
    let mut shape = shape();
    shape.filters.truncate(1);
    shape.filters[0] = zkfabric_circuits::aggregate::FilterShape::Range { column: HOUR };
    let mut query = default_query();
    query.filters = vec![zkfabric_circuits::aggregate::FilterParams::Range { lo: 0, hi: 31 }];
    (shape, query)
}

fn root_shape(codes: u64) -> CombineShape {
    CombineShape {
        inputs: 2,
        domain: GroupDomain {
            columns: vec![GroupColumn { width: 3, codes }],
        },
        sums: 1,
        output: CombineOutput::Release,
    }
}

/// The node's steps over `chunks`: tallies, totals (committed), the challenge, chunk
/// circuits at it, the root. `None` when a selected row's key has no slot.
fn answer(
    chunks: &[zkfabric_circuits::commitment::Chunk],
    root_shape: &CombineShape,
) -> Option<(Vec<AggregateCircuit>, CombineCircuit)> {
    let (shape, query) = by_district();
    let mut all = Tallies::new();
    for chunk in chunks {
        add_tallies(&mut all, &evaluate(&shape, &query, chunk).unwrap());
    }
    let totals = Partial::from_tallies(&root_shape.domain, 1, &all).ok()?;
    let blind = Fr::from(31u8);
    let commitments: Vec<Fr> = chunks.iter().map(|c| c.commitment(&shape.layout)).collect();
    let r = challenge(
        &shape,
        &query,
        root_shape,
        totals.commit(blind),
        &commitments,
    );
    let circuits: Vec<AggregateCircuit> = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            AggregateCircuit::new(
                shape.clone(),
                query.clone(),
                chunk.clone(),
                r,
                Fr::from(i as u64 + 1),
            )
            .unwrap()
        })
        .collect();
    let openings = circuits
        .iter()
        .map(|c| Opening {
            evaluation: c.share,
            blind: c.blind,
        })
        .collect();
    let params = CombineParams {
        min_group_size: 1,
        threshold: 0,
        noise: None,
    };
    let closing = Closing::Root {
        totals,
        blind,
        challenge: r,
    };
    let root = CombineCircuit::new(root_shape.clone(), params, openings, closing).ok()?;
    Some((circuits, root))
}

fn second_chunk() -> zkfabric_circuits::commitment::Chunk {
    chunk(&[
        (0, 3, 40, 0b010, 10),
        (2, 8, 41, 0b010, 20),
        (5, 23, 42, 0b011, 30),
    ])
}

#[test]
fn chunk_shares_at_the_challenge_open_the_root_over_the_true_totals() {
    let chunks = [default_chunk(), second_chunk()];
    let (circuits, root) = answer(&chunks, &root_shape(8)).expect("every key has a slot");
    for c in &circuits {
        assert!(satisfied(c.clone()));
    }
    assert!(satisfied(root.clone()));
    // The chunks' inputs to the root are the commitments their proofs output.
    for (c, commitment) in circuits.iter().zip(&root.instance.input_commitments) {
        assert_eq!(c.instance.evaluation_commitment, *commitment);
    }
    // The challenge binds the totals' commitment, the query and every chunk commitment.
    let (shape, query) = by_district();
    let claim = root.instance.totals.unwrap();
    let commitments: Vec<Fr> = chunks.iter().map(|c| c.commitment(&shape.layout)).collect();
    let r = challenge(&shape, &query, &root.shape, claim.commitment, &commitments);
    assert_eq!(r, claim.challenge);
    let reordered = [commitments[1], commitments[0]];
    let mut other_query = query.clone();
    other_query.purpose = 2;
    for other in [
        challenge(
            &shape,
            &query,
            &root.shape,
            claim.commitment + Fr::one(),
            &commitments,
        ),
        challenge(&shape, &query, &root.shape, claim.commitment, &reordered),
        challenge(
            &shape,
            &query,
            &root.shape,
            claim.commitment,
            &commitments[..1],
        ),
        challenge(
            &shape,
            &other_query,
            &root.shape,
            claim.commitment,
            &commitments,
        ),
        challenge(
            &shape,
            &query,
            &root_shape(7),
            claim.commitment,
            &commitments,
        ),
    ] {
        assert_ne!(other, r);
    }
}

#[test]
fn a_selected_row_whose_key_has_no_slot_cannot_be_left_out() {
    // Districts 0..6 are groups, and a selected row is in district 7. No honest totals
    // exist (its key has no slot), and totals that leave it out do not evaluate to the
    // chunks' shares.
    let outside = chunk(&[(7, 8, 30, 0b010, 500), (2, 8, 31, 0b010, 40)]);
    let chunks = [default_chunk(), outside];
    assert!(answer(&chunks, &root_shape(6)).is_none());
    let (_, root) = answer(&chunks, &root_shape(8)).unwrap();
    let Closing::Root {
        totals,
        blind,
        challenge,
    } = root.closing.clone()
    else {
        panic!("a root")
    };
    // The same totals without district 7 and 6, over six slots.
    let six = root_shape(6);
    let dropped = Partial {
        sums: vec![totals.sums[0][..6].to_vec()],
        counts: totals.counts[..6].to_vec(),
    };
    let mut lying = CombineCircuit::new(
        six.clone(),
        CombineParams {
            min_group_size: 1,
            threshold: 0,
            noise: None,
        },
        vec![Opening {
            evaluation: dropped.evaluate(&six.domain, challenge),
            blind: Fr::from(1u8),
        }],
        Closing::Root {
            totals: dropped,
            blind,
            challenge,
        },
    )
    .unwrap();
    assert!(
        satisfied(lying.clone()),
        "consistent with shares of its own"
    );
    // With the real chunks' shares as its inputs, it is not.
    lying.openings = root.openings.clone();
    lying.instance.input_commitments = root.instance.input_commitments.clone();
    assert!(!satisfied(lying));
}

#[test]
fn domains_pack_keys_as_the_chunk_circuit_does_and_read_back() {
    let domain = GroupDomain {
        columns: vec![
            GroupColumn {
                width: 4,
                codes: 12,
            },
            GroupColumn {
                width: 5,
                codes: 24,
            },
            GroupColumn { width: 3, codes: 5 },
        ],
    };
    domain.validate().unwrap();
    assert_eq!(domain.slots(), 1440);
    assert_eq!(domain.key_width(), 12);
    assert_eq!(domain.description(), "12/4x24/5x5/3");
    assert_eq!(GroupDomain::parse("12/4x24/5x5/3").unwrap(), domain);
    // Slot order: the first column slowest; keys pack codes, the first column highest.
    assert_eq!(domain.codes(0), [0, 0, 0]);
    assert_eq!(domain.codes(1439), [11, 23, 4]);
    assert_eq!(domain.codes(5 * 24 + 5 + 2), [1, 1, 2]);
    assert_eq!(domain.key(5 * 24 + 5 + 2), (1 << 8) | (1 << 3) | 2);
    let keys: Vec<u64> = (0..domain.slots()).map(|g| domain.key(g)).collect();
    assert!(keys.windows(2).all(|w| w[0] < w[1]), "keys sort as slots");
    let mut shape = shape();
    shape.group_by = vec![Grouping::Column(DISTRICT), Grouping::Column(HOUR)];
    assert_eq!(shape.group_key(&[5, 17]), (5 << 5) | 17);
    for bad in [
        "13/3",
        "0/4",
        "1/0",
        "1/200",
        "65/6x65/6",
        "x",
        "12:4",
        "1/4000000000x1/4000000000",
    ] {
        assert!(
            GroupDomain::parse(bad).map_or(true, |d| d.validate().is_err()),
            "{bad}"
        );
    }
    assert_eq!(GroupDomain::parse("none").unwrap(), GroupDomain::default());
    assert_eq!(GroupDomain::default().slots(), 1);
}

#[test]
fn the_root_handles_one_slot_and_the_most_slots() {
    let params = CombineParams {
        min_group_size: 2,
        threshold: 0,
        noise: None,
    };
    // G = 1: no grouping, the evaluation is count + s·sum with s = r.
    let one = CombineShape {
        inputs: 2,
        domain: GroupDomain::default(),
        sums: 1,
        output: CombineOutput::Release,
    };
    let totals = Partial {
        sums: vec![vec![700]],
        counts: vec![3],
    };
    let r = common::challenge();
    assert_eq!(
        totals.evaluate(&one.domain, r),
        Fr::from(3u8) + r * Fr::from(700u16)
    );
    assert!(satisfied(root(one, params.clone(), &[totals]).unwrap()));

    // G = 4,096 (64 x 64 codes): every slot's key, one group of exactly k, the rest
    // empty. Checked by the native twin, which refuses totals that do not evaluate to the
    // shares (the circuit's own check is the one above, at every size; synthesizing half
    // a million constraints here would only slow the suite down).
    let most = CombineShape {
        inputs: 1,
        domain: GroupDomain {
            columns: vec![
                GroupColumn {
                    width: 6,
                    codes: 64
                };
                2
            ],
        },
        sums: 0,
        output: CombineOutput::Release,
    };
    assert_eq!(most.groups(), MAX_SLOTS);
    let mut totals = Partial::zero(MAX_SLOTS, 0);
    totals.counts[4095] = 2;
    let c = root(most.clone(), params.clone(), &[totals]).unwrap();
    let CombineResult::Release { groups, .. } = &c.instance.result else {
        panic!("a release")
    };
    assert_eq!(groups.iter().filter(|g| g.shown().is_some()).count(), 1);
    assert!(groups[4095].shown().is_some());
    // The last slot's count moved to the first, over the same chunk share: the
    // evaluation tells them apart.
    let mut moved = Partial::zero(MAX_SLOTS, 0);
    moved.counts[0] = 2;
    let closing = Closing::Root {
        totals: moved,
        blind: Fr::from(77u8),
        challenge: r,
    };
    let refused = CombineCircuit::new(most, params, c.openings[..1].to_vec(), closing);
    assert!(refused.is_err_and(|e| e.to_string().contains("not the sum of the chunks' shares")));
    // One slot more is no domain.
    let more = GroupDomain {
        columns: vec![
            GroupColumn {
                width: 6,
                codes: 64,
            },
            GroupColumn {
                width: 7,
                codes: 65,
            },
        ],
    };
    assert!(more.validate().is_err());
}
