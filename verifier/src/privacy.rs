//! Differential privacy: what a noisy answer costs, how much noise that takes, and what a
//! released number says about the true one.
//!
//! The mechanism is the binomial mechanism (Dwork, Kenthapadi, McSherry, Mironov, Naor,
//! "Our Data, Ourselves", 2006; made verifiable by Biswas and Cormode, "Verifiable
//! Differential Privacy", 2022): a value `v` with sensitivity `s` is released as
//! `floor(v / s) + B`, `B ~ Binomial(n, 1/2)`. Dividing by the sensitivity first makes
//! the released quantity change by at most 1 when one privacy unit comes or goes, so the
//! noise lives on the same lattice as the value (scaling the noise instead would leave
//! `v mod s` exact). [`coins_for`] picks the smallest even `n` whose exact privacy
//! profile [`privacy_delta`] meets the per-value `(epsilon, delta)`; it is exact, not the
//! `n >= 8 log(2/delta) / epsilon^2` bound of the 2006 paper, so it needs several times
//! fewer coins.
//!
//! A query releases a COUNT and (unless it asks for COUNT only) a SUM per group; a unit
//! can change the values of every group it has rows in: one group when the query groups
//! by nothing or by a [unit attribute](crate::schema::UnitBounds::unit_attributes),
//! otherwise up to `min(rows_per_unit, groups)`. The query's `(epsilon, delta)` is split
//! evenly over those values (basic composition), and answers compose the same way in the
//! dataset's budget.

use ark_ff::PrimeField;
use prost::Message;
use sha2::{Digest, Sha256};
use zkfabric_circuits::{noise::MAX_COINS, Fr};
use zkfabric_proto::v1 as pb;

use crate::{
    query::{Aggregand, ProvableQuery},
    schema::{Schema, UnitBounds},
};

/// Why a privacy cost or a noisy query was refused.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PrivacyError(pub String);

/// The largest epsilon one query may spend.
pub const MAX_EPSILON: f64 = 20.0;
/// The largest delta one query may spend.
pub const MAX_DELTA: f64 = 1e-3;
/// The chance that a group of no rows is released anyway: groups whose noisy count does
/// not reach its 95% point under zero rows are suppressed.
const SUPPRESSION_MISS: f64 = 0.05;
/// Bytes of a researcher's nonce.
pub const NONCE_BYTES: usize = 32;

/// An `(epsilon, delta)` privacy cost: what a query spends and a ledger charges.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Cost {
    /// The epsilon spent.
    pub epsilon: f64,
    /// The delta spent.
    pub delta: f64,
}

impl Cost {
    /// A cost a query may ask for: `0 < epsilon <= 20`, `0 < delta <= 1e-3`.
    pub fn new(epsilon: f64, delta: f64) -> Result<Self, PrivacyError> {
        if !(epsilon > 0.0 && epsilon <= MAX_EPSILON) {
            return Err(PrivacyError(format!(
                "epsilon {epsilon} is outside (0, {MAX_EPSILON}]"
            )));
        }
        if !(delta > 0.0 && delta <= MAX_DELTA) {
            return Err(PrivacyError(format!(
                "delta {delta} is outside (0, {MAX_DELTA}]"
            )));
        }
        Ok(Self { epsilon, delta })
    }
}

/// How a differentially private answer's noise is drawn: everything here follows from
/// the schema's unit bounds, the query and its cost, so a verifier recomputes it.
#[derive(Clone, Debug, PartialEq)]
pub struct NoisePlan {
    /// What the whole answer costs.
    pub cost: Cost,
    /// Released values one unit can change (the cost is split evenly over them).
    pub values_charged: u32,
    /// The cost of each value.
    pub per_value: Cost,
    /// Coins per value: the noise is Binomial(coins, 1/2).
    pub coins: u32,
    /// Coins the root combine draws in all: groups x values x coins per value (what its
    /// size, and a node's memory to prove it, grow with).
    pub root_coins: u64,
    /// A COUNT's sensitivity: the most rows one unit adds to a group.
    pub count_step: u64,
    /// Each SUM's sensitivity: those rows, each at its measure's clip bound (in the
    /// aggregand's order).
    pub sum_steps: Vec<u128>,
    /// A group whose noisy count (in steps) is below this is suppressed: the count is
    /// then not distinguishable from zero at 95% (an empty group passes with probability
    /// at most 5%).
    pub threshold: u64,
    /// Half the width of the noise's 95% interval, in steps (computed once: every
    /// estimate's interval uses it).
    pub spread: u32,
}

/// Most coins one noisy root draws, all values together: about 13 constraints a coin, so
/// at most some 14 million constraints (a careless or hostile question, say a GROUP BY
/// of 4,096 groups at a small epsilon, would otherwise make a root no node can prove).
pub const MAX_ROOT_COINS: u64 = 1 << 20;

impl NoisePlan {
    /// The plan for `query` over `groups` group slots of `schema`'s dataset, whose unit
    /// is bounded by `bounds`, at `cost`.
    pub fn new(
        schema: &Schema,
        bounds: &UnitBounds,
        query: &ProvableQuery,
        groups: usize,
        cost: Cost,
    ) -> Result<Self, PrivacyError> {
        let rows = bounds.rows_per_unit;
        let clips: Vec<u128> = match &query.aggregand {
            Aggregand::CountOnly => Vec::new(),
            Aggregand::Sum(measures) => measures
                .iter()
                .map(|m| u128::from(bounds.clip_of(schema, m)))
                .collect(),
            Aggregand::CountWhere { .. } => {
                return Err(PrivacyError(format!(
                    "bool_and / bool_or answer exactly: dataset {} answers with \
                     differential privacy (its schema's [privacy] mode = \"dp\"), so ask for \
                     COUNT(*) with the condition as a filter instead",
                    schema.name
                )))
            }
        };
        let in_one_group = query
            .group_by
            .iter()
            .all(|g| g.bucket.is_none() && bounds.unit_attributes.contains(&g.column));
        let touched = if in_one_group {
            1
        } else {
            rows.min(groups as u64) as u32
        };
        // The count and each sum: every one is a released value a unit moves.
        let kinds = 1 + clips.len() as u32;
        let values_charged = kinds * touched;
        let per_value = Cost {
            epsilon: cost.epsilon / f64::from(values_charged),
            delta: cost.delta / f64::from(values_charged),
        };
        let coins = coins_for(per_value)?;
        let root_coins = groups as u64 * u64::from(kinds) * u64::from(coins);
        if root_coins > MAX_ROOT_COINS {
            return Err(PrivacyError(format!(
                "a noisy answer of {groups} groups x {kinds} values x {coins} coins draws \
                 {root_coins} coins in its root proof (about {} million constraints); at \
                 most {MAX_ROOT_COINS}: ask for fewer groups or sums, or spend more epsilon",
                root_coins * 13 / 1_000_000
            )));
        }
        let sum_steps = clips
            .iter()
            .map(|clip| u128::from(rows) * clip.max(&1))
            .collect();
        Ok(Self {
            cost,
            values_charged,
            per_value,
            coins,
            root_coins,
            count_step: rows,
            sum_steps,
            threshold: upper_quantile(coins, SUPPRESSION_MISS),
            spread: spread(coins, 0.05),
        })
    }

    /// The estimate of a value released as `released` steps of `step`: the noise's mean
    /// removed, and the half step the division dropped on average put back; at least
    /// zero, as the interval's low end is (a count or a sum of unsigned values never is
    /// negative, so an average of a negative sum would mislead). Post-processing of the
    /// released value: it costs no privacy.
    pub fn estimate(&self, released: u128, step: u128) -> i128 {
        let centred = released as i128 - i128::from(self.coins / 2);
        (centred * step as i128 + (step as i128 - 1) / 2).max(0)
    }

    /// A 95% interval for the true value behind `released` steps of `step`.
    pub fn interval(&self, released: u128, step: u128) -> (i128, i128) {
        let z = i128::from(self.spread);
        let centred = released as i128 - i128::from(self.coins / 2);
        let (step, zero) = (step as i128, 0);
        (
            ((centred - z) * step).max(zero),
            ((centred + z) * step + step - 1).max(zero),
        )
    }
}

/// `ln P(B = k)` for `B ~ Binomial(n, 1/2)`, for every `k` in `0..=n`.
fn binomial_log_pmf(n: u32) -> Vec<f64> {
    let mut out = Vec::with_capacity(n as usize + 1);
    let mut ln_p = -f64::from(n) * std::f64::consts::LN_2;
    for k in 0..=n {
        out.push(ln_p);
        ln_p += (f64::from(n - k) / f64::from(k + 1)).ln();
    }
    out
}

/// The exact `delta` at which `Binomial(coins, 1/2)` noise makes a quantity of
/// sensitivity 1 `epsilon`-indistinguishable: `sum_k max(0, P(k) - e^epsilon P(k - 1))`
/// (by the distribution's symmetry, both directions of the shift give the same).
pub fn privacy_delta(coins: u32, epsilon: f64) -> f64 {
    let ln_p = binomial_log_pmf(coins);
    let mut delta = ln_p[0].exp(); // P(0) - e^epsilon P(-1), and P(-1) = 0
    for k in 1..ln_p.len() {
        // P(k) / P(k - 1) only falls with k: once it is at most e^epsilon, no later term
        // is positive. (Compared in logs: the probabilities themselves may underflow.)
        if ln_p[k] - ln_p[k - 1] <= epsilon {
            break;
        }
        delta += ln_p[k].exp() - (epsilon + ln_p[k - 1]).exp();
    }
    delta
}

/// The fewest coins (an even number, so that the noise's mean is whole) whose noise
/// meets `per_value`.
pub fn coins_for(per_value: Cost) -> Result<u32, PrivacyError> {
    let meets = |n: u32| privacy_delta(n, per_value.epsilon) <= per_value.delta;
    let mut high = 2;
    while !meets(high) {
        if high >= MAX_COINS {
            return Err(PrivacyError(format!(
                "epsilon {} and delta {:e} per released value need more than {MAX_COINS} coins: \
                 spend more epsilon, or ask for fewer groups",
                per_value.epsilon, per_value.delta
            )));
        }
        high = (high * 2).min(MAX_COINS);
    }
    let mut low = high / 2; // fails, or is 1
    while high - low > 2 {
        let mid = (low + high) / 2 / 2 * 2;
        if meets(mid) {
            high = mid;
        } else {
            low = mid;
        }
    }
    Ok(high)
}

/// The smallest `t` with `P(B >= t) <= tail` for `B ~ Binomial(coins, 1/2)`.
fn upper_quantile(coins: u32, tail: f64) -> u64 {
    let ln_p = binomial_log_pmf(coins);
    let mut above = 0.0;
    for k in (0..=coins).rev() {
        above += ln_p[k as usize].exp();
        if above > tail {
            return u64::from(k) + 1;
        }
    }
    0
}

/// The smallest `z` with `P(|B - coins/2| > z) <= miss`.
fn spread(coins: u32, miss: f64) -> u32 {
    let above = upper_quantile(coins, miss / 2.0);
    (above.saturating_sub(1) as u32).saturating_sub(coins / 2)
}

/// The query hash the noise is keyed by: SHA-256 over a domain tag, the dataset, the
/// epoch, the canonical query's protobuf bytes and the cost, reduced into the field.
pub fn query_hash(dataset: &str, epoch: u64, query: &pb::ProvableQuery, cost: Cost) -> Fr {
    let mut h = Sha256::new();
    h.update(b"zkfabric/dp-query/v1\0");
    h.update(dataset.as_bytes());
    h.update([0]);
    h.update(epoch.to_be_bytes());
    h.update(query.encode_to_vec());
    h.update(cost.epsilon.to_be_bytes());
    h.update(cost.delta.to_be_bytes());
    Fr::from_be_bytes_mod_order(&h.finalize())
}

/// A fresh researcher's nonce: 32 random bytes from the operating system.
pub fn fresh_nonce() -> Vec<u8> {
    use rand::RngCore;
    let mut nonce = vec![0; NONCE_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut nonce);
    nonce
}

/// A researcher's nonce as the field element the public coins are keyed by.
pub fn nonce_element(nonce: &[u8]) -> Result<Fr, PrivacyError> {
    if nonce.len() != NONCE_BYTES {
        return Err(PrivacyError(format!(
            "the nonce has {} bytes; it has {NONCE_BYTES}",
            nonce.len()
        )));
    }
    Ok(Fr::from_be_bytes_mod_order(nonce))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::Grouping;

    #[test]
    fn coins_meet_the_profile_and_fewer_do_not() {
        for (epsilon, delta) in [(1.0, 1e-6), (0.5, 1e-9), (0.1, 1e-6), (4.0, 1e-5)] {
            let cost = Cost::new(epsilon, delta).unwrap();
            let n = coins_for(cost).unwrap();
            assert_eq!(n % 2, 0);
            assert!(privacy_delta(n, epsilon) <= delta);
            assert!(
                privacy_delta(n - 2, epsilon) > delta,
                "{epsilon} {delta}: {n}"
            );
            // At most epsilon 1, never more than the Gaussian-style bound 8 ln(2/delta) /
            // epsilon^2 asks for (with few coins, 2^-n <= delta rules instead).
            if epsilon <= 1.0 {
                assert!(f64::from(n) <= 8.0 * (2.0 / delta).ln() / (epsilon * epsilon));
            } else {
                assert!(0.5f64.powi(n as i32) <= delta);
            }
        }
        // The profile by hand for two coins: P = (1/4, 1/2, 1/4); at epsilon = ln 2 only
        // k = 0 contributes (1/4), and k = 1 gives 1/2 - 2/4 = 0.
        assert!((privacy_delta(2, 2f64.ln()) - 0.25).abs() < 1e-12);
        assert!(coins_for(Cost::new(0.001, 1e-9).unwrap()).is_err());
    }

    #[test]
    fn threshold_and_interval_follow_the_tails() {
        // Binomial(4, 1/2): P(B = 4) = 1/16, P(B >= 3) = 5/16.
        assert_eq!(upper_quantile(4, 0.07), 4);
        assert_eq!(upper_quantile(4, 0.06), 5);
        assert_eq!(upper_quantile(4, 0.4), 3);
        assert!(spread(1000, 0.05) >= 30 && spread(1000, 0.05) <= 32);
        for bad in [
            (0.0, 1e-6),
            (-1.0, 1e-6),
            (21.0, 1e-6),
            (1.0, 0.0),
            (1.0, 0.01),
        ] {
            assert!(Cost::new(bad.0, bad.1).is_err(), "{bad:?}");
        }
    }

    /// The noise plan of a COUNT over consumption (a dp dataset), grouped by
    /// `group_by` into `groups` slots, at epsilon `epsilon`.
    fn count_plan(
        group_by: Vec<Grouping>,
        groups: usize,
        epsilon: f64,
    ) -> Result<NoisePlan, PrivacyError> {
        let schema = Schema::builtin("consumption").unwrap();
        let crate::schema::Privacy::Dp(bounds) = &schema.privacy else {
            unreachable!("consumption is dp")
        };
        let query = ProvableQuery {
            group_by,
            aggregand: Aggregand::CountOnly,
            purpose: "public-health".into(),
            filters: Vec::new(),
            post: Default::default(),
            outputs: Vec::new(),
        };
        NoisePlan::new(
            &schema,
            bounds,
            &query,
            groups,
            Cost::new(epsilon, 1e-7).unwrap(),
        )
    }

    #[test]
    fn an_estimate_is_never_below_zero_nor_outside_its_interval() {
        let plan = count_plan(Vec::new(), 1, 1.0).unwrap();
        for released in [0, u128::from(plan.coins / 4), u128::from(plan.coins)] {
            let estimate = plan.estimate(released, 168);
            let (low, high) = plan.interval(released, 168);
            assert!(
                estimate >= 0 && low <= estimate && estimate <= high,
                "{released}"
            );
        }
    }

    #[test]
    fn a_noisy_root_too_large_to_prove_is_refused_naming_its_coins() {
        // COUNT by a unit attribute (district): a unit moves one value. 12 groups at
        // epsilon 1 fit; 4,096 groups at epsilon 0.1 (thousands of coins each) would
        // draw tens of millions of coins.
        let district = || vec![Grouping::column("district")];
        assert!(count_plan(district(), 12, 1.0).is_ok());
        let err = count_plan(district(), 4096, 0.1).unwrap_err().0;
        assert!(
            err.contains("4096 groups x 1 values") && err.contains("at most 1048576"),
            "{err}"
        );
    }
}
