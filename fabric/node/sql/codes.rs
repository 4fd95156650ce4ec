//! Sets of one column's codes, which a filter's conditions on that column come to: `<>`
//! is the complement of a point, OR a union, AND an intersection, NOT a complement.

/// A set of codes below a column's largest code: ascending inclusive ranges that neither
/// overlap nor touch, so that one set has one form.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Codes(Vec<(u64, u64)>);

impl Codes {
    /// No code.
    pub(super) fn none() -> Self {
        Self(Vec::new())
    }

    /// `lo..=hi`, clipped to `0..=max` (empty when they do not meet).
    pub(super) fn range(lo: i128, hi: i128, max: u64) -> Self {
        let (lo, hi) = (lo.max(0), hi.min(i128::from(max)));
        if lo > hi {
            return Self::none();
        }
        Self(vec![(lo as u64, hi as u64)])
    }

    /// The listed codes that lie in `0..=max`.
    pub(super) fn of(values: impl IntoIterator<Item = i128>, max: u64) -> Self {
        let mut values: Vec<u64> = values
            .into_iter()
            .filter(|v| (0..=i128::from(max)).contains(v))
            .map(|v| v as u64)
            .collect();
        values.sort_unstable();
        values.dedup();
        let mut ranges: Vec<(u64, u64)> = Vec::new();
        for v in values {
            match ranges.last_mut() {
                Some((_, hi)) if *hi + 1 == v => *hi = v,
                _ => ranges.push((v, v)),
            }
        }
        Self(ranges)
    }

    /// Every code in `0..=max` not in the set.
    pub(super) fn complement(&self, max: u64) -> Self {
        let mut out = Vec::new();
        let mut next = Some(0u64);
        for &(lo, hi) in &self.0 {
            if let Some(from) = next.filter(|&from| from < lo) {
                out.push((from, lo - 1));
            }
            next = hi.checked_add(1);
        }
        if let Some(from) = next.filter(|&from| from <= max) {
            out.push((from, max));
        }
        Self(out)
    }

    /// The codes in both sets.
    pub(super) fn intersect(&self, other: &Self) -> Self {
        let (mut i, mut j, mut out) = (0, 0, Vec::new());
        while i < self.0.len() && j < other.0.len() {
            let ((a_lo, a_hi), (b_lo, b_hi)) = (self.0[i], other.0[j]);
            let (lo, hi) = (a_lo.max(b_lo), a_hi.min(b_hi));
            if lo <= hi {
                out.push((lo, hi));
            }
            if a_hi < b_hi {
                i += 1;
            } else {
                j += 1;
            }
        }
        Self(out)
    }

    /// The codes in either set.
    pub(super) fn union(&self, other: &Self, max: u64) -> Self {
        self.complement(max)
            .intersect(&other.complement(max))
            .complement(max)
    }

    /// The ranges, ascending and apart.
    pub(super) fn ranges(&self) -> &[(u64, u64)] {
        &self.0
    }

    /// How many codes the set holds.
    pub(super) fn len(&self) -> u128 {
        self.0.iter().map(|&(lo, hi)| u128::from(hi - lo) + 1).sum()
    }

    /// The codes, ascending; only for a set known to be small.
    pub(super) fn values(&self) -> Vec<u64> {
        self.0.iter().flat_map(|&(lo, hi)| lo..=hi).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn members(codes: &Codes, max: u64) -> Vec<bool> {
        (0..=max)
            .map(|v| codes.0.iter().any(|&(lo, hi)| lo <= v && v <= hi))
            .collect()
    }

    fn canonical(codes: &Codes) -> bool {
        codes.0.iter().all(|(lo, hi)| lo <= hi) && codes.0.windows(2).all(|w| w[0].1 + 1 < w[1].0)
    }

    proptest! {
        #[test]
        fn set_algebra_agrees_with_membership(
            a in proptest::collection::vec(0i128..40, 0..12),
            b in proptest::collection::vec(0i128..40, 0..12),
            lo in -3i128..40,
            hi in -3i128..40,
        ) {
            let max = 31;
            let (a, b, r) = (Codes::of(a.clone(), max), Codes::of(b.clone(), max), Codes::range(lo, hi, max));
            let (ma, mb, mr) = (members(&a, max), members(&b, max), members(&r, max));
            for (set, want) in [
                (a.complement(max), ma.iter().map(|x| !x).collect::<Vec<_>>()),
                (a.intersect(&b), ma.iter().zip(&mb).map(|(x, y)| *x && *y).collect()),
                (a.union(&r, max), ma.iter().zip(&mr).map(|(x, y)| *x || *y).collect()),
            ] {
                prop_assert!(canonical(&set), "{set:?}");
                prop_assert_eq!(members(&set, max), want);
                prop_assert_eq!(set.len(), members(&set, max).iter().filter(|x| **x).count() as u128);
            }
        }
    }

    #[test]
    fn the_widest_column_complements_without_overflow() {
        let point = Codes::of([5], u64::MAX);
        let rest = point.complement(u64::MAX);
        assert_eq!(rest.ranges(), &[(0, 4), (6, u64::MAX)]);
        assert_eq!(rest.complement(u64::MAX), point);
        assert_eq!(Codes::none().complement(u64::MAX).len(), 1 << 64);
    }
}
