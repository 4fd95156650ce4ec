//! Roll-ups: the cells a sealing materializes are the aggregation of its rows by purpose,
//! and every way a dishonest node could make them otherwise (a cell changed, moved,
//! dropped or added, a row left out, a row's purpose moved, a cell chunk left out of the
//! challenge, a challenge of another sealing) makes the two sides' evaluations differ.

mod common;

use ark_ff::Zero;
use common::*;
use zkfabric_circuits::{
    aggregate::{self, Aggregand, AggregateCircuit, Selection},
    combine::{Closing, CombineCircuit, CombineParams, CombineResult, CombineShape, Opening},
    commitment::Chunk,
    evaluation::{self, add_tallies, Tallies},
    rollup::{self, KeyPart, Rollup, RollupShapes},
    snark, Fr,
};

const DAY: u64 = 86_400;
/// The cells' table id (a roll-up's cells are chunks of their own table).
const CELLS_TABLE: u64 = 1 << 32 | 3;

/// District, day and hour; kWh summed, clipped when `clipped`.
fn rollup(clipped: bool) -> Rollup {
    Rollup {
        key: vec![
            KeyPart::Column(DISTRICT),
            KeyPart::Bucket {
                column: TIME,
                seconds: DAY,
                offset: 0,
            },
            KeyPart::Column(HOUR),
        ],
        measures: vec![KWH],
        clipped,
    }
}

fn shapes(clipped: bool) -> RollupShapes {
    rollup(clipped).shapes(&layout(), CONSENT, ROWS).unwrap()
}

/// Rows as (time, district, hour, consent, kwh) in chunk `index`; all present.
fn rows_chunk(index: u64, rows: &[(u64, u64, u64, u64, u64)]) -> Chunk {
    let mut columns = vec![Vec::new(); 7];
    for &(time, district, hour, consent, kwh) in rows {
        for (c, v) in [
            (TIME, time),
            (DISTRICT, district),
            (HOUR, hour),
            (AGE, 40),
            (CONSENT, consent),
            (PRESENT, 1),
            (KWH, kwh),
        ] {
            columns[c].push(v);
        }
    }
    Chunk::seal(&layout(), 3, index, columns, &mut rng(index)).unwrap()
}

const T0: u64 = 1_700_006_400; // 2023-11-15T00:00:00Z, a day's first second

/// A sealing's two chunks: repeated keys (rows 0 and 1, 8 and 9), every consent, two
/// days, a reading over the clip bound (5000).
fn sealed() -> Vec<Chunk> {
    vec![
        rows_chunk(
            0,
            &[
                (T0 + 7 * 3600, 2, 7, 0b011, 1200),
                (T0 + 7 * 3600 + 60, 2, 7, 0b110, 800),
                (T0 + 8 * 3600, 2, 8, 0b111, 5000),
                (T0 + 9 * 3600, 5, 9, 0b000, 700),
                (T0 + DAY + 7 * 3600, 2, 7, 0b001, 300),
            ],
        ),
        rows_chunk(
            1,
            &[
                (T0 + DAY + 9 * 3600, 5, 9, 0b100, 450),
                (T0 + 8 * 3600, 3, 8, 0b010, 999),
                (T0 + 8 * 3600 + 10, 3, 8, 0b010, 1),
            ],
        ),
    ]
}

fn tallies_of(
    shape: &aggregate::AggregateShape,
    q: &aggregate::AggregateQuery,
    chunks: &[Chunk],
) -> Tallies {
    let mut all = Tallies::new();
    for chunk in chunks {
        add_tallies(&mut all, &aggregate::evaluate(shape, q, chunk).unwrap());
    }
    all
}

/// The cells of `rows`, sealed into chunks of the cells' table.
fn cells_of(s: &RollupShapes, clips: &[u64], rows: &[Chunk]) -> Vec<Chunk> {
    let columns = s
        .cells_of(&tallies_of(&s.rows, &s.rows_query(clips.to_vec()), rows))
        .unwrap();
    cell_chunks(s, columns)
}

fn cell_chunks(s: &RollupShapes, columns: Vec<Vec<u64>>) -> Vec<Chunk> {
    let cells = columns[0].len();
    (0..cells.div_ceil(ROWS))
        .map(|i| {
            let part = columns
                .iter()
                .map(|c| c[i * ROWS..((i + 1) * ROWS).min(cells)].to_vec())
                .collect();
            Chunk::seal(
                s.cell_layout(),
                CELLS_TABLE,
                i as u64,
                part,
                &mut rng(50 + i as u64),
            )
            .unwrap()
        })
        .collect()
}

fn commitments(s: &aggregate::AggregateShape, chunks: &[Chunk]) -> Vec<Fr> {
    chunks.iter().map(|c| c.commitment(&s.layout)).collect()
}

/// The sum of the chunks' shares at `r`, natively.
fn side(
    s: &aggregate::AggregateShape,
    q: &aggregate::AggregateQuery,
    chunks: &[Chunk],
    r: Fr,
) -> Fr {
    chunks
        .iter()
        .map(|c| aggregate::share(s, &aggregate::evaluate(s, q, c).unwrap(), r))
        .sum()
}

/// Both sides' sums at the sealing's own challenge.
fn sides(s: &RollupShapes, clips: &[u64], rows: &[Chunk], cells: &[Chunk]) -> (Fr, Fr) {
    let rows_query = s.rows_query(clips.to_vec());
    let r = rollup::challenge(
        s,
        &rows_query,
        &commitments(&s.rows, rows),
        &commitments(&s.cells, cells),
    );
    (
        side(&s.rows, &rows_query, rows, r),
        side(&s.cells, &s.cells_query(), cells, r),
    )
}

#[test]
fn cells_hold_each_keys_rows_by_purpose_and_both_sides_evaluate_alike() {
    let s = shapes(false);
    assert_eq!(s.purposes, 3);
    assert!(s
        .rows
        .description()
        .contains("consent=by_purpose:4 filters= group_by=1+bucket:0:86400:16+2"));
    assert!(s
        .cells
        .description()
        .ends_with("aggregand=sum:4+5+6+7+8 weight=3"));
    let rows = sealed();
    let columns = s
        .cells_of(&tallies_of(&s.rows, &s.rows_query(Vec::new()), &rows))
        .unwrap();
    // Keys: (2, day 0, 7), (2, 0, 8), (2, 1, 7), (3, 0, 8), (5, 0, 9), (5, 1, 9).
    assert_eq!(columns[0], vec![2, 2, 2, 3, 5, 5]);
    assert_eq!(columns[1], vec![T0, T0, T0 + DAY, T0, T0, T0 + DAY]);
    assert_eq!(columns[2], vec![7, 8, 7, 8, 9, 9]);
    assert_eq!(columns[s.present_column()], vec![1; 6]);
    // (2, day 0, 7): 1200 kWh with consent 0b011 and 800 with 0b110.
    let cell: Vec<u64> = (0..3)
        .flat_map(|p| {
            [
                columns[s.count_column(p)][0],
                columns[s.sum_column(p, 0)][0],
            ]
        })
        .collect();
    assert_eq!(cell, vec![1, 1200, 2, 2000, 1, 800]);
    // (5, day 0, 9) consented to nothing: a cell of zeros, which no query counts.
    let cell: Vec<u64> = (0..3).map(|p| columns[s.count_column(p)][4]).collect();
    assert_eq!(cell, vec![0, 0, 0]);

    let cells = cell_chunks(&s, columns);
    assert_eq!(cells.len(), 1);
    let (rows_side, cells_side) = sides(&s, &[], &rows, &cells);
    assert_eq!(rows_side, cells_side);
    assert!(!rows_side.is_zero());

    // Per chunk, the circuits agree with the twins, and the two subtotals, blinded
    // alike, are one commitment.
    let rows_query = s.rows_query(Vec::new());
    let r = rollup::challenge(
        &s,
        &rows_query,
        &commitments(&s.rows, &rows),
        &commitments(&s.cells, &cells),
    );
    let subtotal = |shape: &aggregate::AggregateShape,
                    q: &aggregate::AggregateQuery,
                    chunks: &[Chunk]| {
        let openings: Vec<Opening> = chunks
            .iter()
            .enumerate()
            .map(|(i, chunk)| {
                let blind = Fr::from(1000 + i as u64);
                let c = AggregateCircuit::new(shape.clone(), q.clone(), chunk.clone(), r, blind)
                    .unwrap();
                assert!(satisfied(c.clone()));
                Opening {
                    evaluation: c.share,
                    blind,
                }
            })
            .collect();
        let combine = CombineCircuit::new(
            CombineShape::subtotal(2),
            CombineParams {
                min_group_size: 1,
                threshold: 0,
                noise: None,
            },
            openings,
            Closing::Subtotal {
                blind: Fr::from(4242u64),
            },
        )
        .unwrap();
        assert!(satisfied(combine.clone()));
        match combine.instance.result {
            CombineResult::Subtotal { commitment } => commitment,
            other => panic!("a subtotal, not {other:?}"),
        }
    };
    assert_eq!(
        subtotal(&s.rows, &rows_query, &rows),
        subtotal(&s.cells, &s.cells_query(), &cells)
    );
}

#[test]
fn a_clipped_rollup_holds_clipped_sums_and_binds_the_bound() {
    let s = shapes(true);
    let rows = sealed();
    let clips = [1000];
    let columns = s
        .cells_of(&tallies_of(&s.rows, &s.rows_query(clips.to_vec()), &rows))
        .unwrap();
    // (2, day 0, 8) holds one reading of 5000, counted as 1000 for every purpose.
    assert_eq!(
        (0..3)
            .map(|p| columns[s.sum_column(p, 0)][1])
            .collect::<Vec<_>>(),
        vec![1000, 1000, 1000]
    );
    let cells = cell_chunks(&s, columns);
    let (rows_side, cells_side) = sides(&s, &clips, &rows, &cells);
    assert_eq!(rows_side, cells_side);
    // Cells of unclipped sums do not match clipped rows, nor the other way round.
    let unclipped = cells_of(&shapes(false), &[], &rows);
    let (rows_side, cells_side) = sides(&s, &clips, &rows, &unclipped);
    assert_ne!(rows_side, cells_side);
    // The bound is in the challenge: another bound, another sealing.
    let q = |clip| s.rows_query(vec![clip]);
    let r = |clip| {
        rollup::challenge(
            &s,
            &q(clip),
            &commitments(&s.rows, &rows),
            &commitments(&s.cells, &cells),
        )
    };
    assert_ne!(r(1000), r(999));
}

/// The cells' columns of the honest sealing, for a test to change.
fn honest_cells(s: &RollupShapes) -> Vec<Vec<u64>> {
    s.cells_of(&tallies_of(&s.rows, &s.rows_query(Vec::new()), &sealed()))
        .unwrap()
}

#[test]
fn every_lie_about_the_cells_makes_the_sides_differ() {
    let s = shapes(false);
    let rows = sealed();
    type Lie<'a> = (&'a str, Box<dyn Fn(&mut Vec<Vec<u64>>) + 'a>);
    let lies: Vec<Lie> = vec![
        (
            "a count changed",
            Box::new(|c| c[s.count_column(1)][0] += 1),
        ),
        ("a sum changed", Box::new(|c| c[s.sum_column(0, 0)][2] -= 1)),
        ("a cell moved to another hour", Box::new(|c| c[2][0] = 6)),
        ("a cell moved to another day", Box::new(|c| c[1][3] += DAY)),
        (
            "a row's purpose moved",
            Box::new(|c| {
                c[s.count_column(1)][3] -= 1;
                c[s.count_column(0)][3] += 1;
            }),
        ),
        (
            "a row's value moved to another cell",
            Box::new(|c| {
                c[s.sum_column(1, 0)][0] -= 100;
                c[s.sum_column(1, 0)][1] += 100;
            }),
        ),
        (
            "a cell dropped",
            Box::new(|c| {
                for column in c.iter_mut() {
                    column.remove(5);
                }
            }),
        ),
        (
            "a cell added",
            Box::new(|c| {
                for (i, column) in c.iter_mut().enumerate() {
                    let v = column[0];
                    column.push(if i == 2 { 23 } else { v });
                }
            }),
        ),
        (
            "a cell's row marked padding",
            Box::new(|c| c[s.present_column()][2] = 0),
        ),
    ];
    for (what, lie) in lies {
        let mut columns = honest_cells(&s);
        lie(&mut columns);
        let cells = cell_chunks(&s, columns);
        let (rows_side, cells_side) = sides(&s, &[], &rows, &cells);
        assert_ne!(rows_side, cells_side, "{what}");
    }
    // Splitting a cell in two with the same key changes nothing a query could see: both
    // parts are selected and grouped alike, so the sides still agree.
    let mut columns = honest_cells(&s);
    for (i, column) in columns.iter_mut().enumerate() {
        let v = column[0];
        column.push(if i >= s.count_column(0) { 0 } else { v });
    }
    let (rows_side, cells_side) = sides(&s, &[], &rows, &cell_chunks(&s, columns));
    assert_eq!(rows_side, cells_side);
}

#[test]
fn a_row_left_out_or_a_chunk_left_out_makes_the_sides_differ() {
    let s = shapes(false);
    let rows = sealed();
    // Cells of the first chunk only, or of every row but the last.
    let partial = cells_of(&s, &[], &rows[..1]);
    assert_ne!(
        sides(&s, &[], &rows, &partial).0,
        sides(&s, &[], &rows, &partial).1
    );
    let mut fewer = rows.clone();
    fewer[1] = rows_chunk(
        1,
        &[
            (T0 + DAY + 9 * 3600, 5, 9, 0b100, 450),
            (T0 + 8 * 3600, 3, 8, 0b010, 999),
        ],
    );
    let missing_a_row = cells_of(&s, &[], &fewer);
    let (rows_side, cells_side) = sides(&s, &[], &rows, &missing_a_row);
    assert_ne!(rows_side, cells_side);
}

#[test]
fn the_challenge_binds_every_chunk_of_the_sealing_in_order() {
    let s = shapes(false);
    let rows = sealed();
    let cells = cells_of(&s, &[], &rows);
    let q = s.rows_query(Vec::new());
    let raw = commitments(&s.rows, &rows);
    let derived = commitments(&s.cells, &cells);
    let honest = rollup::challenge(&s, &q, &raw, &derived);
    let reversed: Vec<Fr> = raw.iter().rev().copied().collect();
    let mut both = raw.clone();
    both.extend(&derived);
    for (what, r) in [
        (
            "row chunks reordered",
            rollup::challenge(&s, &q, &reversed, &derived),
        ),
        (
            "a row chunk left out",
            rollup::challenge(&s, &q, &raw[..1], &derived),
        ),
        (
            "the cell chunk left out",
            rollup::challenge(&s, &q, &raw, &[]),
        ),
        (
            "a cell chunk counted as a row chunk",
            rollup::challenge(&s, &q, &both, &[]),
        ),
        (
            "another sealing's rows",
            rollup::challenge(
                &s,
                &q,
                &commitments(&s.rows, &[rows_chunk(0, &[(T0, 2, 0, 1, 5)])]),
                &derived,
            ),
        ),
    ] {
        assert_ne!(r, honest, "{what}");
    }
    // Another roll-up's shapes give another challenge over the same chunks.
    let hourly = Rollup {
        key: vec![KeyPart::Column(HOUR)],
        ..rollup(false)
    }
    .shapes(&layout(), CONSENT, ROWS)
    .unwrap();
    assert_ne!(rollup::challenge(&hourly, &q, &raw, &derived), honest);
}

#[test]
fn a_cell_proof_claiming_the_rows_evaluation_over_other_cells_is_unsatisfiable() {
    let s = shapes(false);
    let rows = sealed();
    let q = s.rows_query(Vec::new());
    let mut columns = honest_cells(&s);
    columns[s.sum_column(2, 0)][0] += 1;
    let cells = cell_chunks(&s, columns);
    let r = rollup::challenge(
        &s,
        &q,
        &commitments(&s.rows, &rows),
        &commitments(&s.cells, &cells),
    );
    let rows_side = side(&s.rows, &q, &rows, r);
    let blind = Fr::from(9u8);
    let mut lying =
        AggregateCircuit::new(s.cells.clone(), s.cells_query(), cells[0].clone(), r, blind)
            .unwrap();
    assert!(satisfied(lying.clone()));
    lying.share = rows_side;
    lying.instance.evaluation_commitment = evaluation::commit(rows_side, blind);
    assert!(!satisfied(lying));
}

#[test]
fn both_sides_prove_and_every_public_input_is_bound() {
    let s = shapes(true);
    let rows = sealed();
    let clips = vec![1000];
    let cells = cells_of(&s, &clips, &rows);
    let q = s.rows_query(clips.clone());
    let r = rollup::challenge(
        &s,
        &q,
        &commitments(&s.rows, &rows),
        &commitments(&s.cells, &cells),
    );
    let mut rng = rng(17);
    for (shape, query, chunk) in [
        (&s.rows, &q, &rows[0]),
        (&s.cells, &s.cells_query(), &cells[0]),
    ] {
        let pk = snark::setup::<AggregateCircuit, _>(shape, &mut rng).unwrap();
        let circuit = AggregateCircuit::new(
            shape.clone(),
            query.clone(),
            chunk.clone(),
            r,
            Fr::from(5u8),
        )
        .unwrap();
        let inputs = circuit.instance.public_inputs(shape).unwrap();
        let proof = snark::prove(&pk, circuit, &mut rng).unwrap();
        assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
    }
    // A selection by no purpose takes no purpose input, and refuses one.
    let mut with_purpose = q.clone();
    with_purpose.purpose = 1;
    assert!(with_purpose.validate(&s.rows).is_err());
}

#[test]
fn shapes_refuse_a_weight_where_it_has_no_meaning() {
    let s = shapes(true);
    let clipped_weight = aggregate::AggregateShape {
        weight: Some(s.count_column(0)),
        ..s.rows.clone()
    };
    assert!(clipped_weight.validate().is_err());
    let purpose_weight = aggregate::AggregateShape {
        selection: Selection::Purpose { consent: CONSENT },
        aggregand: Aggregand::Sum { columns: vec![KWH] },
        weight: Some(KWH),
        ..s.rows.clone()
    };
    assert!(purpose_weight.validate().is_err());
}

#[test]
fn a_query_over_the_cells_answers_what_it_answers_over_the_rows() {
    // Purpose 1, hours 7..=8, by district and day: over the rows as a query reads them,
    // and over the cells weighted by purpose 1's count.
    use aggregate::{
        AggregateQuery, AggregateShape, FilterParams, FilterShape, Grouping, TimeBucket,
    };
    let s = shapes(false);
    let rows = sealed();
    let cells = cells_of(&s, &[], &rows);
    let day = |column| {
        Grouping::Bucket(TimeBucket {
            column,
            seconds: DAY,
            width: 4,
        })
    };
    let over_rows = AggregateShape {
        layout: layout(),
        selection: Selection::Purpose { consent: CONSENT },
        filters: vec![FilterShape::Range { column: HOUR }],
        group_by: vec![Grouping::Column(DISTRICT), day(TIME)],
        aggregand: Aggregand::Sum { columns: vec![KWH] },
        weight: None,
    };
    let over_cells = AggregateShape {
        layout: s.cell_layout().clone(),
        selection: Selection::Present,
        filters: vec![FilterShape::Range { column: 2 }],
        group_by: vec![Grouping::Column(0), day(1)],
        aggregand: Aggregand::Sum {
            columns: vec![s.sum_column(1, 0)],
        },
        weight: Some(s.count_column(1)),
    };
    let query = |purpose| AggregateQuery {
        purpose,
        filters: vec![FilterParams::Range { lo: 7, hi: 8 }],
        condition: None,
        clips: Vec::new(),
        origins: vec![T0 as i64],
    };
    let from_rows = tallies_of(&over_rows, &query(1), &rows);
    let from_cells = tallies_of(&over_cells, &query(0), &cells);
    // District 2 day 0: 1200 + 800 + 5000 (consent 0b011, 0b110, 0b111); district 3
    // day 0: 999 + 1.
    let expected: Vec<(u64, u64, u128)> = vec![((2 << 4), 3, 7000), ((3 << 4), 2, 1000)];
    let non_empty: Vec<(u64, u64, u128)> = from_cells
        .iter()
        .filter(|(_, t)| t.count > 0)
        .map(|(&k, t)| (k, t.count, t.sums[0]))
        .collect();
    assert_eq!(non_empty, expected);
    let r = Fr::from(0xabcdu64);
    assert_eq!(
        aggregate::share(&over_rows, &from_rows, r),
        aggregate::share(&over_cells, &from_cells, r)
    );
    let circuit =
        AggregateCircuit::new(over_cells, query(0), cells[0].clone(), r, Fr::from(3u8)).unwrap();
    assert!(satisfied(circuit));
}
