//! The chunk-aggregate circuit: SUM and COUNT per group over the rows of one committed
//! chunk that are present, consented to the query's purpose and pass every filter.
//!
//! Public inputs, in order:
//! 1. the shape's digest ([`AggregateShape::digest`]), fixed by a constraint, so a key of
//!    one shape verifies no statement of another;
//! 2. the chunk commitment, the dataset id, the chunk's index and its number of present
//!    rows (all four from the manifest: the commitment binds the other three);
//! 3. the purpose: the bit of the consent column the query needs;
//! 4. per filter, in shape order: `lo, hi` for a range filter, `lo, hi` of each of its
//!    ranges for a union of ranges, the `L` list items for an IN filter (a shorter list
//!    is padded by repeating its first item);
//! 5. with GROUP BY, the `G` group keys (unused slots hold [`UNUSED_GROUP_KEY`]); a key
//!    packs the grouping columns' codes, the first column's in the highest bits, so that
//!    keys sort as the tuples they pack;
//! 6. for a counted condition ([`Aggregand::CountWhere`]), its `lo, hi`; for clipped
//!    sums ([`Aggregand::ClippedSum`]), each measure's clip bound;
//! 7. the commitment to the hidden [`Partial`] (per-measure, per-group sums and per-group
//!    counts, blinded).
//!
//! [`evaluate`] is the native twin; [`AggregateCircuit`] the constraint system.

mod circuit;

pub use circuit::AggregateCircuit;

use std::fmt::Write as _;

use crate::{
    commitment::{fits, ChunkLayout, PARTIAL_TAG},
    poseidon, snark, CircuitError, Fr,
};

/// Group key of an unused group slot: `2^64`, which no value of any width equals.
pub const UNUSED_GROUP_KEY: u128 = 1 << 64;

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

/// Everything that fixes the aggregate circuit's constraint system, and so its keys.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AggregateShape {
    /// How the chunk is committed.
    pub layout: ChunkLayout,
    /// Column of consent bits, one bit per purpose (packed).
    pub consent: usize,
    /// The filters, ANDed.
    pub filters: Vec<FilterShape>,
    /// The grouping columns, in GROUP BY order (none: one group).
    pub group_by: Vec<usize>,
    /// Number of group slots `G` (1 without GROUP BY).
    pub groups: usize,
    /// What is summed.
    pub aggregand: Aggregand,
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
        exists(self.consent, "consent")?;
        if !self.layout.columns()[self.consent].packed {
            return bad(format!("consent column {} must be packed", self.consent));
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
        for (i, &c) in self.group_by.iter().enumerate() {
            exists(c, "GROUP BY")?;
            if self.group_by[..i].contains(&c) {
                return bad(format!("GROUP BY column {c} appears twice"));
            }
        }
        if self.key_width() > 64 {
            return bad(format!(
                "the grouping columns' widths add up to {} bits; a group key has at most 64",
                self.key_width()
            ));
        }
        match (self.group_by.is_empty(), self.groups) {
            (false, 0) => return bad("GROUP BY needs at least one group slot".into()),
            (true, g) if g != 1 => return bad(format!("{g} group slots without GROUP BY; use 1")),
            _ => {}
        }
        if let Aggregand::Sum { columns } | Aggregand::ClippedSum { columns } = &self.aggregand {
            if !(1..=MAX_MEASURES).contains(&columns.len()) {
                return bad(format!(
                    "{} summed columns; a query sums 1 to {MAX_MEASURES}",
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
        let keys = if self.group_by.is_empty() {
            0
        } else {
            self.groups
        };
        let condition = match &self.aggregand {
            Aggregand::CountWhere { .. } => 2,
            Aggregand::ClippedSum { columns } => columns.len(),
            _ => 0,
        };
        6 + filters + keys + condition + 1
    }

    /// The canonical text of the shape: what keys are filed and pinned under, and what
    /// [`AggregateShape::digest`] hashes.
    pub fn description(&self) -> String {
        let layout = &self.layout;
        let mut out = format!("aggregate/v3 rows={} columns=", layout.capacity());
        for (i, c) in layout.columns().iter().enumerate() {
            let sep = if i == 0 { "" } else { "," };
            let kind = if c.packed { "n" } else { "w" };
            let _ = write!(out, "{sep}{kind}{}", c.width);
        }
        let _ = write!(
            out,
            " present={} consent={} filters=",
            layout.present(),
            self.consent
        );
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
            columns => write!(
                out,
                " group_by={}",
                columns
                    .iter()
                    .map(usize::to_string)
                    .collect::<Vec<_>>()
                    .join("+")
            ),
        };
        let _ = write!(out, " groups={} aggregand=", self.groups);
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
        out
    }

    /// Bits of a group key: the grouping columns' widths added up.
    pub fn key_width(&self) -> u32 {
        self.group_by.iter().map(|&c| self.layout.width(c)).sum()
    }

    /// The group key of a row whose grouping columns hold `codes` (in GROUP BY order):
    /// each code shifted past the widths of the columns after it.
    pub fn group_key(&self, codes: &[u64]) -> u64 {
        self.group_by
            .iter()
            .zip(codes)
            .fold(0u128, |key, (&c, &code)| {
                (key << self.layout.width(c)) | u128::from(code)
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
    /// Distinct group keys (at most `G`); empty without GROUP BY.
    pub group_keys: Vec<u64>,
    /// Bounds of the counted condition, for [`Aggregand::CountWhere`].
    pub condition: Option<(u64, u64)>,
    /// The clip bound of each clipped column, for [`Aggregand::ClippedSum`] (empty
    /// otherwise).
    pub clips: Vec<u64>,
}

impl AggregateQuery {
    /// Checks that the parameters fit `shape`, naming the first one that does not.
    pub fn validate(&self, shape: &AggregateShape) -> Result<(), CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidQuery(msg));
        let layout = &shape.layout;
        let fits = |v: u64, column: usize| fits(v, layout.width(column));
        if self.purpose >= layout.width(shape.consent) {
            return bad(format!(
                "purpose bit {} outside the {}-bit consent column",
                self.purpose,
                layout.width(shape.consent)
            ));
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
        if shape.group_by.is_empty() && !self.group_keys.is_empty() {
            return bad("group keys without GROUP BY".into());
        }
        if self.group_keys.len() > shape.groups {
            return bad(format!(
                "{} group keys, shape has {} slots",
                self.group_keys.len(),
                shape.groups
            ));
        }
        for (i, k) in self.group_keys.iter().enumerate() {
            if !crate::commitment::fits(*k, shape.key_width()) {
                return bad(format!(
                    "group key {k} exceeds the {} bits of the grouping columns",
                    shape.key_width()
                ));
            }
            if self.group_keys[..i].contains(k) {
                return bad(format!("group key {k} appears twice"));
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
        Ok(())
    }

    /// The group keys padded to `G` slots, as field elements.
    pub(crate) fn padded_keys(&self, shape: &AggregateShape) -> Vec<Fr> {
        if shape.group_by.is_empty() {
            return Vec::new();
        }
        let mut keys: Vec<Fr> = self.group_keys.iter().map(|&k| Fr::from(k)).collect();
        keys.resize(shape.groups, Fr::from(UNUSED_GROUP_KEY));
        keys
    }

    /// Public inputs 2 to 5 (everything between the two commitments).
    pub(crate) fn public_parameters(&self, shape: &AggregateShape) -> Vec<Fr> {
        let mut out = vec![Fr::from(self.purpose)];
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
        out.extend(self.padded_keys(shape));
        if let Some((lo, hi)) = self.condition {
            out.extend([Fr::from(lo), Fr::from(hi)]);
        }
        out.extend(self.clips.iter().map(|&c| Fr::from(c)));
        out
    }
}

/// A chunk's (or a subtree's) hidden result: per measure and group slot the sum, per
/// group slot the count.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Partial {
    /// Per measure, the per-group sums (below `2^64 · 2^20` for any chunk, so `u128` is
    /// exact).
    pub sums: Vec<Vec<u128>>,
    /// Per-group counts of selected rows.
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

    /// The commitment `chain([PARTIAL_TAG, blind, sums..., counts...])` (sums measure by
    /// measure) that a chunk proof outputs and a combine proof opens.
    pub fn commit(&self, blind: Fr) -> Fr {
        let mut inputs = vec![Fr::from(PARTIAL_TAG), blind];
        inputs.extend(self.sums.iter().flatten().map(|&s| Fr::from(s)));
        inputs.extend(self.counts.iter().map(|&c| Fr::from(c)));
        poseidon::chain(&inputs)
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
    /// Commitment to the chunk's hidden partial.
    pub partial_commitment: Fr,
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
        out.push(self.partial_commitment);
        out
    }
}

/// Native twin of the circuit: the per-group sums and counts of `chunk` under `query`.
pub fn evaluate(
    shape: &AggregateShape,
    query: &AggregateQuery,
    chunk: &crate::commitment::Chunk,
) -> Result<Partial, CircuitError> {
    shape.validate()?;
    query.validate(shape)?;
    chunk.validate(&shape.layout)?;
    let mut partial = Partial::zero(shape.groups, shape.aggregand.sums());
    let col = |c: usize, r: usize| chunk.columns[c][r];
    for row in 0..shape.layout.capacity() {
        let present = col(shape.layout.present(), row) == 1;
        let consented = (col(shape.consent, row) >> query.purpose) & 1 == 1;
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
        let slot = match shape.group_by.as_slice() {
            [] => Some(0),
            columns => {
                let codes: Vec<u64> = columns.iter().map(|&c| col(c, row)).collect();
                let key = shape.group_key(&codes);
                query.group_keys.iter().position(|&k| k == key)
            }
        };
        let Some(slot) = slot else { continue };
        partial.counts[slot] += 1;
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
        for (sums, addend) in partial.sums.iter_mut().zip(addends) {
            sums[slot] += addend;
        }
    }
    Ok(partial)
}
