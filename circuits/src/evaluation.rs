//! The random-evaluation argument: how a chunk proof says what its rows add to every
//! group at a cost per row that does not grow with the number of groups.
//!
//! A query's per-group totals (a COUNT and `M` SUMs per group) are the coefficients of a
//! polynomial in one variable: group key `k` and value `m` (0: the count, `1 + m`: measure
//! `m`'s sum) is the coefficient of `X^(k + m · 2^w)`, where `w` is the key's width, so no
//! two coefficients share a monomial. Evaluated at a random challenge `r`, that polynomial
//! is what every selected row contributes, summed:
//! `sum over rows of r^key · (1 + s·v_1 + ... + s^M·v_M)` with `s = r^(2^w)`. A chunk proof
//! computes its rows' share from the bits of each row's key (two constraints a bit, see
//! [`gated_power`]), so it never compares a row with a group; the root combine opens the
//! claimed totals, evaluates their polynomial at `r` ([`slot_powers`]) and checks it
//! equals the sum of the chunks' shares. Two different polynomials of degree below
//! `D = (M + 1) · 2^w` agree at a random point with probability at most `D / |F|`
//! (Schwartz-Zippel); DESIGN.md gives the whole argument and how the challenge is fixed.

use std::collections::BTreeMap;

use ark_ff::{Field, One};
use ark_r1cs_std::{
    boolean::Boolean,
    fields::{fp::FpVar, FieldVar},
};
use ark_relations::gr1cs::SynthesisError;

use crate::{commitment::EVALUATION_TAG, poseidon, CircuitError, Fr};

/// One grouping column of a [`GroupDomain`]: a code is `width` bits, and the column's
/// groups are codes `0..codes`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct GroupColumn {
    /// Bits of a code (the column's width in the chunk layout).
    pub width: u32,
    /// Codes that are groups: `0..codes`, at most `2^width`.
    pub codes: u64,
}

/// The group slots of a GROUP BY: every tuple of codes, the first column varying
/// slowest. A slot's key packs its codes, each in its column's width, the first column in
/// the highest bits, so keys sort as the tuples they pack and no two tuples share a key.
/// Without grouping columns there is one slot, of key 0.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct GroupDomain {
    /// The grouping columns, in GROUP BY order.
    pub columns: Vec<GroupColumn>,
}

/// Most group slots of any domain.
pub const MAX_SLOTS: usize = 4096;

impl GroupDomain {
    /// Checks that every column is 1 to 64 bits wide with 1 to `2^width` codes, the key
    /// fits 64 bits and there are at most [`MAX_SLOTS`] slots.
    pub fn validate(&self) -> Result<(), CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidShape(msg));
        for (i, c) in self.columns.iter().enumerate() {
            if !(1..=64).contains(&c.width)
                || c.codes == 0
                || u128::from(c.codes) > 1u128 << c.width
            {
                return bad(format!(
                    "grouping column {i}: {} codes of {} bits",
                    c.codes, c.width
                ));
            }
        }
        if self.key_width() > 64 {
            return bad(format!(
                "the grouping columns' widths add up to {} bits; a group key has at most 64",
                self.key_width()
            ));
        }
        let slots = self.columns.iter().try_fold(1u128, |n, c| {
            Some(n * u128::from(c.codes)).filter(|n| *n <= MAX_SLOTS as u128)
        });
        match slots {
            Some(_) => Ok(()),
            None => bad(format!("more than {MAX_SLOTS} group slots")),
        }
    }

    /// Number of slots `G` (the product of the columns' codes; 1 without columns).
    pub fn slots(&self) -> usize {
        self.columns.iter().map(|c| c.codes as usize).product()
    }

    /// Bits of a key: the columns' widths added up.
    pub fn key_width(&self) -> u32 {
        self.columns.iter().map(|c| c.width).sum()
    }

    /// The codes of slot `slot`, in GROUP BY order.
    pub fn codes(&self, slot: usize) -> Vec<u64> {
        let mut rest = slot as u64;
        let mut codes: Vec<u64> = self
            .columns
            .iter()
            .rev()
            .map(|c| {
                let code = rest % c.codes;
                rest /= c.codes;
                code
            })
            .collect();
        codes.reverse();
        codes
    }

    /// The key packing `codes` (GROUP BY order): each code shifted past the widths of the
    /// columns after it.
    pub fn pack(&self, codes: &[u64]) -> u64 {
        self.columns
            .iter()
            .zip(codes)
            .fold(0u128, |key, (c, &code)| (key << c.width) | u128::from(code)) as u64
    }

    /// The key of slot `slot`.
    pub fn key(&self, slot: usize) -> u64 {
        self.pack(&self.codes(slot))
    }

    /// The canonical text, as shape descriptions embed it: `none`, or per column
    /// `codes/width`, joined by `x` (`12/4x24/5`: 12 codes of 4 bits by 24 of 5).
    pub fn description(&self) -> String {
        if self.columns.is_empty() {
            return "none".into();
        }
        self.columns
            .iter()
            .map(|c| format!("{}/{}", c.codes, c.width))
            .collect::<Vec<_>>()
            .join("x")
    }

    /// Reads a [`GroupDomain::description`] back (not checked: see
    /// [`GroupDomain::validate`]).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text == "none" {
            return Ok(Self::default());
        }
        let columns = text
            .split('x')
            .map(|column| {
                let (codes, width) = column
                    .split_once('/')
                    .ok_or_else(|| format!("group column {column:?} is not codes/width"))?;
                let number = |t: &str| {
                    t.parse::<u64>()
                        .map_err(|_| format!("{t:?} in group column {column:?} is not a number"))
                };
                Ok(GroupColumn {
                    codes: number(codes)?,
                    width: u32::try_from(number(width)?).map_err(|e| e.to_string())?,
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(Self { columns })
    }
}

/// The COUNT and per-measure SUMs of one group's selected rows.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Tally {
    /// Selected rows.
    pub count: u64,
    /// Per measure, the sum of what the rows add.
    pub sums: Vec<u128>,
}

/// Per group key, the tally of every group that has selected rows.
pub type Tallies = BTreeMap<u64, Tally>;

/// Adds `more` into `total`, group by group (the tallies of several chunks).
pub fn add_tallies(total: &mut Tallies, more: &Tallies) {
    for (key, tally) in more {
        let sum = total.entry(*key).or_insert_with(|| Tally {
            count: 0,
            sums: vec![0; tally.sums.len()],
        });
        sum.count += tally.count;
        for (sum, s) in sum.sums.iter_mut().zip(&tally.sums) {
            *sum += s;
        }
    }
}

/// The evaluation at `challenge` of the polynomial whose coefficients are the given
/// groups' counts and sums (see the module documentation), for keys of `key_width` bits.
pub fn evaluate<'a>(
    challenge: Fr,
    key_width: u32,
    groups: impl IntoIterator<Item = (u64, u64, &'a [u128])>,
) -> Fr {
    let s = (0..key_width).fold(challenge, |s, _| s.square());
    groups
        .into_iter()
        .map(|(key, count, sums)| {
            let (value, _) = sums
                .iter()
                .fold((Fr::from(count), Fr::one()), |(value, power), &sum| {
                    (value + power * s * Fr::from(sum), power * s)
                });
            challenge.pow([key]) * value
        })
        .sum()
}

/// Commitment to a hidden evaluation: `chain([EVALUATION_TAG, blind, evaluation])`. A
/// chunk proof outputs one over its rows' share; a subtotal combine over its inputs' sum.
pub fn commit(evaluation: Fr, blind: Fr) -> Fr {
    poseidon::chain(&[Fr::from(EVALUATION_TAG), blind, evaluation])
}

/// [`commit`] as a gadget.
pub fn commit_gadget(
    evaluation: &FpVar<Fr>,
    blind: &FpVar<Fr>,
) -> Result<FpVar<Fr>, SynthesisError> {
    poseidon::gadget::chain(&[
        FpVar::constant(Fr::from(EVALUATION_TAG)),
        blind.clone(),
        evaluation.clone(),
    ])
}

/// `r^(2^i)` for `i` in `0..=n`: `n` constraints. Entry `w` is `s` for keys of `w` bits.
pub fn squares(challenge: &FpVar<Fr>, n: u32) -> Result<Vec<FpVar<Fr>>, SynthesisError> {
    let mut out = vec![challenge.clone()];
    for _ in 0..n {
        let last = out.last().expect("starts with r");
        out.push(last.square()?);
    }
    Ok(out)
}

/// `gate · r^key` for a key given by its little-endian `bits`, with `squares[i] =
/// r^(2^i)`: two constraints a bit (`t = acc · bit`, `acc' = acc + t · (r^(2^i) - 1)`).
/// With `gate` the row's selection bit, this is the row's monomial, or zero.
pub fn gated_power(
    gate: &FpVar<Fr>,
    bits: &[Boolean<Fr>],
    squares: &[FpVar<Fr>],
) -> Result<FpVar<Fr>, SynthesisError> {
    let mut acc = gate.clone();
    for (bit, square) in bits.iter().zip(squares) {
        let taken = &acc * FpVar::from(bit.clone());
        acc += taken * (square - Fr::one());
    }
    Ok(acc)
}

/// `r^key` of every slot of `domain`, in slot order, with `squares[i] = r^(2^i)`: per
/// column the powers of its base `r^(2^offset)`, then their products over the tuples
/// (about `2 G` constraints in all).
pub fn slot_powers(
    domain: &GroupDomain,
    squares: &[FpVar<Fr>],
) -> Result<Vec<FpVar<Fr>>, SynthesisError> {
    let mut powers = vec![FpVar::one()];
    let mut offset = domain.key_width();
    for column in &domain.columns {
        offset -= column.width;
        let base = &squares[offset as usize];
        let mut column_powers = vec![FpVar::one()];
        for _ in 1..column.codes {
            let last = column_powers.last().expect("starts with 1");
            column_powers.push(last * base);
        }
        powers = powers
            .iter()
            .flat_map(|p| column_powers.iter().map(move |c| p * c))
            .collect();
    }
    Ok(powers)
}

/// `Σ_m s^(m+1) · sums[m]` added to `count`: one group's value, or one chunk's share from
/// its running count and sums; `M` constraints, with `s_powers[m] = s^(m+1)`.
pub fn combine_values(count: &FpVar<Fr>, sums: &[FpVar<Fr>], s_powers: &[FpVar<Fr>]) -> FpVar<Fr> {
    sums.iter()
        .zip(s_powers)
        .fold(count.clone(), |value, (sum, power)| value + sum * power)
}

/// `s, s^2, ..., s^M`: `M - 1` constraints.
pub fn powers_of(s: &FpVar<Fr>, m: usize) -> Vec<FpVar<Fr>> {
    let mut out: Vec<FpVar<Fr>> = Vec::with_capacity(m);
    for _ in 0..m {
        let next = match out.last() {
            Some(last) => last * s,
            None => s.clone(),
        };
        out.push(next);
    }
    out
}
