//! Chunk-aggregate circuit: honest proofs, native twin agreement, malicious provers, edges.

mod common;

use ark_ff::{Field, One, UniformRand};
use common::*;
use proptest::prelude::*;
use zkfabric_circuits::{
    aggregate::{evaluate, share, Aggregand, AggregateCircuit, FilterParams},
    evaluation::{self, Tallies},
    snark, CircuitError, Fr,
};

fn honest(
    chunk: zkfabric_circuits::commitment::Chunk,
    query: zkfabric_circuits::aggregate::AggregateQuery,
) -> AggregateCircuit {
    AggregateCircuit::new(shape(), query, chunk, challenge(), Fr::from(4242u64)).unwrap()
}

/// The honest circuit of `shape` and `query` over the default chunk, at the test
/// challenge, under blind `blind`.
fn over_default_chunk(
    shape: &zkfabric_circuits::aggregate::AggregateShape,
    query: &zkfabric_circuits::aggregate::AggregateQuery,
    blind: u8,
) -> AggregateCircuit {
    AggregateCircuit::new(
        shape.clone(),
        query.clone(),
        default_chunk(),
        challenge(),
        Fr::from(blind),
    )
    .unwrap()
}

/// `c` stating that its rows' tallies are `claimed`: the commitment to their share.
fn claiming(c: &AggregateCircuit, claimed: &Tallies) -> AggregateCircuit {
    let mut lying = c.clone();
    let share = share(&c.shape, claimed, c.instance.challenge);
    lying.instance.evaluation_commitment = evaluation::commit(share, c.blind);
    lying
}

#[test]
fn native_twin_computes_the_filtered_grouped_aggregate() {
    let tallies = evaluate(&shape(), &default_query(), &default_chunk()).unwrap();
    // District 2, hours 7..=9, consent bit 1: rows 0, 1, 7 (row 3 lacks consent, row 2 is
    // out of hours). District 5: rows 4 and 5.
    assert_eq!(
        tallies,
        common::tallies(&[(2, 3, &[1200 + 800 + 100]), (5, 2, &[300 + 450])])
    );
    let c = honest(default_chunk(), default_query());
    assert_eq!(c.tallies, tallies);
    // The share is the tallies' evaluation: r^2 (3 + s·2100) + r^5 (2 + s·750), s = r^8.
    let r = challenge();
    let s = r.pow([8u64]);
    let expected = r.pow([2u64]) * (Fr::from(3u8) + s * Fr::from(2100u64))
        + r.pow([5u64]) * (Fr::from(2u8) + s * Fr::from(750u64));
    assert_eq!(c.share, expected);
}

#[test]
fn honest_proof_verifies_and_every_public_input_is_bound() {
    let mut rng = rng(1);
    let pk = snark::setup::<AggregateCircuit, _>(&shape(), &mut rng).unwrap();
    let circuit = honest(default_chunk(), default_query());
    let inputs = circuit.instance.public_inputs(&circuit.shape).unwrap();
    assert_eq!(inputs.len(), shape().num_public_inputs());
    // The circuit allocates exactly the documented public inputs, in order.
    let z = snark::assignment(circuit.clone()).unwrap();
    assert_eq!(&z[1..=inputs.len()], &inputs[..]);

    let proof = snark::prove(&pk, circuit, &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
}

#[test]
fn a_claimed_share_other_than_the_rows_is_unsatisfiable() {
    let circuit = honest(default_chunk(), default_query());
    assert!(satisfied(circuit.clone()));
    assert!(satisfied(claiming(&circuit, &circuit.tallies)));
    type Entries<'a> = &'a [(u64, u64, &'a [u128])];
    let lies: [(&str, Entries); 6] = [
        ("a sum inflated", &[(2, 3, &[2101]), (5, 2, &[750])]),
        ("a count lowered", &[(2, 2, &[2100]), (5, 2, &[750])]),
        // Row 7 (district 2, 100 kWh) moved to district 5.
        ("a row moved", &[(2, 2, &[2000]), (5, 3, &[850])]),
        ("a group dropped", &[(2, 3, &[2100])]),
        (
            "a group added",
            &[(2, 3, &[2100]), (5, 2, &[750]), (3, 1, &[999])],
        ),
        // A key outside the 3-bit district codes: its monomial is no district's.
        (
            "a key outside",
            &[(2, 3, &[2100]), (5, 2, &[750]), (8, 0, &[0])],
        ),
    ];
    for (what, lie) in lies {
        let claimed = tallies(lie);
        let share = share(&circuit.shape, &claimed, challenge());
        if share != circuit.share {
            assert!(!satisfied(claiming(&circuit, &claimed)), "{what}");
        } else {
            // A count of zero at a key adds nothing: the same share, the same statement.
            assert_eq!(what, "a key outside");
        }
    }
    // The same share at another challenge is another statement.
    let mut lying = circuit.clone();
    lying.instance.challenge += Fr::one();
    assert!(!satisfied(lying));
}

/// A lying witness: the public statement stays the honest one, the witness changes.
fn lie(edit: impl FnOnce(&mut AggregateCircuit)) -> bool {
    let mut c = honest(default_chunk(), default_query());
    edit(&mut c);
    satisfied(c)
}

#[test]
fn lying_witnesses_leave_the_system_unsatisfied() {
    assert!(lie(|_| {}), "the honest witness satisfies");
    // A row value: the measure of a selected row.
    assert!(!lie(|c| c.chunk.columns[KWH][0] += 1));
    // A filter decision: row 2 (hour 12) claimed to be in 7..=9.
    assert!(!lie(|c| c.chunk.columns[HOUR][2] = 8));
    // A consent bit: row 3 claimed to consent to purpose 1.
    assert!(!lie(|c| c.chunk.columns[CONSENT][3] |= 0b010));
    // A group assignment: row 4 (district 5) claimed to be in district 2.
    assert!(!lie(|c| c.chunk.columns[DISTRICT][4] = 2));
    // A padding or real row's presence flag.
    assert!(!lie(|c| c.chunk.columns[PRESENT][6] = 0));
    // A salt, of a touched group and of an untouched one (its digest is a witness).
    assert!(!lie(|c| c.chunk.salts[0] += Fr::one()));
    assert!(!lie(|c| c.chunk.salts[1] += Fr::one()));
    // An untouched column's value changes the digest the commitment binds.
    assert!(!lie(|c| c.chunk.columns[TIME][0] += 1));
    // The blind of the evaluation.
    assert!(!lie(|c| c.blind += Fr::one()));
    // The chunk's identity as the statement gives it (from the manifest): another index,
    // another dataset, another number of present rows than the commitment binds.
    assert!(!lie(|c| c.instance.chunk.index += 1));
    assert!(!lie(|c| c.instance.chunk.dataset_id += 1));
    assert!(!lie(|c| c.instance.chunk.rows -= 1));

    // A packed slot aliased into its neighbour: district + 8 and hour - 1 pack to the
    // same row word, but district no longer fits its 3 bits.
    assert!(!lie(|c| {
        c.chunk.columns[DISTRICT][5] += 8;
        c.chunk.columns[HOUR][5] -= 1;
    }));
    // A wide slot aliased into the next row's: kWh + 2^16 and the next row's kWh - 1 pack
    // to the same element, but the first no longer fits its 16 bits.
    assert!(!lie(|c| {
        c.chunk.columns[KWH][0] += 1 << 16;
        c.chunk.columns[KWH][1] -= 1;
    }));
}

#[test]
fn proving_refuses_an_unsatisfied_witness() {
    let mut rng = rng(2);
    let pk = snark::setup::<AggregateCircuit, _>(&shape(), &mut rng).unwrap();
    let mut c = honest(default_chunk(), default_query());
    c.chunk.columns[KWH][1] = 9999;
    assert!(matches!(
        snark::prove(&pk, c, &mut rng),
        Err(CircuitError::Unsatisfied(_))
    ));
}

#[test]
fn edges_full_range_empty_chunk_all_filtered_and_padding() {
    let max_hour = (1 << 5) - 1;
    // lo = 0, hi = 2^w - 1: every consented row of the listed districts passes.
    let full = honest(default_chunk(), query(vec![2, 5], (0, max_hour)));
    assert_eq!(
        full.tallies.values().map(|t| t.count).collect::<Vec<_>>(),
        [4, 2]
    );
    assert!(satisfied(full));
    // Every row filtered out: no tallies, a share of zero.
    let none = honest(default_chunk(), query(vec![4], (0, max_hour)));
    assert!(none.tallies.is_empty());
    assert_eq!(none.share, Fr::from(0u8));
    assert!(satisfied(none));
    // An empty chunk (all padding) and a partly filled one.
    for rows in [0usize, 3] {
        let data: Vec<_> = (0..rows as u64)
            .map(|i| (2, 8, 30 + i, 0b010, 10 * i))
            .collect();
        let c = honest(chunk(&data), default_query());
        assert_eq!(c.tallies.get(&2).map_or(0, |t| t.count), rows as u64);
        assert!(satisfied(c));
    }
}

#[test]
fn bad_parameters_are_refused_by_name() {
    let chunk = default_chunk();
    let err = |q| {
        AggregateCircuit::new(shape(), q, chunk.clone(), challenge(), Fr::from(1u8))
            .unwrap_err()
            .to_string()
    };
    assert!(err(query(vec![2, 5], (7, 32))).contains("filter 1"));
    assert!(err(query(vec![2, 5, 6], (7, 9))).contains("IN list of 3"));
    let mut q = default_query();
    q.purpose = 3;
    assert!(err(q).contains("purpose bit 3"));
}

#[test]
fn counting_a_condition_answers_predicates() {
    // COUNT of selected rows with age in 0..=17, no GROUP BY: "is any selected donor a minor?"
    let mut s = shape();
    s.group_by = Vec::new();
    s.filters.truncate(1);
    s.aggregand = Aggregand::CountWhere { column: AGE };
    let mut q = default_query();
    q.filters.truncate(1);
    q.condition = Some((0, 17));
    let c = over_default_chunk(&s, &q, 7);
    // Selected (district 2 or 5, consent bit 1): rows 0, 1, 2, 4, 5, 7; minors: row 4.
    assert_eq!(c.tallies, tallies(&[(0, 6, &[1])]));
    assert!(satisfied(c.clone()));
    let mut lying = c;
    lying.chunk.columns[AGE][4] = 18;
    assert!(!satisfied(lying));
}

fn arb_rows() -> impl Strategy<Value = Vec<(u64, u64, u64, u64, u64)>> {
    prop::collection::vec(
        (0u64..8, 0u64..32, 0u64..128, 0u64..8, 0u64..65536),
        0..=ROWS,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    /// The circuit accepts the native twin's share, and not one of a row more.
    #[test]
    fn circuit_agrees_with_native_twin(
        rows in arb_rows(),
        districts in prop::collection::vec(0u64..8, 1..=2),
        lo in 0u64..32, span in 0u64..32,
        key in 0u64..8,
        purpose in 0u32..3,
    ) {
        let mut q = query(districts, (lo, (lo + span).min(31)));
        q.purpose = purpose;
        let blind = Fr::rand(&mut rng(5));
        let c = AggregateCircuit::new(shape(), q, chunk(&rows), challenge(), blind).unwrap();
        prop_assert!(satisfied(c.clone()));
        let mut off = c.tallies.clone();
        off.entry(key).or_insert_with(|| tallies(&[(key, 0, &[0])])[&key].clone()).count += 1;
        prop_assert!(!satisfied(claiming(&c, &off)));
    }
}

#[test]
fn query_filters_in_params_must_match_kinds() {
    let mut q = default_query();
    q.filters[0] = FilterParams::Range { lo: 0, hi: 1 };
    assert!(
        AggregateCircuit::new(shape(), q, default_chunk(), challenge(), Fr::from(1u8)).is_err()
    );
}

#[test]
fn a_key_of_one_chunk_shape_verifies_no_statement_of_another_with_the_same_layout() {
    // A range on hour and a range on age take the same public inputs. A node holding
    // trusted keys for both proves the hour query and relabels it as the age query: the
    // verifier recomputes the age shape's statement, whose digest differs.
    use zkfabric_circuits::aggregate::{AggregateShape, FilterShape};
    let mut rng = rng(5);
    let range_on = |column| AggregateShape {
        filters: vec![
            FilterShape::In {
                column: DISTRICT,
                len: 2,
            },
            FilterShape::Range { column },
        ],
        ..shape()
    };
    let (hours, ages) = (range_on(HOUR), range_on(AGE));
    let hours_pk = snark::setup::<AggregateCircuit, _>(&hours, &mut rng).unwrap();
    let ages_pk = snark::setup::<AggregateCircuit, _>(&ages, &mut rng).unwrap();
    let circuit = AggregateCircuit::new(
        hours.clone(),
        default_query(),
        default_chunk(),
        challenge(),
        Fr::from(1u8),
    )
    .unwrap();
    let proof = snark::prove(&hours_pk, circuit.clone(), &mut rng).unwrap();
    let honest = circuit.instance.public_inputs(&hours).unwrap();
    assert!(snark::verify(hours_pk.verifying_key(), &honest, &proof).unwrap());
    let relabelled = circuit.instance.public_inputs(&ages).unwrap();
    assert_eq!(relabelled.len(), honest.len(), "the layouts are the same");
    assert_eq!(
        relabelled[1..],
        honest[1..],
        "only the shape digest differs"
    );
    for vk in [hours_pk.verifying_key(), ages_pk.verifying_key()] {
        assert!(!snark::verify(vk, &relabelled, &proof).unwrap());
    }
}

#[test]
fn a_clipped_sum_adds_each_row_at_most_its_bound_and_no_more() {
    // Noisy sums clip each row: district 2's selected rows carry 1200, 800 and 100 kWh,
    // clipped at 900 they add 900 + 800 + 100; district 5's (300, 450) stay.
    let shape = zkfabric_circuits::aggregate::AggregateShape {
        aggregand: Aggregand::ClippedSum { columns: vec![KWH] },
        ..shape()
    };
    let query = zkfabric_circuits::aggregate::AggregateQuery {
        clips: vec![900],
        origins: Vec::new(),
        ..default_query()
    };
    assert!(shape.description().ends_with("aggregand=clipped_sum:6"));
    let clipped = evaluate(&shape, &query, &default_chunk()).unwrap();
    assert_eq!(
        clipped,
        tallies(&[(2, 3, &[900 + 800 + 100]), (5, 2, &[300 + 450])])
    );
    let circuit = over_default_chunk(&shape, &query, 7);
    assert!(satisfied(circuit.clone()));
    // Every public input of a clipped sum's proof is bound, the clip bound included.
    let mut rng = rng(5);
    let pk = snark::setup::<AggregateCircuit, _>(&shape, &mut rng).unwrap();
    let inputs = circuit.instance.public_inputs(&shape).unwrap();
    assert_eq!(inputs.len(), shape.num_public_inputs());
    let proof = snark::prove(&pk, circuit.clone(), &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);

    // A prover summing the row unclipped, or clipping below the bound, is caught.
    for sum in [1200 + 800 + 100, 800 + 800 + 100] {
        let lie = tallies(&[(2, 3, &[sum]), (5, 2, &[750])]);
        assert!(!satisfied(claiming(&circuit, &lie)), "{sum}");
    }
    // Another bound in the statement under the same share is caught too.
    let mut lying = circuit.clone();
    lying.instance.query.clips = vec![1000];
    assert!(!satisfied(lying));
    // The bound must fit the column, and a clipped sum needs one.
    for clips in [vec![1 << 16], Vec::new(), vec![900, 900]] {
        let bad = zkfabric_circuits::aggregate::AggregateQuery {
            clips,
            ..default_query()
        };
        assert!(matches!(
            bad.validate(&shape),
            Err(CircuitError::InvalidQuery(_))
        ));
    }
}

#[test]
fn a_union_of_ranges_selects_rows_in_any_of_them_and_binds_each_bound() {
    // `hour < 8 OR hour > 10` in district 2 or 5: hours 7 and 12 pass, 8 and 9 do not.
    use zkfabric_circuits::aggregate::{AggregateQuery, AggregateShape, FilterShape};
    let shape = AggregateShape {
        filters: vec![
            FilterShape::In {
                column: DISTRICT,
                len: 2,
            },
            FilterShape::Ranges {
                column: HOUR,
                count: 2,
            },
        ],
        ..shape()
    };
    assert!(shape.description().contains("filters=in:1:2,ranges:2:2"));
    let query = AggregateQuery {
        filters: vec![
            FilterParams::In(vec![2, 5]),
            FilterParams::Ranges(vec![(0, 7), (11, 31)]),
        ],
        ..default_query()
    };
    // District 2: rows 0 (hour 7) and 2 (hour 12); rows 1, 3 and 7 (hours 8 and 9) lie
    // between the ranges. District 5: row 5 (hour 7); row 4 (hour 9) lies between.
    assert_eq!(
        evaluate(&shape, &query, &default_chunk()).unwrap(),
        tallies(&[(2, 2, &[1200 + 5000]), (5, 1, &[450])])
    );
    let circuit = over_default_chunk(&shape, &query, 3);
    let mut rng = rng(6);
    let pk = snark::setup::<AggregateCircuit, _>(&shape, &mut rng).unwrap();
    let inputs = circuit.instance.public_inputs(&shape).unwrap();
    assert_eq!(inputs.len(), shape.num_public_inputs());
    let proof = snark::prove(&pk, circuit.clone(), &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);

    // A row between the ranges claimed to lie in one (row 1, hour 8, to hour 7), or a row
    // in one claimed to lie between them (row 0 to hour 9), changes the committed rows.
    for (row, hour) in [(1, 7), (0, 9)] {
        let mut lying = circuit.clone();
        lying.chunk.columns[HOUR][row] = hour;
        assert!(!satisfied(lying), "row {row} moved to hour {hour}");
    }
    // The tallies of one range only, or of the hull of both, are not the union's.
    for ranges in [vec![(0, 7), (0, 7)], vec![(0, 31), (0, 31)]] {
        let other = AggregateQuery {
            filters: vec![FilterParams::In(vec![2, 5]), FilterParams::Ranges(ranges)],
            ..default_query()
        };
        let lie = evaluate(&shape, &other, &default_chunk()).unwrap();
        assert!(!satisfied(claiming(&circuit, &lie)));
    }
    // A union needs two ranges or more, as many as its shape has, each fitting the column.
    for ranges in [vec![(0, 7)], vec![(0, 7), (11, 32)]] {
        let bad = AggregateQuery {
            filters: vec![FilterParams::In(vec![2, 5]), FilterParams::Ranges(ranges)],
            ..default_query()
        };
        assert!(matches!(
            bad.validate(&shape),
            Err(CircuitError::InvalidQuery(_))
        ));
    }
}

#[test]
fn several_measures_are_summed_each_and_every_clip_is_bound() {
    // kWh and age summed per district, each clipped (900 and 50) for a noisy answer.
    use zkfabric_circuits::aggregate::{AggregateQuery, AggregateShape};
    let shape = AggregateShape {
        aggregand: Aggregand::ClippedSum {
            columns: vec![KWH, AGE],
        },
        ..shape()
    };
    assert!(shape.description().ends_with("aggregand=clipped_sum:6+3"));
    let query = AggregateQuery {
        clips: vec![900, 50],
        origins: Vec::new(),
        ..default_query()
    };
    // District 2: rows 0, 1, 7 (ages 34, 71, 66 clip to 34, 50, 50); district 5: 4, 5.
    assert_eq!(
        evaluate(&shape, &query, &default_chunk()).unwrap(),
        tallies(&[
            (2, 3, &[900 + 800 + 100, 34 + 50 + 50]),
            (5, 2, &[300 + 450, 17 + 50])
        ])
    );
    let circuit = over_default_chunk(&shape, &query, 5);
    let mut rng = rng(7);
    let pk = snark::setup::<AggregateCircuit, _>(&shape, &mut rng).unwrap();
    let inputs = circuit.instance.public_inputs(&shape).unwrap();
    assert_eq!(inputs.len(), shape.num_public_inputs());
    let proof = snark::prove(&pk, circuit.clone(), &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
    // The second measure's sum changed, the measures swapped, or the second clip changed
    // under the same share: unsatisfied.
    let changed = tallies(&[(2, 3, &[1800, 135]), (5, 2, &[750, 67])]);
    let swapped = tallies(&[(2, 3, &[134, 1800]), (5, 2, &[67, 750])]);
    for lie in [changed, swapped] {
        assert!(!satisfied(claiming(&circuit, &lie)));
    }
    let mut lying = circuit.clone();
    lying.instance.query.clips = vec![900, 60];
    assert!(!satisfied(lying));
    // A measure summed twice is no shape.
    let twice = AggregateShape {
        aggregand: Aggregand::Sum {
            columns: vec![KWH, KWH],
        },
        ..shape
    };
    assert!(twice.validate().is_err());
}

#[test]
fn a_time_bucket_is_the_one_quotient_of_a_selected_row_and_its_origin_is_bound() {
    use zkfabric_circuits::aggregate::{Grouping, TimeBucket};
    // Buckets of 3,000 s from the first row's time (rows are an hour apart), then the
    // district: a 4-bit bucket code above the 3-bit district code.
    const ORIGIN: i64 = 1_700_000_000;
    let mut s = shape();
    s.group_by = vec![
        Grouping::Bucket(TimeBucket {
            column: TIME,
            seconds: 3000,
            width: 4,
        }),
        Grouping::Column(DISTRICT),
    ];
    let mut q = default_query();
    q.origins = vec![ORIGIN];
    let honest = || over_default_chunk(&s, &q, 7);
    // Selected: rows 0, 1, 7 (district 2) and 4, 5 (district 5); row i is 3,600 i s
    // past the origin, so in bucket 3,600 i / 3,000.
    let key = |bucket: u64, district: u64| bucket << 3 | district;
    assert_eq!(
        honest().tallies,
        tallies(&[
            (key(0, 2), 1, &[1200]),
            (key(1, 2), 1, &[800]),
            (key(8, 2), 1, &[100]),
            (key(4, 5), 1, &[300]),
            (key(6, 5), 1, &[450]),
        ])
    );
    assert_eq!(honest().buckets[1][0], (1, 600));
    assert!(satisfied(honest()));
    let lie = |edit: &dyn Fn(&mut AggregateCircuit)| {
        let mut c = honest();
        edit(&mut c);
        satisfied(c)
    };
    // Row 1 moved to the next bucket, or to the one before with its offset of 3,600 s
    // (which its 12 bits hold, but is no offset within 3,000 s).
    assert!(!lie(&|c| c.buckets[1][0] = (2, 600)));
    assert!(!lie(&|c| c.buckets[1][0] = (0, 3600)));
    // A row the query does not select has no bucket to keep.
    assert!(lie(&|c| c.buckets[2][0] = (5, 17)));
    // Another origin is another statement.
    assert!(!lie(&|c| c.instance.query.origins[0] += 1));
    assert!(!lie(&|c| c.instance.query.origins[0] -= 3000));
    // A selected row before the origin, or beyond the code's bits, has no bucket at all.
    let mut late = q.clone();
    late.origins = vec![ORIGIN + 1];
    let err = AggregateCircuit::new(s.clone(), late, default_chunk(), challenge(), Fr::one())
        .unwrap_err()
        .to_string();
    assert!(err.contains("has no 4-bit bucket of 3000 seconds"), "{err}");
    let mut narrow = s.clone();
    narrow.group_by[0] = Grouping::Bucket(TimeBucket {
        column: TIME,
        seconds: 3000,
        width: 2,
    });
    assert!(
        AggregateCircuit::new(narrow, q.clone(), default_chunk(), challenge(), Fr::one()).is_err()
    );

    // Every public input, the origin among them, is bound by a real proof.
    let mut rng = rng(9);
    let pk = snark::setup::<AggregateCircuit, _>(&s, &mut rng).unwrap();
    let inputs = honest().instance.public_inputs(&s).unwrap();
    assert_eq!(inputs.len(), s.num_public_inputs());
    let proof = snark::prove(&pk, honest(), &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
    assert!(s.description().contains("group_by=bucket:0:3000:4+1"));
}
