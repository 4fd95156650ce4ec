//! Tiny shapes and helpers shared by the circuit tests (N = 8 rows, G = 2 groups).
#![allow(dead_code)]

use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystem};
use rand_chacha::{rand_core::SeedableRng, ChaCha20Rng};
use zkfabric_circuits::{
    aggregate::{
        Aggregand, AggregateQuery, AggregateShape, FilterParams, FilterShape, Grouping, Partial,
        Selection,
    },
    combine::{Closing, CombineCircuit, CombineParams, CombineShape, Opening},
    commitment::{Chunk, ChunkLayout, ColumnSpec},
    evaluation::{GroupColumn, GroupDomain, Tallies, Tally},
    snark, CircuitError, Fr,
};

pub const TIME: usize = 0;
pub const DISTRICT: usize = 1;
pub const HOUR: usize = 2;
pub const AGE: usize = 3;
pub const CONSENT: usize = 4;
pub const PRESENT: usize = 5;
pub const KWH: usize = 6;
pub const ROWS: usize = 8;

pub fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

/// time (wide 32), district (3), hour (5), age (7), consent (3), present (1), kwh (wide 16).
pub fn layout() -> ChunkLayout {
    ChunkLayout::new(
        vec![
            ColumnSpec::wide(32),
            ColumnSpec::narrow(3),
            ColumnSpec::narrow(5),
            ColumnSpec::narrow(7),
            ColumnSpec::narrow(3),
            ColumnSpec::narrow(1),
            ColumnSpec::wide(16),
        ],
        PRESENT,
        ROWS,
    )
    .unwrap()
}

/// `SUM(kwh), COUNT(*) WHERE district IN (..2) AND hour BETWEEN .. GROUP BY district`.
pub fn shape() -> AggregateShape {
    AggregateShape {
        layout: layout(),
        selection: Selection::Purpose { consent: CONSENT },
        filters: vec![
            FilterShape::In {
                column: DISTRICT,
                len: 2,
            },
            FilterShape::Range { column: HOUR },
        ],
        group_by: vec![Grouping::Column(DISTRICT)],
        aggregand: Aggregand::Sum { columns: vec![KWH] },
        weight: None,
    }
}

pub fn query(districts: Vec<u64>, hours: (u64, u64)) -> AggregateQuery {
    AggregateQuery {
        purpose: 1,
        filters: vec![
            FilterParams::In(districts),
            FilterParams::Range {
                lo: hours.0,
                hi: hours.1,
            },
        ],
        condition: None,
        clips: Vec::new(),
        origins: Vec::new(),
    }
}

pub fn default_query() -> AggregateQuery {
    query(vec![2, 5], (7, 9))
}

/// Rows given as (district, hour, age, consent, kwh); all present.
pub fn chunk(rows: &[(u64, u64, u64, u64, u64)]) -> Chunk {
    let mut columns = vec![Vec::new(); 7];
    for (i, &(district, hour, age, consent, kwh)) in rows.iter().enumerate() {
        for (c, v) in [
            (TIME, 1_700_000_000 + 3600 * i as u64),
            (DISTRICT, district),
            (HOUR, hour),
            (AGE, age),
            (CONSENT, consent),
            (PRESENT, 1),
            (KWH, kwh),
        ] {
            columns[c].push(v);
        }
    }
    Chunk::seal(&layout(), 3, 0, columns, &mut rng(99)).unwrap()
}

/// Eight rows: two in district 2 at peak hours, one out of hours, one without consent to
/// purpose 1, two in district 5, one in district 3 (filtered out), one in district 2.
pub fn default_chunk() -> Chunk {
    chunk(&[
        (2, 7, 34, 0b011, 1200),
        (2, 8, 71, 0b010, 800),
        (2, 12, 25, 0b111, 5000),
        (2, 9, 40, 0b001, 700),
        (5, 9, 17, 0b110, 300),
        (5, 7, 52, 0b010, 450),
        (3, 8, 29, 0b111, 999),
        (2, 9, 66, 0b010, 100),
    ])
}

/// Whether `circuit`'s assignment satisfies its constraints. Asked twice, and the answers
/// must agree: by arkworks on a fully synthesized system, and by the check `snark::prove`
/// runs (the witness-only assignment against the setup-mode matrices).
pub fn satisfied<C: ConstraintSynthesizer<Fr> + Clone>(circuit: C) -> bool {
    let cs = ConstraintSystem::<Fr>::new_ref();
    circuit.clone().generate_constraints(cs.clone()).unwrap();
    let by_arkworks = cs.is_satisfied().unwrap();
    let matrices = snark::ConstraintMatrices::of(circuit.clone()).unwrap();
    let by_matrices = matrices.check(&snark::assignment(circuit).unwrap()).is_ok();
    assert_eq!(by_arkworks, by_matrices, "both satisfiability checks agree");
    by_arkworks
}

/// The proof verifies against `inputs`, and against no vector with one input changed.
pub fn assert_every_input_is_bound(vk: &snark::VerifyingKey, inputs: &[Fr], proof: &snark::Proof) {
    assert!(
        snark::verify(vk, inputs, proof).unwrap(),
        "the honest statement verifies"
    );
    for i in 0..inputs.len() {
        let mut tampered = inputs.to_vec();
        tampered[i] += Fr::from(1u8);
        assert!(
            !snark::verify(vk, &tampered, proof).unwrap(),
            "public input {i} changed"
        );
    }
}

/// The challenge the tests evaluate at (a node draws it with `combine::challenge`).
pub fn challenge() -> Fr {
    Fr::from(0x5eed_c4a1_u64)
}

/// Tallies from `(key, count, sums)` entries.
pub fn tallies(entries: &[(u64, u64, &[u128])]) -> Tallies {
    entries
        .iter()
        .map(|&(key, count, sums)| {
            (
                key,
                Tally {
                    count,
                    sums: sums.to_vec(),
                },
            )
        })
        .collect()
}

/// The domain of `GROUP BY district` over all eight 3-bit codes.
pub fn districts() -> GroupDomain {
    GroupDomain {
        columns: vec![GroupColumn { width: 3, codes: 8 }],
    }
}

/// Each partial's share of the evaluation at [`challenge`] as an opening (blinds 11,
/// 12, ...), and their sum.
pub fn shares(shape: &CombineShape, partials: &[Partial]) -> (Vec<Opening>, Partial) {
    let mut totals = Partial::zero(shape.groups(), shape.sums);
    let openings = partials
        .iter()
        .enumerate()
        .map(|(i, p)| {
            totals.add(p);
            Opening {
                evaluation: p.evaluate(&shape.domain, challenge()),
                blind: Fr::from(11 + i as u64),
            }
        })
        .collect();
    (openings, totals)
}

/// The root combine over chunks whose totals are `partials`: each input is a chunk's
/// share, and the root opens their sum (blind 77) at [`challenge`].
pub fn root(
    shape: CombineShape,
    params: CombineParams,
    partials: &[Partial],
) -> Result<CombineCircuit, CircuitError> {
    let (openings, totals) = shares(&shape, partials);
    CombineCircuit::new(
        shape,
        params,
        openings,
        Closing::Root {
            totals,
            blind: Fr::from(77u8),
            challenge: challenge(),
        },
    )
}
