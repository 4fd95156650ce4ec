//! The chunk-aggregate circuit: what the rows of one committed chunk that are present,
//! consented to the query's purpose and pass every filter add to each group's COUNT and
//! SUMs, stated as the chunk's share of the totals' random evaluation
//! ([`crate::evaluation`]): `sum over selected rows of r^key · (1, s·v_1, ...)`, hidden
//! under a commitment. The per-row cost grows with the key's bits, not with the groups.
//!
//! Public inputs, in order:
//! 1. the shape's digest ([`AggregateShape::digest`]), fixed by a constraint, so a key of
//!    one shape verifies no statement of another;
//! 2. the chunk commitment, the dataset id, the chunk's index and its number of present
//!    rows (all four from the manifest: the commitment binds the other three);
//! 3. the purpose: the bit of the consent column the query needs (only when rows are
//!    selected by purpose, [`Selection::Purpose`]);
//! 4. per filter, in shape order: `lo, hi` for a range filter, `lo, hi` of each of its
//!    ranges for a union of ranges, the `L` list items for an IN filter (a shorter list
//!    is padded by repeating its first item);
//! 5. for a counted condition ([`Aggregand::CountWhere`]), its `lo, hi`; for clipped
//!    sums ([`Aggregand::ClippedSum`]), each measure's clip bound; per time bucket of the
//!    key ([`Grouping::Bucket`]), in GROUP BY order, its origin;
//! 6. the query's challenge `r` ([`crate::combine::challenge`]);
//! 7. the commitment to the chunk's hidden evaluation ([`crate::evaluation::commit`]).
//!
//! Roll-ups use two more selections ([`Selection`]): at sealing, every present row with
//! its values split by purpose (one count and one sum per measure for each consent bit,
//! so a roll-up's cells answer any purpose), and, over the cells, every present cell
//! weighted by a count column ([`AggregateShape::weight`]): a cell stands for its rows.
//!
//! A row's group key packs the grouping columns' codes, the first column's in the highest
//! bits ([`AggregateShape::group_key`]); each code is its range-checked bits, so no two
//! tuples share a key. A time bucket's code is the row's time less the public origin,
//! divided by the bucket's seconds: a witnessed quotient and remainder, the remainder
//! below the divisor, so each selected row has exactly one. [`evaluate`] is the native twin; [`AggregateCircuit`] the
//! constraint system.

mod circuit;

pub use circuit::AggregateCircuit;

use std::fmt::Write as _;

use crate::{
    commitment::{fits, ChunkLayout, PARTIAL_TAG},
    evaluation::{self, GroupDomain, Tallies, Tally},
    poseidon, snark, CircuitError, Fr,
};

/// A filter of the shape: which column and what kind of test.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FilterShape {
    /// `lo <= column <= hi` (also `=`, `<`, `>` ... with suitable bounds).
    Range { column: usize },
    /// `column IN (up to len items)`.
    In { column: usize, len: usize },
    /// The column lies in one of `count` ranges (at least 2): `<>`, `NOT IN` and ORed
    /// conditions on one column.
    Ranges { column: usize, count: usize },
}

impl FilterShape {
    /// The filtered column.
    pub fn column(&self) -> usize {
        match *self {
            Self::Range { column } | Self::In { column, .. } | Self::Ranges { column, .. } => {
                column
            }
        }
    }
}

/// What each selected row adds to its group's sums, one sum per measure.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Aggregand {
    /// Nothing: only COUNT is computed; there are no sums.
    CountOnly,
    /// The values of 1 to [`MAX_MEASURES`] columns (measures), each its own sum.
    Sum { columns: Vec<usize> },
    /// 1 when `lo <= column <= hi` (public bounds), else 0: the number of selected rows
    /// meeting a condition (one sum), which predicate answers are built on.
    CountWhere { column: usize },
    /// The values of 1 to [`MAX_MEASURES`] columns, each capped at its public bound:
    /// `min(value, clip)`. Differential privacy's sums, whose sensitivity is the clip
    /// bound per row.
    ClippedSum { columns: Vec<usize> },
}

/// Most measures one query sums.
pub const MAX_MEASURES: usize = 4;

/// Most summed columns of any shape: a roll-up's cells carry a count and a sum per
/// measure for every purpose (3 purposes of 4 measures: 14 sums besides the weight).
pub const MAX_SUMMED_COLUMNS: usize = 32;

/// Which rows a chunk proof adds up, and how their values enter the share.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Selection {
    /// Present rows whose consent column (packed) has the query's purpose bit set (a
    /// public input) and that pass every filter: a query over rows.
    Purpose {
        /// The consent column.
        consent: usize,
    },
    /// Present rows that pass every filter, each adding, for every bit `p` of the consent
    /// column, `c_p · (1, v_1, ..., v_M)` in its own value slots (`c_p` the row's bit):
    /// what a roll-up's cells must hold, per purpose, proven at sealing.
    ByPurpose {
        /// The consent column.
        consent: usize,
    },
    /// Present rows that pass every filter, whatever their consent: rows that hold no
    /// consent column, such as a roll-up's cells (split by purpose already).
    Present,
}

impl Selection {
    /// The consent column, when the selection reads one.
    pub fn consent(&self) -> Option<usize> {
        match *self {
            Self::Purpose { consent } | Self::ByPurpose { consent } => Some(consent),
            Self::Present => None,
        }
    }
}

impl Aggregand {
    /// The columns whose values are added up, one sum each (the condition's column for a
    /// counted condition).
    pub fn columns(&self) -> Vec<usize> {
        match self {
            Self::CountOnly => Vec::new(),
            Self::Sum { columns } | Self::ClippedSum { columns } => columns.clone(),
            Self::CountWhere { column } => vec![*column],
        }
    }

    /// How many sums each group has.
    pub fn sums(&self) -> usize {
        self.columns().len()
    }
}

/// One part of a row's group key, in GROUP BY order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Grouping {
    /// A column's stored code (a dimension), in the column's width.
    Column(usize),
    /// The bucket a time column's value falls in.
    Bucket(TimeBucket),
}

/// Buckets of `seconds` of a time column, numbered from a public origin (the query's
/// [`AggregateQuery::origins`]): a value `t` is in bucket `(t - origin) / seconds`,
/// rounded down, whose code must fit `width` bits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TimeBucket {
    /// The time column.
    pub column: usize,
    /// A bucket's length in seconds (at least 1).
    pub seconds: u64,
    /// Bits of a bucket's code.
    pub width: u32,
}

impl TimeBucket {
    /// The bucket of `value` counted from `origin`; `None` before the origin or beyond
    /// `width` bits.
    pub fn code(&self, value: u64, origin: i64) -> Option<u64> {
        let since = u128::try_from(i128::from(value) - i128::from(origin)).ok()?;
        let code = u64::try_from(since.checked_div(u128::from(self.seconds))?).ok()?;
        fits(code, self.width).then_some(code)
    }

    /// The witness a row needs: its bucket and its offset in it, or zeros when it has no
    /// bucket (a row that is not selected; a selected one makes the system unsatisfied).
    pub fn split(&self, value: u64, origin: i64) -> (u64, u64) {
        match self.code(value, origin) {
            Some(code) => {
                let since = i128::from(value) - i128::from(origin);
                (code, since.rem_euclid(i128::from(self.seconds)) as u64)
            }
            None => (0, 0),
        }
    }
}

impl Grouping {
    /// The column the part reads.
    pub fn column(&self) -> usize {
        match *self {
            Self::Column(column) | Self::Bucket(TimeBucket { column, .. }) => column,
        }
    }

    /// Bits of its code.
    pub fn width(&self, layout: &ChunkLayout) -> u32 {
        match self {
            Self::Column(column) => layout.width(*column),
            Self::Bucket(bucket) => bucket.width,
        }
    }
}

/// Everything that fixes the aggregate circuit's constraint system, and so its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateShape {
    /// How the chunk is committed.
    pub layout: ChunkLayout,
    /// Which rows are added up: by the query's purpose, or every present row.
    pub selection: Selection,
    /// The filters, ANDed.
    pub filters: Vec<FilterShape>,
    /// The parts of the group key, in GROUP BY order (none: one group).
    pub group_by: Vec<Grouping>,
    /// What is summed.
    pub aggregand: Aggregand,
    /// A column whose value is the number of rows each row stands for (a roll-up cell's
    /// count), added to COUNT in place of 1; none: every row counts once.
    pub weight: Option<usize>,
}

impl AggregateShape {
    /// Checks that every referenced column exists and the counts make sense.
    pub fn validate(&self) -> Result<(), CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidShape(msg));
        let columns = self.layout.columns().len();
        let exists = |c: usize, what: &str| {
            if c < columns {
                Ok(())
            } else {
                Err(CircuitError::InvalidShape(format!(
                    "{what} column {c} does not exist"
                )))
            }
        };
        if let Some(consent) = self.selection.consent() {
            exists(consent, "consent")?;
            if !self.layout.columns()[consent].packed {
                return bad(format!("consent column {consent} must be packed"));
            }
        }
        if let Some(weight) = self.weight {
            exists(weight, "weight")?;
            if !matches!(self.aggregand, Aggregand::CountOnly | Aggregand::Sum { .. })
                || !matches!(self.selection, Selection::Present)
            {
                return bad(
                    "a weight column (a roll-up cell's count) goes with plain sums over \
                     present rows only"
                        .into(),
                );
            }
        }
        for f in &self.filters {
            exists(f.column(), "filter")?;
            match f {
                FilterShape::In { len: 0, .. } => {
                    return bad("an IN filter needs at least one item".into())
                }
                FilterShape::Ranges { count, .. } if *count < 2 => {
                    return bad("a union of ranges has at least two; use a range".into())
                }
                _ => {}
            }
        }
        for (i, g) in self.group_by.iter().enumerate() {
            let c = g.column();
            exists(c, "GROUP BY")?;
            if self.group_by[..i].iter().any(|other| other.column() == c) {
                return bad(format!("GROUP BY column {c} appears twice"));
            }
            if let Grouping::Bucket(b) = g {
                if b.seconds == 0 || !(1..=64).contains(&b.width) {
                    return bad(format!(
                        "a time bucket of {} seconds with {}-bit codes (at least 1 second, \
                         1 to 64 bits)",
                        b.seconds, b.width
                    ));
                }
            }
        }
        if self.key_width() > 64 {
            return bad(format!(
                "the grouping columns' widths add up to {} bits; a group key has at most 64",
                self.key_width()
            ));
        }
        if let Aggregand::Sum { columns } | Aggregand::ClippedSum { columns } = &self.aggregand {
            if !(1..=MAX_SUMMED_COLUMNS).contains(&columns.len()) {
                return bad(format!(
                    "{} summed columns; a shape sums 1 to {MAX_SUMMED_COLUMNS}",
                    columns.len()
                ));
            }
            if let Some(c) = columns
                .iter()
                .enumerate()
                .find(|(i, c)| columns[..*i].contains(c))
            {
                return bad(format!("column {} is summed twice", c.1));
            }
        }
        for column in self.aggregand.columns() {
            exists(column, "aggregate")?;
        }
        Ok(())
    }

    /// Number of public inputs (the verifier's vector length).
    pub fn num_public_inputs(&self) -> usize {
        let filters: usize = self
            .filters
            .iter()
            .map(|f| match f {
                FilterShape::Range { .. } => 2,
                FilterShape::In { len, .. } => *len,
                FilterShape::Ranges { count, .. } => 2 * count,
            })
            .sum();
        let condition = match &self.aggregand {
            Aggregand::CountWhere { .. } => 2,
            Aggregand::ClippedSum { columns } => columns.len(),
            _ => 0,
        };
        let purpose = usize::from(matches!(self.selection, Selection::Purpose { .. }));
        5 + purpose + filters + condition + self.buckets().count() + 2
    }

    /// The number of sums in each group's tally and value slots besides the first
    /// count: the aggregand's, or for [`Selection::ByPurpose`] a count and the aggregand's
    /// sums for every purpose, less the first count (`P · (M + 1) - 1`).
    pub fn sums(&self) -> usize {
        match self.selection {
            Selection::ByPurpose { consent } => {
                self.layout.width(consent) as usize * (self.aggregand.sums() + 1) - 1
            }
            Selection::Purpose { .. } | Selection::Present => self.aggregand.sums(),
        }
    }

    /// The time buckets of the key, in GROUP BY order.
    pub fn buckets(&self) -> impl Iterator<Item = &TimeBucket> {
        self.group_by.iter().filter_map(|g| match g {
            Grouping::Bucket(b) => Some(b),
            Grouping::Column(_) => None,
        })
    }

    /// The canonical text of the shape: what keys are filed and pinned under, and what
    /// [`AggregateShape::digest`] hashes.
    pub fn description(&self) -> String {
        let layout = &self.layout;
        let mut out = format!("aggregate/v4 rows={} columns=", layout.capacity());
        for (i, c) in layout.columns().iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let kind = if c.packed { "n" } else { "w" };
            let _ = write!(out, "{sep}{kind}{}", c.width);
        }
        let _ = write!(out, " present={} consent=", layout.present());
        let _ = match self.selection {
            Selection::Purpose { consent } => write!(out, "{consent}"),
            Selection::ByPurpose { consent } => write!(out, "by_purpose:{consent}"),
            Selection::Present => write!(out, "none"),
        };
        out.push_str(" filters=");
        for (i, f) in self.filters.iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let _ = match f {
                FilterShape::Range { column } => write!(out, "{sep}range:{column}"),
                FilterShape::In { column, len } => write!(out, "{sep}in:{column}:{len}"),
                FilterShape::Ranges { column, count } => {
                    write!(out, "{sep}ranges:{column}:{count}")
                }
            };
        }
        let _ = match self.group_by.as_slice() {
            [] => write!(out, " group_by=none"),
            parts => write!(
                out,
                " group_by={}",
                parts
                    .iter()
                    .map(|g| match g {
                        Grouping::Column(c) => c.to_string(),
                        Grouping::Bucket(b) => {
                            format!("bucket:{}:{}:{}", b.column, b.seconds, b.width)
                        }
                    })
                    .collect::<Vec<_>>()
                    .join("+")
            ),
        };
        out.push_str(" aggregand=");
        let list = |columns: &[usize]| {
            columns
                .iter()
                .map(usize::to_string)
                .collect::<Vec<_>>()
                .join("+")
        };
        let _ = match &self.aggregand {
            Aggregand::CountOnly => write!(out, "count"),
            Aggregand::Sum { columns } => write!(out, "sum:{}", list(columns)),
            Aggregand::CountWhere { column } => write!(out, "count_where:{column}"),
            Aggregand::ClippedSum { columns } => write!(out, "clipped_sum:{}", list(columns)),
        };
        if let Some(weight) = self.weight {
            let _ = write!(out, " weight={weight}");
        }
        out
    }

    /// Bits of a group key: the parts' widths added up.
    pub fn key_width(&self) -> u32 {
        self.group_by.iter().map(|g| g.width(&self.layout)).sum()
    }

    /// The group key of a row whose key parts are `codes` (in GROUP BY order): each
    /// code shifted past the widths of the parts after it.
    pub fn group_key(&self, codes: &[u64]) -> u64 {
        self.group_by
            .iter()
            .zip(codes)
            .fold(0u128, |key, (g, &code)| {
                (key << g.width(&self.layout)) | u128::from(code)
            }) as u64
    }

    /// The shape's digest, the circuit's first public input.
    pub fn digest(&self) -> Fr {
        snark::shape_digest(&self.description())
    }
}

/// The parameters of one filter, matching its [`FilterShape`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FilterParams {
    /// Inclusive bounds, each below `2^width` of the column.
    Range { lo: u64, hi: u64 },
    /// The IN list: 1 to `len` items.
    In(Vec<u64>),
    /// Inclusive bounds of each range, as many as the shape's count.
    Ranges(Vec<(u64, u64)>),
}

/// The public parameters of a query, as the verifier recomputes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateQuery {
    /// Bit of the consent column that must be set.
    pub purpose: u32,
    /// One entry per filter of the shape.
    pub filters: Vec<FilterParams>,
    /// Bounds of the counted condition, for [`Aggregand::CountWhere`].
    pub condition: Option<(u64, u64)>,
    /// The clip bound of each clipped column, for [`Aggregand::ClippedSum`] (empty
    /// otherwise).
    pub clips: Vec<u64>,
    /// The origin of each time bucket of the key, in GROUP BY order: the start of its
    /// bucket 0, in the time column's seconds (before 1970 only for a week starting on a
    /// Monday before it).
    pub origins: Vec<i64>,
}

impl AggregateQuery {
    /// Checks that the parameters fit `shape`, naming the first one that does not.
    pub fn validate(&self, shape: &AggregateShape) -> Result<(), CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidQuery(msg));
        let layout = &shape.layout;
        let fits = |v: u64, column: usize| fits(v, layout.width(column));
        match shape.selection {
            Selection::Purpose { consent } if self.purpose >= layout.width(consent) => {
                return bad(format!(
                    "purpose bit {} outside the {}-bit consent column",
                    self.purpose,
                    layout.width(consent)
                ))
            }
            Selection::ByPurpose { .. } | Selection::Present if self.purpose != 0 => {
                return bad(format!(
                    "purpose bit {} for a shape that selects by no purpose (it must be 0)",
                    self.purpose
                ))
            }
            _ => {}
        }
        if self.filters.len() != shape.filters.len() {
            return bad(format!(
                "{} filters for a shape of {}",
                self.filters.len(),
                shape.filters.len()
            ));
        }
        for (i, (f, p)) in shape.filters.iter().zip(&self.filters).enumerate() {
            match (f, p) {
                (FilterShape::Range { column }, FilterParams::Range { lo, hi }) => {
                    if !fits(*lo, *column) || !fits(*hi, *column) {
                        return bad(format!(
                            "filter {i}: bounds {lo}..={hi} exceed column {column}'s width"
                        ));
                    }
                }
                (FilterShape::In { column, len }, FilterParams::In(items)) => {
                    if items.is_empty() || items.len() > *len {
                        return bad(format!(
                            "filter {i}: IN list of {} items, shape allows 1..={len}",
                            items.len()
                        ));
                    }
                    if let Some(v) = items.iter().find(|v| !fits(**v, *column)) {
                        return bad(format!(
                            "filter {i}: IN item {v} exceeds column {column}'s width"
                        ));
                    }
                }
                (FilterShape::Ranges { column, count }, FilterParams::Ranges(ranges)) => {
                    if ranges.len() != *count {
                        return bad(format!(
                            "filter {i}: {} ranges for a shape of {count}",
                            ranges.len()
                        ));
                    }
                    if let Some((lo, hi)) = ranges
                        .iter()
                        .find(|(lo, hi)| !fits(*lo, *column) || !fits(*hi, *column))
                    {
                        return bad(format!(
                            "filter {i}: bounds {lo}..={hi} exceed column {column}'s width"
                        ));
                    }
                }
                _ => return bad(format!("filter {i}: parameters of the wrong kind")),
            }
        }
        match (&shape.aggregand, self.condition) {
            (Aggregand::CountWhere { column }, Some((lo, hi))) => {
                if !fits(lo, *column) || !fits(hi, *column) {
                    return bad(format!(
                        "condition bounds {lo}..={hi} exceed column {column}'s width"
                    ));
                }
            }
            (Aggregand::CountWhere { .. }, None) => {
                return bad("counted condition needs bounds".into())
            }
            (_, Some(_)) => return bad("condition bounds without a counted condition".into()),
            (_, None) => {}
        }
        let clipped = match &shape.aggregand {
            Aggregand::ClippedSum { columns } => columns.as_slice(),
            _ => &[],
        };
        if self.clips.len() != clipped.len() {
            return bad(format!(
                "{} clip bounds for {} clipped sums",
                self.clips.len(),
                clipped.len()
            ));
        }
        for (&clip, &column) in self.clips.iter().zip(clipped) {
            if !fits(clip, column) {
                return bad(format!("clip bound {clip} exceeds column {column}'s width"));
            }
        }
        if self.origins.len() != shape.buckets().count() {
            return bad(format!(
                "{} bucket origins for {} time buckets",
                self.origins.len(),
                shape.buckets().count()
            ));
        }
        Ok(())
    }

    /// Public inputs 3 to 5 (everything between the chunk and the challenge).
    pub(crate) fn public_parameters(&self, shape: &AggregateShape) -> Vec<Fr> {
        let mut out = Vec::new();
        if let Selection::Purpose { .. } = shape.selection {
            out.push(Fr::from(self.purpose));
        }
        for (f, p) in shape.filters.iter().zip(&self.filters) {
            match (f, p) {
                (_, FilterParams::Range { lo, hi }) => out.extend([Fr::from(*lo), Fr::from(*hi)]),
                (FilterShape::In { len, .. }, FilterParams::In(items)) => {
                    out.extend((0..*len).map(|i| Fr::from(*items.get(i).unwrap_or(&items[0]))))
                }
                (_, FilterParams::Ranges(ranges)) => out.extend(
                    ranges
                        .iter()
                        .flat_map(|&(lo, hi)| [Fr::from(lo), Fr::from(hi)]),
                ),
                (_, FilterParams::In(_)) => unreachable!("validated"),
            }
        }
        if let Some((lo, hi)) = self.condition {
            out.extend([Fr::from(lo), Fr::from(hi)]);
        }
        out.extend(self.clips.iter().map(|&c| Fr::from(c)));
        out.extend(self.origins.iter().map(|&o| Fr::from(o)));
        out
    }
}

/// A query's per-group totals over the slots of its [`GroupDomain`]: per measure and
/// slot the sum, per slot the count. The root combine opens them under a commitment and
/// checks their evaluation against the chunks' shares.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Partial {
    /// Per measure, the per-slot sums (below `2^64 · 2^40`, so `u128` is exact).
    pub sums: Vec<Vec<u128>>,
    /// Per-slot counts of selected rows.
    pub counts: Vec<u64>,
}

impl Partial {
    /// A partial of `groups` zero slots and `sums` measures.
    pub fn zero(groups: usize, sums: usize) -> Self {
        Self {
            sums: vec![vec![0; groups]; sums],
            counts: vec![0; groups],
        }
    }

    /// Adds `other` (of the same slots and measures) slot by slot.
    pub fn add(&mut self, other: &Partial) {
        for (count, c) in self.counts.iter_mut().zip(&other.counts) {
            *count += c;
        }
        for (measure, m) in self.sums.iter_mut().zip(&other.sums) {
            for (sum, s) in measure.iter_mut().zip(m) {
                *sum += s;
            }
        }
    }

    /// The totals of `tallies` over the slots of `domain`, with `sums` measures; the key
    /// of a tally outside the domain is the error.
    pub fn from_tallies(domain: &GroupDomain, sums: usize, tallies: &Tallies) -> Result<Self, u64> {
        let slots: std::collections::HashMap<u64, usize> =
            (0..domain.slots()).map(|g| (domain.key(g), g)).collect();
        let mut partial = Self::zero(domain.slots(), sums);
        for (key, tally) in tallies {
            let &slot = slots.get(key).ok_or(*key)?;
            partial.counts[slot] += tally.count;
            for (measure, sum) in partial.sums.iter_mut().zip(&tally.sums) {
                measure[slot] += sum;
            }
        }
        Ok(partial)
    }

    /// The commitment `chain([PARTIAL_TAG, blind, sums..., counts...])` (sums measure by
    /// measure) that the root combine opens and the challenge binds.
    pub fn commit(&self, blind: Fr) -> Fr {
        let mut inputs = vec![Fr::from(PARTIAL_TAG), blind];
        inputs.extend(self.sums.iter().flatten().map(|&s| Fr::from(s)));
        inputs.extend(self.counts.iter().map(|&c| Fr::from(c)));
        poseidon::chain(&inputs)
    }

    /// The totals' evaluation at `challenge` ([`evaluation::evaluate`]), slot `g` under
    /// the key `domain` gives it.
    pub fn evaluate(&self, domain: &GroupDomain, challenge: Fr) -> Fr {
        let sums: Vec<Vec<u128>> = (0..self.counts.len())
            .map(|g| self.sums.iter().map(|m| m[g]).collect())
            .collect();
        evaluation::evaluate(
            challenge,
            domain.key_width(),
            self.counts
                .iter()
                .zip(&sums)
                .enumerate()
                .map(|(g, (&count, sums))| (domain.key(g), count, sums.as_slice())),
        )
    }
}

/// Where a chunk sits: what the chunk commitment binds besides the rows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkId {
    /// The dataset's id.
    pub dataset_id: u64,
    /// The chunk's index within the dataset.
    pub index: u64,
    /// Present (non-padding) rows.
    pub rows: u64,
}

/// The public statement of one chunk proof.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateInstance {
    /// The chunk commitment from the manifest.
    pub chunk_commitment: Fr,
    /// The chunk as the manifest lists it: dataset id, index and present rows. The
    /// commitment binds them, so a manifest cannot list one chunk under two indices, or
    /// another dataset's chunk, or another row count.
    pub chunk: ChunkId,
    /// The query's public parameters.
    pub query: AggregateQuery,
    /// The query's challenge `r`.
    pub challenge: Fr,
    /// Commitment to the chunk's hidden evaluation: its rows' share of the totals'
    /// evaluation at `r`.
    pub evaluation_commitment: Fr,
}

impl AggregateInstance {
    /// The public-input vector a verifier checks a chunk proof against, in the order the
    /// module documentation gives. The query is validated first: a malformed one (say,
    /// a repeated group key) would give a valid proof another meaning.
    pub fn public_inputs(&self, shape: &AggregateShape) -> Result<Vec<Fr>, CircuitError> {
        shape.validate()?;
        self.query.validate(shape)?;
        Ok(self.assemble(shape))
    }

    /// The public-input vector, unchecked (the circuit allocates exactly this).
    pub(crate) fn assemble(&self, shape: &AggregateShape) -> Vec<Fr> {
        let mut out = vec![
            shape.digest(),
            self.chunk_commitment,
            Fr::from(self.chunk.dataset_id),
            Fr::from(self.chunk.index),
            Fr::from(self.chunk.rows),
        ];
        out.extend(self.query.public_parameters(shape));
        out.extend([self.challenge, self.evaluation_commitment]);
        out
    }
}

/// Native twin of the circuit: the tallies of `chunk`'s selected rows under `query`, by
/// group key. Its share of the evaluation at `r` is
/// `evaluation::evaluate(r, shape.key_width(), ...)` over them.
pub fn evaluate(
    shape: &AggregateShape,
    query: &AggregateQuery,
    chunk: &crate::commitment::Chunk,
) -> Result<Tallies, CircuitError> {
    shape.validate()?;
    query.validate(shape)?;
    chunk.validate(&shape.layout)?;
    let mut tallies = Tallies::new();
    let col = |c: usize, r: usize| chunk.columns[c][r];
    for row in 0..shape.layout.capacity() {
        let present = col(shape.layout.present(), row) == 1;
        let consented = match shape.selection {
            Selection::Purpose { consent } => (col(consent, row) >> query.purpose) & 1 == 1,
            Selection::ByPurpose { .. } | Selection::Present => true,
        };
        let passes = shape.filters.iter().zip(&query.filters).all(|(f, p)| {
            let v = col(f.column(), row);
            match p {
                FilterParams::Range { lo, hi } => *lo <= v && v <= *hi,
                FilterParams::In(items) => items.contains(&v),
                FilterParams::Ranges(ranges) => ranges.iter().any(|(lo, hi)| *lo <= v && v <= *hi),
            }
        });
        if !(present && consented && passes) {
            continue;
        }
        let mut origins = query.origins.iter();
        let codes = shape
            .group_by
            .iter()
            .map(|g| match g {
                Grouping::Column(c) => Ok(col(*c, row)),
                Grouping::Bucket(b) => {
                    let (value, &origin) = (col(b.column, row), origins.next().expect("validated"));
                    b.code(value, origin).ok_or_else(|| {
                        CircuitError::InvalidQuery(format!(
                            "row {row}: time {value} has no {}-bit bucket of {} seconds \
                             from origin {origin}",
                            b.width, b.seconds
                        ))
                    })
                }
            })
            .collect::<Result<Vec<u64>, _>>()?;
        let addends: Vec<u128> = match (&shape.aggregand, query.condition) {
            (Aggregand::CountOnly, _) => Vec::new(),
            (Aggregand::Sum { columns }, _) => {
                columns.iter().map(|&c| u128::from(col(c, row))).collect()
            }
            (Aggregand::ClippedSum { columns }, _) => columns
                .iter()
                .zip(&query.clips)
                .map(|(&c, &clip)| u128::from(col(c, row).min(clip)))
                .collect(),
            (Aggregand::CountWhere { column }, Some((lo, hi))) => {
                vec![u128::from(
                    lo <= col(*column, row) && col(*column, row) <= hi,
                )]
            }
            (Aggregand::CountWhere { .. }, None) => unreachable!("validated"),
        };
        // The row's values: its count (its weight, or 1) then its sums; for a row split
        // by purpose, that list once per consent bit, times the bit.
        let mut values = vec![shape.weight.map_or(1, |w| u128::from(col(w, row)))];
        values.extend(addends);
        let values: Vec<u128> = match shape.selection {
            Selection::ByPurpose { consent } => (0..shape.layout.width(consent))
                .flat_map(|p| {
                    let bit = u128::from((col(consent, row) >> p) & 1);
                    values.iter().map(move |v| bit * v)
                })
                .collect(),
            Selection::Purpose { .. } | Selection::Present => values,
        };
        let tally = tallies
            .entry(shape.group_key(&codes))
            .or_insert_with(|| Tally {
                count: 0,
                sums: vec![0; shape.sums()],
            });
        tally.count += u64::try_from(values[0]).expect("a count or a column's value");
        for (sum, addend) in tally.sums.iter_mut().zip(&values[1..]) {
            *sum += addend;
        }
    }
    Ok(tallies)
}

/// A chunk's share of the evaluation at `challenge`, from its tallies (for
/// [`Selection::ByPurpose`], purpose 0's count is the tally's count and the rest are its
/// sums, in the order [`AggregateShape::sums`] gives).
pub fn share(shape: &AggregateShape, tallies: &Tallies, challenge: Fr) -> Fr {
    evaluation::evaluate(
        challenge,
        shape.key_width(),
        tallies
            .iter()
            .map(|(&key, t)| (key, t.count, t.sums.as_slice())),
    )
}
