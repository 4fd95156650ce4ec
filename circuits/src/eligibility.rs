//! The eligibility circuit: a donor holds a credential an accepted issuer signed, was
//! born on or before a cutoff date (so is an adult on the donation date), lives in one of
//! the dataset's allowed districts, and derives a per-dataset nullifier from their secret;
//! nothing else is revealed (not the birth date, the district, the credential or the
//! signature), and the proof is bound to the hash of the donated records.
//!
//! - holder: `Poseidon(HOLDER_TAG, secret)`, what an issuer signs for (never the secret);
//! - credential message: `Poseidon(CREDENTIAL_TAG, holder, birth date, district)`, signed
//!   with EdDSA-Poseidon ([`crate::eddsa`]);
//! - nullifier: `Poseidon(NULLIFIER_TAG, secret, scope)`: the same donor gets the same
//!   nullifier within a scope (a dataset), and unlinkable ones across scopes.
//!
//! The donated rows' credential-bound columns are bound too ([`Bound`]): a proof covers one
//! segment of a donation (up to the shape's `rows` rows) and shows, for each row, that its
//! `age` is the holder's age in whole years at the row's time, and its district the
//! credential's district. The rows enter as a digest the node recomputes from the file
//! ([`rows_digest`]): each row packs `1 + 2 time + 2^42 age + 2^50 district` (only the
//! bound terms; a padding slot is 0), so a row cannot be dropped, added or changed. Ages
//! follow from the instants of the holder's birthdays (UTC midnight of the birth date's
//! month and day in each year; 29 February falls on 1 March in common years), computed in
//! the circuit once for ages `A`, `A + 1` and `A + 2`, where `A` is the youngest age among
//! the segment's rows; each row then costs two 25-bit comparisons. So a segment's rows
//! span at most one birthday (less than a year).
//!
//! [`WithdrawalCircuit`] proves knowledge of the secret behind a nullifier, bound to a
//! withdrawal request, so a donor can withdraw without revealing anything more.
//!
//! Dates are `YYYYMMDD` integers, whose order is the calendar's. Public inputs, in order:
//! issuer key (x, y), cutoff, the allowed districts (padded to the shape by repeating
//! one), scope, records hash, nullifier, and (when the shape binds rows) the rows digest.

use ark_ff::{BigInteger, Field, PrimeField};
use ark_r1cs_std::{
    alloc::AllocVar,
    boolean::Boolean,
    eq::EqGadget,
    fields::{fp::FpVar, FieldVar},
    groups::curves::twisted_edwards::AffineVar,
    GR1CSVar,
};
use ark_relations::gr1cs::{ConstraintSynthesizer, ConstraintSystemRef, SynthesisError};

use crate::{
    eddsa::{self, Point, SecretKey, Signature},
    gadgets::{is_member, pow2, to_bits, witness_bits},
    poseidon, snark, CircuitError, Fr,
};

/// Domain tag of holder commitments.
pub const HOLDER_TAG: u64 = 0x7a6b_6611;
/// Domain tag of credential messages.
pub const CREDENTIAL_TAG: u64 = 0x7a6b_6612;
/// Domain tag of nullifiers.
pub const NULLIFIER_TAG: u64 = 0x7a6b_6613;
/// Bits of a `YYYYMMDD` date (99991231 < 2^27).
pub const DATE_BITS: u32 = 27;
/// Bits of a district code.
pub const DISTRICT_BITS: u32 = 16;
/// Bits of a signature's `S` (below BabyJubJub's subgroup order, itself below 2^251).
const S_BITS: usize = 251;
/// Domain tag of a segment's rows digest.
pub const ROWS_TAG: u64 = 0x7a6b_6614;
/// Bits of an age in whole years (the built-in `age` columns' width).
pub const AGE_BITS: u32 = 7;
/// Bits of a row time, seconds since 1970-01-01 UTC (the built-in time columns' width).
pub const TIME_BITS: u32 = 32;
/// Bits of a span within one year of someone's life (at most 366 days of seconds).
const YEAR_SPAN_BITS: u32 = 25;
/// Where a packed row puts its age and its district.
const AGE_SHIFT: u32 = 42;
const DISTRICT_SHIFT: u32 = 50;
const SECONDS_PER_DAY: i64 = 86_400;
/// Days from 0000-03-01 (proleptic Gregorian) to 1970-01-01.
const EPOCH_DAYS: i64 = 719_468;

/// Which of a donated row's columns the credential backs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Bound {
    /// The row's age: whole years from the birth date to the row's time.
    pub age: bool,
    /// The row's district: the credential's residence district.
    pub district: bool,
}

impl Bound {
    /// Whether any column is bound (otherwise proofs bind no rows).
    pub fn any(&self) -> bool {
        self.age || self.district
    }

    /// The bound values in words: "age and district", "age", "district" or "no".
    pub fn in_words(&self) -> &'static str {
        match (self.age, self.district) {
            (true, true) => "age and district",
            (true, false) => "age",
            (false, true) => "district",
            (false, false) => "no",
        }
    }

    fn describe(&self) -> &'static str {
        match (self.age, self.district) {
            (true, true) => "age+district",
            (true, false) => "age",
            (false, true) => "district",
            (false, false) => "none",
        }
    }
}

/// A donated row's credential-bound values, as the node reads them from the file
/// (those a [`Bound`] leaves out are ignored).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BoundRow {
    /// Seconds since 1970-01-01 UTC.
    pub time: u64,
    /// Age in whole years.
    pub age: u64,
    /// District code.
    pub district: u64,
}

impl BoundRow {
    /// The field element a row enters the rows digest as: `1 + 2 time + 2^42 age +
    /// 2^50 district`, bound terms only. Values must fit their widths (`TIME_BITS`,
    /// `AGE_BITS`, `DISTRICT_BITS`), which makes the packing one-to-one.
    pub fn packed(&self, bound: Bound) -> Fr {
        let mut packed = Fr::from(1u8);
        if bound.age {
            packed += Fr::from(2 * self.time) + pow2(AGE_SHIFT) * Fr::from(self.age);
        }
        if bound.district {
            packed += pow2(DISTRICT_SHIFT) * Fr::from(self.district);
        }
        packed
    }
}

/// One proof's share of a donation: the segment's index in the file (rows `index * R`
/// onwards, for a shape of `R` rows) and its rows' bound values.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    /// Position of the segment in the donation.
    pub index: u64,
    /// Its rows, at most the shape's.
    pub rows: Vec<BoundRow>,
}

/// The digest of a segment's bound rows, padded with zeros to `capacity` slots:
/// `chain([ROWS_TAG, index, packed rows..., 0...])`.
pub fn rows_digest(bound: Bound, segment: &Segment, capacity: usize) -> Fr {
    let rows = segment.rows.iter().map(|r| r.packed(bound));
    let padding = std::iter::repeat_n(Fr::from(0u8), capacity.saturating_sub(segment.rows.len()));
    let inputs: Vec<Fr> = [Fr::from(ROWS_TAG), Fr::from(segment.index)]
        .into_iter()
        .chain(rows)
        .chain(padding)
        .collect();
    poseidon::chain(&inputs)
}

/// Year, month and day of a `YYYYMMDD` date.
fn civil(date: u32) -> (i64, i64, i64) {
    (
        i64::from(date / 10_000),
        i64::from(date / 100 % 100),
        i64::from(date % 100),
    )
}

/// Days from 1970-01-01 to `year-month-day` (month 1..=12), proleptic Gregorian; a day
/// past the month's end rolls into the next month (29 February of a common year is
/// 1 March).
pub fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let march_year = year - i64::from(month <= 2);
    let march_month = if month > 2 { month - 3 } else { month + 9 };
    let day_of_year = (153 * march_month + 2) / 5 + day - 1;
    365 * march_year + march_year.div_euclid(4) - march_year.div_euclid(100)
        + march_year.div_euclid(400)
        + day_of_year
        - EPOCH_DAYS
}

/// The instant (seconds since 1970-01-01 UTC) of the holder's `years`-th birthday.
pub fn birthday(birth_date: u32, years: u64) -> i64 {
    let (year, month, day) = civil(birth_date);
    SECONDS_PER_DAY * days_from_civil(year + years as i64, month, day)
}

/// The holder's age in whole years at `time`, or `None` before their birth.
pub fn age_at(birth_date: u32, time: u64) -> Option<u64> {
    let time = time as i64;
    if time < birthday(birth_date, 0) {
        return None;
    }
    let (year, _, _) = civil(birth_date);
    let guess = (1970 + time / (365 * SECONDS_PER_DAY + SECONDS_PER_DAY / 4) - year).max(0) as u64;
    // The guess is within one year of the age; step to the last birthday before `time`.
    let mut age = guess.saturating_sub(1);
    while birthday(birth_date, age + 1) <= time {
        age += 1;
    }
    while age > 0 && birthday(birth_date, age) > time {
        age -= 1;
    }
    Some(age)
}

/// Why a segment's rows cannot be proven with `holding`'s credential: the first row (its
/// position in the segment) and bound column that disagree, or rows spanning more than one
/// birthday. `None` when every row agrees.
pub fn row_mismatch(
    bound: Bound,
    credential: &Credential,
    rows: &[BoundRow],
) -> Option<(usize, String)> {
    let mut youngest: Option<u64> = None;
    for (i, row) in rows.iter().enumerate() {
        if bound.district && row.district != credential.district {
            return Some((
                i,
                format!(
                    "district {} is not the credential's district {}",
                    row.district, credential.district
                ),
            ));
        }
        if bound.age {
            let Some(age) = age_at(credential.birth_date, row.time) else {
                return Some((i, "time is before the holder's birth".into()));
            };
            if row.age != age {
                return Some((
                    i,
                    format!(
                        "age {} is not the holder's age {age} at the row's time",
                        row.age
                    ),
                ));
            }
            if age >> AGE_BITS != 0 || row.time >> TIME_BITS != 0 {
                return Some((i, "age or time beyond the columns' widths".into()));
            }
            youngest = Some(youngest.map_or(age, |y| y.min(age)));
        }
    }
    if let Some(youngest) = youngest {
        if let Some(i) = rows.iter().position(|r| r.age > youngest + 1) {
            return Some((
                i,
                "the segment's rows span more than one birthday: split the donation".into(),
            ));
        }
    }
    None
}

/// Everything that fixes the circuit: how many allowed districts it takes, and which
/// columns of how many donated rows one proof binds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EligibilityShape {
    /// Slots of the allowed-district list (at least 1).
    pub districts: usize,
    /// Rows one proof binds (0 when nothing is bound).
    pub rows: usize,
    /// The credential-bound columns.
    pub bound: Bound,
}

impl EligibilityShape {
    /// The shape's canonical text (its key's name), as for the query circuits' shapes.
    pub fn description(&self) -> String {
        format!(
            "eligibility/v3 districts={} rows={} bound={}",
            self.districts,
            self.rows,
            self.bound.describe()
        )
    }

    /// The shape a description names, if it is one.
    pub fn parse(description: &str) -> Option<Self> {
        let rest = description.strip_prefix("eligibility/v3 districts=")?;
        let (districts, rest) = rest.split_once(" rows=")?;
        let (rows, bound) = rest.split_once(" bound=")?;
        let bound = match bound {
            "age+district" => Bound {
                age: true,
                district: true,
            },
            "age" => Bound {
                age: true,
                district: false,
            },
            "district" => Bound {
                age: false,
                district: true,
            },
            "none" => Bound::default(),
            _ => return None,
        };
        let shape = Self {
            districts: districts.parse().ok()?,
            rows: rows.parse().ok()?,
            bound,
        };
        (shape.description() == description).then_some(shape)
    }

    /// Whether proofs of this shape bind rows.
    pub fn binds_rows(&self) -> bool {
        self.rows > 0 && self.bound.any()
    }
}

/// What an issuer attests of a holder.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Credential {
    /// The holder's commitment, [`holder`] of their secret.
    pub holder: Fr,
    /// Birth date, `YYYYMMDD`.
    pub birth_date: u32,
    /// Residence district code.
    pub district: u64,
}

impl Credential {
    /// The field element the issuer signs.
    pub fn message(&self) -> Fr {
        poseidon::hash(&[
            Fr::from(CREDENTIAL_TAG),
            self.holder,
            Fr::from(self.birth_date),
            Fr::from(self.district),
        ])
    }

    /// The issuer's signature on this credential.
    pub fn sign(&self, issuer: &SecretKey) -> Signature {
        issuer.sign(self.message())
    }
}

/// A holder's public commitment to their secret.
pub fn holder(secret: Fr) -> Fr {
    poseidon::hash(&[Fr::from(HOLDER_TAG), secret])
}

/// The holder's nullifier within `scope`.
pub fn nullifier(secret: Fr, scope: Fr) -> Fr {
    poseidon::hash(&[Fr::from(NULLIFIER_TAG), secret, scope])
}

/// The public statement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EligibilityInstance {
    /// The issuer's public key (the verifier checks it is an accepted, valid key).
    pub issuer: Point,
    /// Latest birth date that is eligible, `YYYYMMDD`.
    pub cutoff: u32,
    /// Allowed district codes.
    pub districts: Vec<u64>,
    /// The scope nullifiers are unique in (a dataset).
    pub scope: Fr,
    /// Hash of the donated records the proof is bound to.
    pub records: Fr,
    /// The donor's nullifier in `scope`.
    pub nullifier: Fr,
    /// The digest of the segment's bound rows ([`rows_digest`]); unused by shapes that
    /// bind no rows.
    pub rows: Fr,
}

impl EligibilityInstance {
    /// The public-input vector a verifier checks a proof against, after checking the
    /// issuer key, the cutoff and the district list against the shape.
    pub fn public_inputs(&self, shape: &EligibilityShape) -> Result<Vec<Fr>, CircuitError> {
        if !eddsa::is_valid_key(&self.issuer) {
            return Err(CircuitError::InvalidQuery(
                "the issuer key is not a BabyJubJub public key".into(),
            ));
        }
        if u64::from(self.cutoff) >> DATE_BITS != 0 {
            return Err(CircuitError::InvalidQuery(format!(
                "cutoff {} is not a YYYYMMDD date",
                self.cutoff
            )));
        }
        if self.districts.is_empty()
            || self.districts.len() > shape.districts
            || self.districts.iter().any(|d| d >> DISTRICT_BITS != 0)
        {
            return Err(CircuitError::InvalidQuery(format!(
                "the allowed districts must be 1 to {} codes below 2^{DISTRICT_BITS}",
                shape.districts
            )));
        }
        Ok(self.assemble(shape))
    }

    /// The public-input vector, the district list padded by repeating its first item.
    fn assemble(&self, shape: &EligibilityShape) -> Vec<Fr> {
        let first = self.districts.first().copied().unwrap_or(0);
        let districts =
            (0..shape.districts).map(|i| Fr::from(self.districts.get(i).copied().unwrap_or(first)));
        [self.issuer.x, self.issuer.y, Fr::from(self.cutoff)]
            .into_iter()
            .chain(districts)
            .chain([self.scope, self.records, self.nullifier])
            .chain(shape.binds_rows().then_some(self.rows))
            .collect()
    }
}

/// Native twin: whether `holding` meets `instance`'s issuer, cutoff and districts, with
/// the nullifier `instance` states, and (for a shape that binds rows) whether the
/// segment's rows agree with the credential and hash to the instance's rows digest.
pub fn holds(
    shape: &EligibilityShape,
    instance: &EligibilityInstance,
    holding: &Holding,
    segment: &Segment,
) -> bool {
    let Holding {
        credential,
        signature,
        secret,
    } = holding;
    let rows_hold = !shape.binds_rows()
        || (segment.rows.len() <= shape.rows
            && row_mismatch(shape.bound, credential, &segment.rows).is_none()
            && instance.rows == rows_digest(shape.bound, segment, shape.rows));
    rows_hold
        && credential.holder == holder(*secret)
        && eddsa::verify(&instance.issuer, credential.message(), signature)
        && credential.birth_date <= instance.cutoff
        && instance.districts.contains(&credential.district)
        && credential.district >> DISTRICT_BITS == 0
        && instance.nullifier == nullifier(*secret, instance.scope)
}

/// What a dataset requires of donors: the issuer, the cutoff, the allowed districts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Requirement {
    /// The issuer's public key.
    pub issuer: Point,
    /// Latest eligible birth date, `YYYYMMDD`.
    pub cutoff: u32,
    /// Allowed district codes.
    pub districts: Vec<u64>,
}

/// What a holder keeps: their credential, the issuer's signature on it, their secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Holding {
    /// The credential.
    pub credential: Credential,
    /// The issuer's signature on it.
    pub signature: Signature,
    /// The secret behind the credential's holder commitment.
    pub secret: Fr,
}

/// One eligibility proof's statement and witness.
#[derive(Clone, Debug)]
pub struct EligibilityCircuit {
    /// The shape.
    pub shape: EligibilityShape,
    /// The public statement.
    pub instance: EligibilityInstance,
    /// The witness.
    pub holding: Holding,
    /// The donated rows this proof binds (empty for shapes that bind none).
    pub segment: Segment,
}

impl EligibilityCircuit {
    /// An honest circuit for segment `segment` of a donation of the records hashed to
    /// `records` within `scope`; refused when the holding does not meet `requirement` or
    /// a row disagrees with the credential (there is nothing true to prove).
    pub fn new(
        shape: EligibilityShape,
        requirement: &Requirement,
        scope: Fr,
        records: Fr,
        holding: Holding,
        segment: Segment,
    ) -> Result<Self, CircuitError> {
        if shape.districts == 0 {
            return Err(CircuitError::InvalidShape("no district slots".into()));
        }
        if segment.rows.len() > shape.rows && shape.binds_rows() {
            return Err(CircuitError::InvalidWitness(format!(
                "a segment holds at most {} rows, not {}",
                shape.rows,
                segment.rows.len()
            )));
        }
        if let Some((row, why)) = shape
            .binds_rows()
            .then(|| row_mismatch(shape.bound, &holding.credential, &segment.rows))
            .flatten()
        {
            return Err(CircuitError::InvalidWitness(format!(
                "row {row} of segment {}: {why}",
                segment.index
            )));
        }
        let instance = EligibilityInstance {
            issuer: requirement.issuer,
            cutoff: requirement.cutoff,
            districts: requirement.districts.clone(),
            scope,
            records,
            nullifier: nullifier(holding.secret, scope),
            rows: rows_digest(shape.bound, &segment, shape.rows),
        };
        instance.public_inputs(&shape)?;
        if !holds(&shape, &instance, &holding, &segment) {
            return Err(CircuitError::InvalidWitness(
                "the credential does not make its holder eligible: a wrong secret, a bad \
                 signature, born after the cutoff, or a district outside the allowed set"
                    .into(),
            ));
        }
        Ok(Self {
            shape,
            instance,
            holding,
            segment,
        })
    }
}

impl snark::Circuit for EligibilityCircuit {
    type Shape = EligibilityShape;

    /// A placeholder with a real signature (the gadget needs valid curve points).
    fn blank(shape: &EligibilityShape) -> Result<Self, CircuitError> {
        let issuer = SecretKey(eddsa::Scalar::from(1u8));
        let secret = Fr::from(1u8);
        let credential = Credential {
            holder: holder(secret),
            birth_date: 19_700_101,
            district: 0,
        };
        let requirement = Requirement {
            issuer: issuer.public_key(),
            cutoff: 19_700_101,
            districts: vec![0],
        };
        let holding = Holding {
            credential,
            signature: credential.sign(&issuer),
            secret,
        };
        let segment = Segment::default();
        Self::new(
            *shape,
            &requirement,
            Fr::from(0u8),
            Fr::from(0u8),
            holding,
            segment,
        )
    }

    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        self.instance.public_inputs(&self.shape)
    }
}

impl EligibilityCircuit {
    /// The digest of the segment's rows, each checked against the credential: its district
    /// is the credential's, and its age the holder's at its time.
    fn bind_rows(
        &self,
        cs: ConstraintSystemRef<Fr>,
        birth_date: &FpVar<Fr>,
        district: &FpVar<Fr>,
    ) -> Result<FpVar<Fr>, SynthesisError> {
        let bound = self.shape.bound;
        let rows = &self.segment.rows;
        let youngest_value = rows.iter().map(|r| r.age).min().unwrap_or(0);
        // With ages bound: the segment's youngest age, and the birthdays around it.
        let ages = if bound.age {
            let youngest = FpVar::new_witness(cs.clone(), || Ok(Fr::from(youngest_value)))?;
            to_bits(&youngest, AGE_BITS)?;
            let instants = birthday_instants(
                cs.clone(),
                self.holding.credential.birth_date,
                birth_date,
                &youngest,
                youngest_value,
            )?;
            Some((youngest, instants))
        } else {
            None
        };
        let mut hashed = vec![
            FpVar::constant(Fr::from(ROWS_TAG)),
            FpVar::new_witness(cs.clone(), || Ok(Fr::from(self.segment.index)))?,
        ];
        for slot in 0..self.shape.rows {
            let row = rows.get(slot);
            let present = FpVar::from(Boolean::new_witness(cs.clone(), || Ok(row.is_some()))?);
            let mut packed = FpVar::constant(Fr::from(1u8));
            if let Some((youngest, [first, second, third])) = &ages {
                let older = FpVar::from(Boolean::new_witness(cs.clone(), || {
                    Ok(row.is_some_and(|r| r.age > youngest_value))
                })?);
                let time =
                    FpVar::new_witness(cs.clone(), || Ok(Fr::from(row.map_or(0, |r| r.time))))?;
                // Its age is `youngest + older`: it lies between that birthday and the next.
                let from = first + &older * (second - first);
                let until = second + &older * (third - second);
                to_bits(&(&present * (&time - from)), YEAR_SPAN_BITS)?;
                to_bits(
                    &(&present * (until - &time - FpVar::constant(Fr::from(1u8)))),
                    YEAR_SPAN_BITS,
                )?;
                packed += time.double()? + (youngest + older) * pow2(AGE_SHIFT);
            }
            if bound.district {
                packed += district * pow2(DISTRICT_SHIFT);
            }
            hashed.push(present * packed);
        }
        poseidon::gadget::chain(&hashed)
    }
}

/// `v = divisor * q + r` with `0 <= r < divisor` and `q < 2^quotient_bits`, where `value`
/// is `v` as an integer: returns `q`, `floor(v / divisor)`.
fn floor_div(
    v: &FpVar<Fr>,
    value: i64,
    divisor: i64,
    quotient_bits: u32,
) -> Result<FpVar<Fr>, SynthesisError> {
    let cs = v.cs();
    let field = |x: i64| match x >= 0 {
        true => Fr::from(x as u64),
        false => -Fr::from(x.unsigned_abs()),
    };
    let q = FpVar::new_witness(cs.clone(), || Ok(field(value.div_euclid(divisor))))?;
    let r = FpVar::new_witness(cs, || Ok(field(value.rem_euclid(divisor))))?;
    let remainder_bits = 64 - (divisor - 1).leading_zeros();
    to_bits(&r, remainder_bits)?;
    to_bits(&(FpVar::constant(field(divisor - 1)) - &r), remainder_bits)?;
    to_bits(&q, quotient_bits)?;
    (&q * field(divisor) + &r).enforce_equal(v)?;
    Ok(q)
}

/// In the circuit, the instants of the holder's birthdays at ages `youngest`, `+ 1` and
/// `+ 2`, as [`birthday`] computes them: the birth date split into year, month and day,
/// and the day count of each year's anniversary.
fn birthday_instants(
    cs: ConstraintSystemRef<Fr>,
    birth_value: u32,
    birth_date: &FpVar<Fr>,
    youngest: &FpVar<Fr>,
    youngest_value: u64,
) -> Result<[FpVar<Fr>; 3], SynthesisError> {
    let (year_value, month_value, day_value) = civil(birth_value);
    let constant = |x: i64| FpVar::constant(Fr::from(x as u64));
    let year = FpVar::new_witness(cs.clone(), || Ok(Fr::from(year_value as u64)))?;
    let month = FpVar::new_witness(cs.clone(), || Ok(Fr::from(month_value as u64)))?;
    let day = FpVar::new_witness(cs.clone(), || Ok(Fr::from(day_value as u64)))?;
    to_bits(&year, 14)?;
    to_bits(&(&month - constant(1)), 4)?;
    to_bits(&(constant(12) - &month), 4)?;
    to_bits(&(&day - constant(1)), 5)?;
    (&year * Fr::from(10_000u64) + &month * Fr::from(100u64) + &day).enforce_equal(birth_date)?;
    // January and February count as the previous March-based year.
    let early = FpVar::from(Boolean::new_witness(cs, || Ok(month_value <= 2))?);
    let slack = &month - constant(3) + &early * (constant(5) - month.double()?);
    to_bits(&slack, 4)?;
    let march_month = &month - constant(3) + &early * Fr::from(12u64);
    let march_month_value = if month_value > 2 {
        month_value - 3
    } else {
        month_value + 9
    };
    let day_of_year = floor_div(
        &(&march_month * Fr::from(153u64) + constant(2)),
        153 * march_month_value + 2,
        5,
        11,
    )? + &day
        - constant(1);
    let mut instants = Vec::with_capacity(3);
    for k in 0..3 {
        let march_year = &year + youngest + constant(k) - &early;
        let value = year_value + youngest_value as i64 + k - i64::from(month_value <= 2);
        let leap4 = floor_div(&march_year, value, 4, 15)?;
        let leap100 = floor_div(&march_year, value, 100, 9)?;
        let leap400 = floor_div(&march_year, value, 400, 7)?;
        let days = &march_year * Fr::from(365u64) + leap4 - leap100 + leap400 + &day_of_year
            - constant(EPOCH_DAYS);
        instants.push(days * Fr::from(SECONDS_PER_DAY as u64));
    }
    Ok(instants.try_into().expect("three instants"))
}

impl ConstraintSynthesizer<Fr> for EligibilityCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let slots = self.shape.districts;
        let issuer = AffineVar::new_input(cs.clone(), || {
            Ok(ark_ec::twisted_edwards::Projective::from(
                self.instance.issuer,
            ))
        })?;
        let inputs = self.instance.assemble(&self.shape)[2..]
            .iter()
            .map(|v| FpVar::new_input(cs.clone(), || Ok(*v)))
            .collect::<Result<Vec<_>, _>>()?;
        let cutoff = &inputs[0];
        let districts = &inputs[1..1 + slots];
        let [scope, records, nullifier] = &inputs[1 + slots..4 + slots] else {
            unreachable!("three public inputs after the districts")
        };

        let secret = FpVar::new_witness(cs.clone(), || Ok(self.holding.secret))?;
        let birth_date = Boolean::le_bits_to_fp(&witness_bits(
            cs.clone(),
            Some(Fr::from(self.holding.credential.birth_date)),
            DATE_BITS,
        )?)?;
        let district = Boolean::le_bits_to_fp(&witness_bits(
            cs.clone(),
            Some(Fr::from(self.holding.credential.district)),
            DISTRICT_BITS,
        )?)?;

        if self.shape.binds_rows() {
            let rows = &inputs[4 + slots];
            self.bind_rows(cs.clone(), &birth_date, &district)?
                .enforce_equal(rows)?;
        }

        // Born on or before the cutoff: both are dates, so the difference fits.
        to_bits(cutoff, DATE_BITS)?;
        to_bits(&(cutoff - &birth_date), DATE_BITS)?;
        is_member(&district, districts)?.enforce_equal(&Boolean::TRUE)?;

        // The issuer signed this holder's credential.
        let holder =
            poseidon::gadget::hash(&[FpVar::constant(Fr::from(HOLDER_TAG)), secret.clone()])?;
        let message = poseidon::gadget::hash(&[
            FpVar::constant(Fr::from(CREDENTIAL_TAG)),
            holder,
            birth_date,
            district,
        ])?;
        let r8 = eddsa::witness_point(cs.clone(), self.holding.signature.r8)?;
        // S < subOrder < r: the same integer in the base field.
        let s = Fr::from_le_bytes_mod_order(&self.holding.signature.s.into_bigint().to_bytes_le());
        let s_bits = witness_bits(cs.clone(), Some(s), S_BITS as u32)?;
        eddsa::verify_gadget(&issuer, &message, &r8, &s_bits)?;

        // The nullifier, and the records hash bound into the proof (a public input that
        // appears in no constraint would not be).
        poseidon::gadget::hash(&[
            FpVar::constant(Fr::from(NULLIFIER_TAG)),
            secret,
            scope.clone(),
        ])?
        .enforce_equal(nullifier)?;
        let square = FpVar::new_witness(cs.clone(), || Ok(self.instance.records.square()))?;
        square.enforce_equal(&(records * records))?;
        Ok(())
    }
}

/// The withdrawal circuit's shape (it has no parameters).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct WithdrawalShape;

impl WithdrawalShape {
    /// The shape's canonical text (its key's name).
    pub const DESCRIPTION: &'static str = "withdrawal/v1";
}

/// A donor proves they know the secret behind a nullifier, to withdraw that donor's
/// donations: public scope, nullifier and `binding` (the hash of the withdrawal request,
/// so a proof cannot be replayed for another), witness the secret.
#[derive(Clone, Copy, Debug)]
pub struct WithdrawalCircuit {
    /// The dataset's scope.
    pub scope: Fr,
    /// The nullifier whose donations are withdrawn.
    pub nullifier: Fr,
    /// What the proof is bound to.
    pub binding: Fr,
    /// The holder's secret.
    pub secret: Fr,
}

impl WithdrawalCircuit {
    /// The circuit for `secret` in `scope`, bound to `binding`.
    pub fn new(secret: Fr, scope: Fr, binding: Fr) -> Self {
        Self {
            scope,
            nullifier: nullifier(secret, scope),
            binding,
            secret,
        }
    }

    /// The public inputs: scope, nullifier, binding.
    pub fn public_inputs_of(scope: Fr, nullifier: Fr, binding: Fr) -> Vec<Fr> {
        vec![scope, nullifier, binding]
    }
}

impl snark::Circuit for WithdrawalCircuit {
    type Shape = WithdrawalShape;

    fn blank(_: &WithdrawalShape) -> Result<Self, CircuitError> {
        Ok(Self::new(Fr::from(1u8), Fr::from(0u8), Fr::from(0u8)))
    }

    fn public_inputs(&self) -> Result<Vec<Fr>, CircuitError> {
        Ok(Self::public_inputs_of(
            self.scope,
            self.nullifier,
            self.binding,
        ))
    }
}

impl ConstraintSynthesizer<Fr> for WithdrawalCircuit {
    fn generate_constraints(self, cs: ConstraintSystemRef<Fr>) -> Result<(), SynthesisError> {
        let scope = FpVar::new_input(cs.clone(), || Ok(self.scope))?;
        let claimed = FpVar::new_input(cs.clone(), || Ok(self.nullifier))?;
        let binding = FpVar::new_input(cs.clone(), || Ok(self.binding))?;
        let secret = FpVar::new_witness(cs.clone(), || Ok(self.secret))?;
        poseidon::gadget::hash(&[FpVar::constant(Fr::from(NULLIFIER_TAG)), secret, scope])?
            .enforce_equal(&claimed)?;
        // Bind the request: a public input in no constraint would not be.
        let square = FpVar::new_witness(cs.clone(), || Ok(self.binding.square()))?;
        square.enforce_equal(&(&binding * &binding))?;
        Ok(())
    }
}
