//! Roll-ups: a dataset's rows pre-aggregated into **cells** when they are sealed, so that
//! a query that groups and filters by the roll-up's key costs cells, not rows.
//!
//! A roll-up names a key (dimension columns and time buckets) and measures. A cell is a
//! row of a derived table: the key's codes (a time bucket as its first instant), then for
//! every purpose of the consent column the number of the key's rows consented to it and
//! their sums of each measure. Consent stays inside the proofs this way: a query for
//! purpose `p` reads purpose `p`'s columns, never a row that did not consent, and one
//! cell table serves every purpose (a key that held the consent bits instead would have
//! up to `2^P` times the cells).
//!
//! At sealing, two sets of chunk proofs of the [`crate::aggregate`] circuit state the same
//! polynomial ([`crate::evaluation`]) at one challenge ([`challenge`]):
//! - [`RollupShapes::rows`] over the sealed rows: every present row, its values split by
//!   purpose ([`Selection::ByPurpose`]): for each consent bit `p`, `c_p · (1, v_1, ...)`;
//! - [`RollupShapes::cells`] over the cells: every present cell, weighted by its purpose-0
//!   count ([`AggregateShape::weight`]), summing the other columns in the same order.
//!
//! Equal totals, per key and value slot, make equal polynomials; different ones agree at
//! the challenge with probability at most `D / |F|` (Schwartz-Zippel, `D` the degree),
//! given that the challenge hashes every row chunk's and every cell chunk's commitment,
//! so rows and cells were fixed before it. Each side's shares are added by subtotal
//! combines; the two sides' last commitments must be the same field element: the prover
//! blinds both with one blind, so by Poseidon's collision resistance they open to the
//! same evaluation, and nothing about the evaluation is revealed.

use crate::{
    aggregate::{Aggregand, AggregateQuery, AggregateShape, Grouping, Selection, TimeBucket},
    commitment::{fits, ChunkLayout, ColumnSpec},
    evaluation::Tallies,
    poseidon, CircuitError, Fr,
};

/// Domain tag of a sealing's challenge (the query challenge's tag is
/// [`crate::commitment::CHALLENGE_TAG`]).
pub const ROLLUP_CHALLENGE_TAG: u64 = 0x7a6b_6610;

/// Bits of a cell's count: a trillion rows.
pub const CELL_COUNT_WIDTH: u32 = 40;

/// One part of a roll-up's key, over the dataset's columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyPart {
    /// A dimension column's code.
    Column(usize),
    /// Buckets of `seconds` of a time column, with boundaries at `offset + n · seconds`
    /// (a day: 86,400 and 0; a week from a Monday: 604,800 and 345,600).
    Bucket {
        /// The time column.
        column: usize,
        /// A bucket's length.
        seconds: u64,
        /// Where boundaries fall, modulo `seconds`.
        offset: u64,
    },
}

impl KeyPart {
    /// The column the part reads.
    pub fn column(&self) -> usize {
        match *self {
            Self::Column(column) | Self::Bucket { column, .. } => column,
        }
    }
}

/// A roll-up as the circuits see it: the key, and what each cell sums.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rollup {
    /// The key's parts, the first in the highest bits of a cell's group key.
    pub key: Vec<KeyPart>,
    /// The summed measures, in order, and whether each row's value is clipped first (to
    /// the bound the rows' statement makes public; differential privacy's sums).
    pub measures: Vec<usize>,
    /// Whether the measures are clipped.
    pub clipped: bool,
}

/// The two chunk shapes of a roll-up and the cells' layout.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RollupShapes {
    /// The sealed rows' statement: every present row, split by purpose.
    pub rows: AggregateShape,
    /// The cells' statement: every present cell, weighted by its purpose-0 count.
    pub cells: AggregateShape,
    /// Each time bucket's origin (its bucket 0's first instant), in key order: the same
    /// on both sides.
    pub origins: Vec<i64>,
    /// The number of purposes (bits of the consent column).
    pub purposes: usize,
}

// A cell table's columns: the key's parts, then per purpose the count and each measure's
// sum, then `present` (last, as in a dataset's chunks).
impl RollupShapes {
    /// The cells' layout.
    pub fn cell_layout(&self) -> &ChunkLayout {
        &self.cells.layout
    }

    /// The cell column holding purpose `purpose`'s count.
    pub fn count_column(&self, purpose: usize) -> usize {
        self.key_parts() + purpose * (self.measures() + 1)
    }

    /// The cell column holding purpose `purpose`'s sum of the `measure`-th measure.
    pub fn sum_column(&self, purpose: usize, measure: usize) -> usize {
        self.count_column(purpose) + 1 + measure
    }

    /// The cells' `present` column.
    pub fn present_column(&self) -> usize {
        self.cells.layout.present()
    }

    fn key_parts(&self) -> usize {
        self.cells.group_by.len()
    }

    fn measures(&self) -> usize {
        self.rows.aggregand.sums()
    }

    /// The rows' public parameters: no purpose, no filters, each measure's clip bound
    /// (`clips`, empty unless clipped) and the buckets' origins.
    pub fn rows_query(&self, clips: Vec<u64>) -> AggregateQuery {
        AggregateQuery {
            purpose: 0,
            filters: Vec::new(),
            condition: None,
            clips,
            origins: self.origins.clone(),
        }
    }

    /// The cells' public parameters: the buckets' origins.
    pub fn cells_query(&self) -> AggregateQuery {
        self.rows_query(Vec::new())
    }

    /// The cells of `tallies` (the rows' native twin, [`crate::aggregate::evaluate`] under
    /// [`RollupShapes::rows`], over every row of a sealing), column by column in the
    /// cells' layout, one cell per key and in key order, without padding.
    pub fn cells_of(&self, tallies: &Tallies) -> Result<Vec<Vec<u64>>, CircuitError> {
        let layout = self.cell_layout();
        let mut columns = vec![Vec::with_capacity(tallies.len()); layout.columns().len()];
        for (&key, tally) in tallies {
            let mut rest = key;
            let mut codes: Vec<u64> = self
                .rows
                .group_by
                .iter()
                .rev()
                .map(|g| {
                    let width = g.width(&self.rows.layout);
                    let code = rest & ((1u128 << width) - 1) as u64;
                    rest = rest.checked_shr(width).unwrap_or(0);
                    code
                })
                .collect();
            codes.reverse();
            let mut origins = self.origins.iter();
            for (column, (g, code)) in self.rows.group_by.iter().zip(codes).enumerate() {
                columns[column].push(match g {
                    Grouping::Column(_) => code,
                    Grouping::Bucket(b) => {
                        let origin = *origins.next().expect("one origin a bucket");
                        u64::try_from(i128::from(origin) + i128::from(code) * i128::from(b.seconds))
                            .map_err(|_| bad_cell(format!("bucket {code} starts before 1970")))?
                    }
                });
            }
            columns[self.present_column()].push(1);
            let values = std::iter::once(u128::from(tally.count)).chain(tally.sums.iter().copied());
            for (offset, value) in values.enumerate() {
                let column = self.count_column(0) + offset;
                let value = u64::try_from(value)
                    .ok()
                    .filter(|&v| fits(v, layout.width(column)))
                    .ok_or_else(|| {
                        bad_cell(format!(
                            "a cell's value {value} does not fit its {} bits",
                            layout.width(column)
                        ))
                    })?;
                columns[column].push(value);
            }
        }
        Ok(columns)
    }
}

fn bad_cell(message: String) -> CircuitError {
    CircuitError::InvalidWitness(message)
}

impl Rollup {
    /// The roll-up's shapes over chunks of `layout` whose consent column is `consent`,
    /// with cell chunks of `cell_rows` rows (a power of two).
    pub fn shapes(
        &self,
        layout: &ChunkLayout,
        consent: usize,
        cell_rows: usize,
    ) -> Result<RollupShapes, CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidShape(msg));
        if self.measures.is_empty() && self.clipped {
            return bad("a roll-up without measures clips nothing".into());
        }
        let purposes = layout
            .columns()
            .get(consent)
            .map(|c| c.width as usize)
            .ok_or_else(|| CircuitError::InvalidShape(format!("no consent column {consent}")))?;
        let mut group_by = Vec::with_capacity(self.key.len());
        let mut origins = Vec::new();
        let mut cell_columns = Vec::with_capacity(self.key.len() + 1);
        for part in &self.key {
            match *part {
                KeyPart::Column(column) => {
                    let spec = layout.columns().get(column).ok_or_else(|| {
                        CircuitError::InvalidShape(format!("no key column {column}"))
                    })?;
                    group_by.push(Grouping::Column(column));
                    cell_columns.push(ColumnSpec::narrow(spec.width));
                }
                KeyPart::Bucket {
                    column,
                    seconds,
                    offset,
                } => {
                    let spec = layout.columns().get(column).ok_or_else(|| {
                        CircuitError::InvalidShape(format!("no time column {column}"))
                    })?;
                    if seconds == 0 || offset >= seconds || i64::try_from(seconds).is_err() {
                        return bad(format!(
                            "a bucket of {seconds} seconds with boundaries at {offset} past \
                             a multiple"
                        ));
                    }
                    // Bucket 0 holds the least time the column stores, 0, so that every
                    // row has a bucket, and the codes reach its greatest.
                    let (offset, length) = (offset as i64, seconds as i64);
                    let origin = offset - if offset == 0 { 0 } else { length };
                    let greatest = (u128::from(u64::MAX) >> (64 - spec.width)) as i128;
                    let last = (greatest - i128::from(origin)) / i128::from(seconds);
                    let width = (u128::BITS - (last as u128).leading_zeros()).max(1);
                    group_by.push(Grouping::Bucket(TimeBucket {
                        column,
                        seconds,
                        width,
                    }));
                    origins.push(origin);
                    cell_columns.push(ColumnSpec::wide(spec.width));
                }
            }
        }
        for _ in 0..purposes {
            cell_columns.push(ColumnSpec::wide(CELL_COUNT_WIDTH));
            for &measure in &self.measures {
                let width = layout
                    .columns()
                    .get(measure)
                    .map(|c| (c.width + CELL_COUNT_WIDTH).min(64))
                    .ok_or_else(|| CircuitError::InvalidShape(format!("no measure {measure}")))?;
                cell_columns.push(ColumnSpec::wide(width));
            }
        }
        let present = cell_columns.len();
        cell_columns.push(ColumnSpec::narrow(1));
        let cell_layout = ChunkLayout::new(cell_columns, present, cell_rows)?;
        let aggregand = match (self.measures.is_empty(), self.clipped) {
            (true, _) => Aggregand::CountOnly,
            (false, false) => Aggregand::Sum {
                columns: self.measures.clone(),
            },
            (false, true) => Aggregand::ClippedSum {
                columns: self.measures.clone(),
            },
        };
        let rows = AggregateShape {
            layout: layout.clone(),
            selection: Selection::ByPurpose { consent },
            filters: Vec::new(),
            group_by: group_by.clone(),
            aggregand,
            weight: None,
        };
        rows.validate()?;
        // The cells' key: the same parts, read from the cells' columns.
        let cells_group_by = group_by
            .iter()
            .enumerate()
            .map(|(column, g)| match *g {
                Grouping::Column(_) => Grouping::Column(column),
                Grouping::Bucket(b) => Grouping::Bucket(TimeBucket { column, ..b }),
            })
            .collect();
        let shapes_so_far = |cells: AggregateShape| RollupShapes {
            rows: rows.clone(),
            cells,
            origins: origins.clone(),
            purposes,
        };
        let mut cells = AggregateShape {
            layout: cell_layout,
            selection: Selection::Present,
            filters: Vec::new(),
            group_by: cells_group_by,
            aggregand: Aggregand::CountOnly,
            weight: None,
        };
        let placed = shapes_so_far(cells.clone());
        let summed: Vec<usize> = (0..purposes)
            .flat_map(|p| {
                let placed = &placed;
                (0..=self.measures.len()).map(move |m| placed.count_column(p) + m)
            })
            .skip(1)
            .collect();
        cells.weight = Some(placed.count_column(0));
        if !summed.is_empty() {
            cells.aggregand = Aggregand::Sum { columns: summed };
        }
        cells.validate()?;
        Ok(shapes_so_far(cells))
    }
}

/// A sealing's challenge: the hash of both shapes' digests, the rows' public parameters,
/// the number of row chunks, every row chunk's commitment and every cell chunk's, in
/// order. Node and verifier compute it alike; the rows and the cells are fixed before it,
/// and a sealing's proofs hold for its own chunks only.
pub fn challenge(
    shapes: &RollupShapes,
    rows_query: &AggregateQuery,
    row_chunks: &[Fr],
    cell_chunks: &[Fr],
) -> Fr {
    let mut inputs = vec![
        Fr::from(ROLLUP_CHALLENGE_TAG),
        shapes.rows.digest(),
        shapes.cells.digest(),
    ];
    inputs.extend(rows_query.public_parameters(&shapes.rows));
    inputs.push(Fr::from(row_chunks.len() as u64));
    inputs.extend(row_chunks);
    inputs.extend(cell_chunks);
    poseidon::chain(&inputs)
}
