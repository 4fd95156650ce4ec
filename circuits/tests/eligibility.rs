//! Eligibility circuit: an adult resident proves it from a signed credential, and that the
//! donated rows' age and district are the credential's; every public input is bound, and
//! a forged signature, a birth date one day too late, a district outside the set, another
//! holder's secret, a row's age one year off, a row in another district, or a row outside
//! the hashed set leave the constraints unsatisfied.

mod common;

use ark_ec::CurveGroup;
use common::*;
use zkfabric_circuits::{
    eddsa::{self, Scalar, SecretKey},
    eligibility::{
        age_at, birthday, holder, holds, nullifier, row_mismatch, rows_digest, Bound, BoundRow,
        Credential, EligibilityCircuit, EligibilityShape, Holding, Requirement, Segment,
        WithdrawalCircuit, WithdrawalShape,
    },
    snark, Fr,
};

const BOTH: Bound = Bound {
    age: true,
    district: true,
};
const SHAPE: EligibilityShape = EligibilityShape {
    districts: 4,
    rows: 8,
    bound: BOTH,
};

fn issuer() -> SecretKey {
    SecretKey(Scalar::from(0x5eed_1234_u64))
}

/// Born 1990-04-02 in district 4, issued by [`issuer`].
fn holding() -> Holding {
    let secret = Fr::from(0xabcdef_u64);
    let credential = Credential {
        holder: holder(secret),
        birth_date: 19900402,
        district: 4,
    };
    Holding {
        credential,
        signature: credential.sign(&issuer()),
        secret,
    }
}

/// Adults on 2026-11-23 (born on or before 2008-11-23) in districts 2, 4 and 7.
fn requirement() -> Requirement {
    Requirement {
        issuer: issuer().public_key(),
        cutoff: 20081123,
        districts: vec![2, 4, 7],
    }
}

/// Six rows in district 4 around the holder's 36th birthday (2026-04-02 00:00 UTC): two
/// days before, one second before, at it, an hour after, two and thirty days after.
fn segment() -> Segment {
    let turns_36 = birthday(19900402, 36) as u64;
    let rows = [
        (turns_36 - 2 * 86_400, 35),
        (turns_36 - 1, 35),
        (turns_36, 36),
        (turns_36 + 3_600, 36),
        (turns_36 + 2 * 86_400, 36),
        (turns_36 + 30 * 86_400, 36),
    ];
    Segment {
        index: 3,
        rows: rows
            .iter()
            .map(|&(time, age)| BoundRow {
                time,
                age,
                district: 4,
            })
            .collect(),
    }
}

fn honest() -> EligibilityCircuit {
    EligibilityCircuit::new(
        SHAPE,
        &requirement(),
        Fr::from(1u8),
        Fr::from(99u8),
        holding(),
        segment(),
    )
    .unwrap()
}

/// `circuit` with its segment's rows changed by `change`, and the rows digest the node
/// would compute from rows changed that way: only the row checks can fail.
fn with_rows(
    mut circuit: EligibilityCircuit,
    change: impl Fn(&mut Vec<BoundRow>),
) -> EligibilityCircuit {
    change(&mut circuit.segment.rows);
    circuit.instance.rows = rows_digest(BOTH, &circuit.segment, SHAPE.rows);
    circuit
}

#[test]
fn an_adult_resident_proves_eligibility_and_every_input_is_bound() {
    let mut rng = rng(61);
    let pk = snark::setup::<EligibilityCircuit, _>(&SHAPE, &mut rng).unwrap();
    let circuit = honest();
    let inputs = circuit.instance.public_inputs(&SHAPE).unwrap();
    // issuer x and y, cutoff, 4 district slots, scope, records, nullifier, rows.
    assert_eq!(inputs.len(), 11);
    assert_eq!(inputs[9], nullifier(holding().secret, Fr::from(1u8)));
    assert_eq!(inputs[10], rows_digest(BOTH, &segment(), SHAPE.rows));
    let proof = snark::prove(&pk, circuit, &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
}

#[test]
fn nullifiers_repeat_within_a_scope_and_differ_across_scopes() {
    let secret = holding().secret;
    assert_eq!(
        nullifier(secret, Fr::from(1u8)),
        nullifier(secret, Fr::from(1u8))
    );
    assert_ne!(
        nullifier(secret, Fr::from(1u8)),
        nullifier(secret, Fr::from(2u8))
    );
    assert_ne!(
        nullifier(secret, Fr::from(1u8)),
        nullifier(secret + Fr::from(1u8), Fr::from(1u8))
    );
}

#[test]
fn ineligible_holders_are_refused_before_proving() {
    let at = |birth_date, district| {
        let mut h = holding();
        h.credential.birth_date = birth_date;
        h.credential.district = district;
        h.signature = h.credential.sign(&issuer());
        let rows = Segment {
            index: 0,
            rows: vec![],
        };
        EligibilityCircuit::new(SHAPE, &requirement(), Fr::from(1u8), Fr::from(9u8), h, rows)
    };
    assert!(at(20081123, 4).is_ok(), "18 today");
    assert!(at(20081124, 4).is_err(), "18 tomorrow");
    assert!(at(19900402, 5).is_err(), "district outside the set");
    let mut other_issuer = holding();
    other_issuer.signature = other_issuer.credential.sign(&SecretKey(Scalar::from(77u8)));
    assert!(EligibilityCircuit::new(
        SHAPE,
        &requirement(),
        Fr::from(1u8),
        Fr::from(9u8),
        other_issuer,
        segment()
    )
    .is_err());
}

#[test]
fn lying_witnesses_leave_the_constraints_unsatisfied() {
    assert!(satisfied(honest()));

    // A forged signature: S changed, or R8 moved.
    let mut lying = honest();
    lying.holding.signature.s += Scalar::from(1u8);
    assert!(!satisfied(lying));
    let mut lying = honest();
    lying.holding.signature.r8 = (lying.holding.signature.r8 + eddsa::base8()).into_affine();
    assert!(!satisfied(lying));

    // A minor by one day, with a genuine signature on that birth date.
    let mut lying = honest();
    lying.holding.credential.birth_date = 20081124;
    lying.holding.signature = lying.holding.credential.sign(&issuer());
    assert!(!holds(
        &SHAPE,
        &lying.instance,
        &lying.holding,
        &lying.segment
    ));
    assert!(!satisfied(lying));

    // A genuine credential for a district outside the set.
    let mut lying = honest();
    lying.holding.credential.district = 5;
    lying.holding.signature = lying.holding.credential.sign(&issuer());
    assert!(!satisfied(lying));

    // Someone else's secret (so someone else's nullifier), or a changed birth date under
    // the old signature.
    let mut lying = honest();
    lying.holding.secret += Fr::from(1u8);
    assert!(!satisfied(lying));
    let mut lying = honest();
    lying.holding.credential.birth_date = 19800101;
    assert!(!satisfied(lying));

    // A claimed nullifier that is not the holder's.
    let mut lying = honest();
    lying.instance.nullifier += Fr::from(1u8);
    assert!(!satisfied(lying));
}

#[test]
fn rows_whose_age_or_district_is_not_the_credentials_leave_it_unsatisfied() {
    // A row's age one year off, on either side of the birthday and at its very second.
    for (row, age) in [(0, 36), (0, 34), (1, 36), (2, 35), (5, 37)] {
        let lying = with_rows(honest(), |rows| rows[row].age = age);
        assert!(!satisfied(lying), "row {row} at age {age}");
    }
    // A row in another district.
    let lying = with_rows(honest(), |rows| rows[4].district = 5);
    assert!(!satisfied(lying));
    // A row's time moved past the birthday it claims to precede.
    let lying = with_rows(honest(), |rows| rows[1].time += 1);
    assert!(!satisfied(lying));

    // The node's rows digest and the witness's rows must be the same rows: a row left
    // out of, or added to, what the proof checks; another segment's index.
    let mut lying = honest();
    lying.segment.rows.pop();
    assert!(!satisfied(lying));
    let mut lying = honest();
    let extra = lying.segment.rows[0];
    lying.segment.rows.push(extra);
    assert!(!satisfied(lying));
    let mut lying = honest();
    lying.segment.rows.swap(0, 5);
    assert!(!satisfied(lying));
    let mut lying = honest();
    lying.segment.index = 2;
    assert!(!satisfied(lying));
    // The digest of other rows than the witness's.
    let mut lying = honest();
    lying.instance.rows = rows_digest(
        BOTH,
        &Segment {
            index: 3,
            rows: segment().rows[..5].to_vec(),
        },
        SHAPE.rows,
    );
    assert!(!satisfied(lying));
}

#[test]
fn the_holder_refuses_rows_that_disagree_and_names_them() {
    let credential = holding().credential;
    let mut rows = segment().rows;
    assert_eq!(row_mismatch(BOTH, &credential, &rows), None);
    rows[2].age = 35;
    let (row, why) = row_mismatch(BOTH, &credential, &rows).unwrap();
    assert_eq!(row, 2);
    assert!(why.contains("age 35") && why.contains("age 36"), "{why}");
    rows[2].age = 36;
    rows[3].district = 6;
    let (row, why) = row_mismatch(BOTH, &credential, &rows).unwrap();
    assert_eq!(row, 3);
    assert!(why.contains("district 6"), "{why}");
    // Only the bound columns count: the district is free when only age is bound.
    let age_only = Bound {
        age: true,
        district: false,
    };
    assert_eq!(row_mismatch(age_only, &credential, &rows), None);
    // Rows spanning two birthdays do not fit one proof.
    rows[3].district = 4;
    let next_year = birthday(19900402, 37) as u64;
    rows.push(BoundRow {
        time: next_year,
        age: 37,
        district: 4,
    });
    let (row, why) = row_mismatch(BOTH, &credential, &rows).unwrap();
    assert_eq!(row, 6);
    assert!(why.contains("more than one birthday"), "{why}");
    assert!(EligibilityCircuit::new(
        SHAPE,
        &requirement(),
        Fr::from(1u8),
        Fr::from(9u8),
        holding(),
        Segment { index: 0, rows }
    )
    .is_err());
}

#[test]
fn a_29_february_birthday_falls_on_1_march_in_common_years() {
    let born = 20000229;
    let instant = |y: i32, m: u32, d: u32, s: i64| {
        chrono::NaiveDate::from_ymd_opt(y, m, d)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp()
            + s
    };
    assert_eq!(birthday(born, 1), instant(2001, 3, 1, 0));
    assert_eq!(birthday(born, 4), instant(2004, 2, 29, 0));
    assert_eq!(age_at(born, instant(2001, 3, 1, -1) as u64), Some(0));
    assert_eq!(age_at(born, instant(2001, 3, 1, 0) as u64), Some(1));
    assert_eq!(age_at(born, instant(2000, 2, 28, 0) as u64), None);
    // And the circuit agrees with the native ages there.
    let mut leapling = holding();
    leapling.credential.birth_date = born;
    leapling.signature = leapling.credential.sign(&issuer());
    let rows = [(2001, 2, 28, 86_399), (2001, 3, 1, 0), (2001, 12, 31, 0)]
        .iter()
        .map(|&(y, m, d, s)| {
            let time = instant(y, m, d, s) as u64;
            BoundRow {
                time,
                age: age_at(born, time).unwrap(),
                district: 4,
            }
        })
        .collect();
    let mut young = requirement();
    young.cutoff = 20260101;
    let circuit = EligibilityCircuit::new(
        SHAPE,
        &young,
        Fr::from(1u8),
        Fr::from(9u8),
        leapling,
        Segment { index: 0, rows },
    )
    .unwrap();
    assert!(satisfied(circuit.clone()));
    let lying = with_rows(circuit, |rows| rows[1].age = 0);
    assert!(!satisfied(lying));
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(12))]

    /// The native ages are the calendar's (chrono's), and honest rows at any birth date
    /// and time satisfy the circuit.
    #[test]
    fn ages_follow_the_calendar_and_honest_rows_satisfy(
        year in 1900i32..2008,
        month in 1u32..=12,
        day in 1u32..=28,
        offset in 0u64..(40 * 365 * 86_400),
    ) {
        let born = (year as u32) * 10_000 + month * 100 + day;
        let birth = chrono::NaiveDate::from_ymd_opt(year, month, day).unwrap();
        // Row times are unsigned seconds below 2^32.
        let adult = birthday(born, 18).max(0) as u64;
        let time = (adult + offset).min(u64::from(u32::MAX) - 86_400 * 200);
        let date = chrono::DateTime::from_timestamp(time as i64, 0).unwrap().date_naive();
        let calendar = date.years_since(birth).unwrap();
        proptest::prop_assert_eq!(age_at(born, time), Some(u64::from(calendar)));

        let mut h = holding();
        h.credential.birth_date = born;
        h.signature = h.credential.sign(&issuer());
        let rows = [time, time + 86_400 * 200]
            .iter()
            .map(|&t| BoundRow { time: t, age: age_at(born, t).unwrap(), district: 4 })
            .collect();
        let circuit = EligibilityCircuit::new(
            SHAPE, &requirement(), Fr::from(1u8), Fr::from(9u8), h, Segment { index: 0, rows },
        ).unwrap();
        proptest::prop_assert!(satisfied(circuit));
    }
}

#[test]
fn only_the_holder_of_the_secret_proves_a_withdrawal() {
    let mut rng = rng(62);
    let pk = snark::setup::<WithdrawalCircuit, _>(&WithdrawalShape, &mut rng).unwrap();
    let secret = holding().secret;
    let circuit = WithdrawalCircuit::new(secret, Fr::from(1u8), Fr::from(7u8));
    let inputs = WithdrawalCircuit::public_inputs_of(
        Fr::from(1u8),
        nullifier(secret, Fr::from(1u8)),
        Fr::from(7u8),
    );
    let proof = snark::prove(&pk, circuit, &mut rng).unwrap();
    assert_every_input_is_bound(pk.verifying_key(), &inputs, &proof);
    // Another secret does not open this nullifier.
    let mut lying = circuit;
    lying.secret += Fr::from(1u8);
    assert!(!satisfied(lying));
}
