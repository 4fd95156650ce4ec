//! How a chunk of rows is committed.
//!
//! A chunk holds up to `capacity` rows (a power of two) of a dataset's columns, every value
//! an unsigned integer below `2^width`. Its columns fall into **groups**, each hashed with
//! its own secret random salt so that a digest reveals nothing, even about low-entropy
//! values:
//! - the **packed group**: every narrow column (dimensions, flags, consent bits, the
//!   `present` flag). A row's narrow values are concatenated, least significant first, into
//!   a row word of `word_bits` bits, and `floor(253 / word_bits)` consecutive row words are
//!   concatenated into one field element. A circuit that unpacks an element decomposes it
//!   into bits, which range-checks every unpacked value to its width (the packing rule).
//! - one **wide group** per wide column (a measure, a timestamp), packed the same way:
//!   `floor(253 / width)` consecutive values per field element, so that a 24-bit measure
//!   costs a Poseidon absorption every ten rows rather than every row. Unpacking again
//!   decomposes every value into `width` bits.
//!
//! A group digest is `poseidon::chain([GROUP_TAG, salt, elements...])`. The chunk
//! commitment is `poseidon::chain([CHUNK_TAG, dataset id, chunk index, row count,
//! digests...])`, where the row count is the number of rows whose `present` flag is set.
//! A circuit re-hashes only the groups its query touches; the other digests enter as
//! witnesses.

use ark_ff::UniformRand;
use ark_std::rand::{CryptoRng, RngCore};

use crate::{gadgets::pow2, poseidon, CircuitError, Fr};

/// Domain tag of a column-group digest.
pub const GROUP_TAG: u64 = 0x7a6b_6601;
/// Domain tag of a chunk commitment.
pub const CHUNK_TAG: u64 = 0x7a6b_6602;
/// Domain tag of a query's committed totals (see [`crate::aggregate::Partial`]).
pub const PARTIAL_TAG: u64 = 0x7a6b_6603;
/// Domain tag of a committed attribute (see [`crate::attribute`]).
pub const ATTRIBUTE_TAG: u64 = 0x7a6b_6604;
/// Domain tag of a committed evaluation (see [`crate::evaluation::commit`]).
pub const EVALUATION_TAG: u64 = 0x7a6b_6605;
/// Domain tag of a query's challenge (see [`crate::combine::challenge`]).
pub const CHALLENGE_TAG: u64 = 0x7a6b_6606;

/// Bits of one packed field element: every value below `2^253` is a canonical BN254
/// scalar, so a 253-bit decomposition is unique.
pub const PACKED_ELEMENT_BITS: u32 = 253;

/// Widest column: every stored value is a `u64`.
pub const MAX_WIDTH: u32 = 64;

/// Whether `value` lies below `2^width` (width 1..=64).
pub fn fits(value: u64, width: u32) -> bool {
    width >= 64 || value >> width == 0
}

/// One column as the commitment sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Values lie in `0..2^width`, `1 <= width <= 64`.
    pub width: u32,
    /// Packed with the other narrow columns (else committed in a group of its own).
    pub packed: bool,
}

impl ColumnSpec {
    /// A narrow column, packed with the others (dimensions, flags, consent bits).
    pub const fn narrow(width: u32) -> Self {
        Self {
            width,
            packed: true,
        }
    }

    /// A wide column with a group of its own (a measure, a timestamp).
    pub const fn wide(width: u32) -> Self {
        Self {
            width,
            packed: false,
        }
    }
}

/// A column group of a chunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Group {
    /// All packed columns together.
    Packed,
    /// One wide column, by index.
    Wide(usize),
}

/// The columns of a dataset's chunks, their packing and the chunk capacity: everything
/// that fixes how a chunk is committed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChunkLayout {
    columns: Vec<ColumnSpec>,
    present: usize,
    capacity: usize,
    /// Bit offset of each column within the row word (packed columns only).
    offsets: Vec<Option<u32>>,
    word_bits: u32,
    groups: Vec<Group>,
}

impl ChunkLayout {
    /// A layout of `columns`, with `present` the index of the 1-bit packed column that
    /// marks real rows, and chunks of `capacity` rows (a power of two).
    pub fn new(
        columns: Vec<ColumnSpec>,
        present: usize,
        capacity: usize,
    ) -> Result<Self, CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidShape(msg));
        if !capacity.is_power_of_two() {
            return bad(format!("chunk capacity {capacity} is not a power of two"));
        }
        for (i, c) in columns.iter().enumerate() {
            if !(1..=MAX_WIDTH).contains(&c.width) {
                return bad(format!("column {i} has width {}, not 1..=64", c.width));
            }
        }
        match columns.get(present) {
            Some(ColumnSpec {
                width: 1,
                packed: true,
            }) => {}
            _ => {
                return bad(format!(
                    "present column {present} must be a packed 1-bit column"
                ))
            }
        }
        let mut offsets = Vec::with_capacity(columns.len());
        let mut word_bits = 0u32;
        let mut groups = vec![Group::Packed];
        for (i, c) in columns.iter().enumerate() {
            if c.packed {
                offsets.push(Some(word_bits));
                word_bits += c.width;
            } else {
                offsets.push(None);
                groups.push(Group::Wide(i));
            }
        }
        if word_bits > PACKED_ELEMENT_BITS {
            return bad(format!(
                "packed columns need {word_bits} bits per row, more than {PACKED_ELEMENT_BITS}"
            ));
        }
        Ok(Self {
            columns,
            present,
            capacity,
            offsets,
            word_bits,
            groups,
        })
    }

    /// The columns, in order.
    pub fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    /// Width of column `column`.
    pub fn width(&self, column: usize) -> u32 {
        self.columns[column].width
    }

    /// Index of the `present` column.
    pub fn present(&self) -> usize {
        self.present
    }

    /// Rows per chunk, padding included.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The column groups, in commitment order: the packed group first.
    pub fn groups(&self) -> &[Group] {
        &self.groups
    }

    /// The group that holds `column`.
    pub fn group_of(&self, column: usize) -> usize {
        match self.offsets[column] {
            Some(_) => 0,
            None => self
                .groups
                .iter()
                .position(|g| *g == Group::Wide(column))
                .expect("every wide column has a group"),
        }
    }

    /// Bit offset of a packed column within its row word.
    pub fn packed_offset(&self, column: usize) -> Option<u32> {
        self.offsets[column]
    }

    /// Packed columns' bits per row.
    pub fn word_bits(&self) -> u32 {
        self.word_bits
    }

    /// Bits one row takes in group `group`'s elements: the row word in the packed group,
    /// the column's width in a wide one.
    pub fn row_bits(&self, group: usize) -> u32 {
        match self.groups[group] {
            Group::Packed => self.word_bits,
            Group::Wide(c) => self.columns[c].width,
        }
    }

    /// Rows per field element of group `group`.
    pub fn rows_per_element(&self, group: usize) -> usize {
        (PACKED_ELEMENT_BITS / self.row_bits(group).max(1)) as usize
    }

    /// Group `group`'s rows, one range of row indices per field element.
    pub fn element_rows(&self, group: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
        let per = self.rows_per_element(group);
        (0..self.capacity)
            .step_by(per)
            .map(move |start| start..(start + per).min(self.capacity))
    }
}

/// The rows of one sealed chunk and its salts: what the node keeps secret and a prover
/// needs as witness.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Chunk {
    /// The dataset this chunk belongs to.
    pub dataset_id: u64,
    /// Position of the chunk within its dataset.
    pub index: u64,
    /// Column-major values, `capacity` per column; padding rows are all zero.
    pub columns: Vec<Vec<u64>>,
    /// One secret salt per column group, in [`ChunkLayout::groups`] order.
    pub salts: Vec<Fr>,
}

impl Chunk {
    /// Seals `columns` (column-major, at most `capacity` rows each) into a chunk with fresh
    /// salts, padding it to capacity with all-zero rows.
    pub fn seal<R: RngCore + CryptoRng>(
        layout: &ChunkLayout,
        dataset_id: u64,
        index: u64,
        mut columns: Vec<Vec<u64>>,
        rng: &mut R,
    ) -> Result<Self, CircuitError> {
        if let Some(len) = columns
            .iter()
            .map(Vec::len)
            .find(|&l| l > layout.capacity())
        {
            return Err(CircuitError::InvalidWitness(format!(
                "{len} rows do not fit a chunk of {}",
                layout.capacity()
            )));
        }
        for column in &mut columns {
            column.resize(layout.capacity(), 0);
        }
        let salts = layout.groups().iter().map(|_| Fr::rand(rng)).collect();
        let chunk = Self {
            dataset_id,
            index,
            columns,
            salts,
        };
        chunk.validate(layout)?;
        Ok(chunk)
    }

    /// Checks that the chunk fits `layout`: column count and lengths, every value within
    /// its width, `present` flags of 0 or 1, one salt per group.
    pub fn validate(&self, layout: &ChunkLayout) -> Result<(), CircuitError> {
        let bad = |msg: String| Err(CircuitError::InvalidWitness(msg));
        if self.columns.len() != layout.columns().len() {
            return bad(format!(
                "chunk has {} columns, layout {}",
                self.columns.len(),
                layout.columns().len()
            ));
        }
        for (c, values) in self.columns.iter().enumerate() {
            if values.len() != layout.capacity() {
                return bad(format!(
                    "column {c} has {} rows, not {}",
                    values.len(),
                    layout.capacity()
                ));
            }
            let width = layout.width(c);
            if let Some(row) = values.iter().position(|&v| !fits(v, width)) {
                return bad(format!(
                    "column {c} row {row}: value {} exceeds {width} bits",
                    values[row]
                ));
            }
        }
        if self.salts.len() != layout.groups().len() {
            return bad(format!(
                "{} salts for {} groups",
                self.salts.len(),
                layout.groups().len()
            ));
        }
        Ok(())
    }

    /// Number of rows whose `present` flag is set.
    pub fn row_count(&self, layout: &ChunkLayout) -> u64 {
        self.columns[layout.present()].iter().sum()
    }

    /// What the chunk commitment binds besides the rows: dataset id, index, present rows.
    pub fn id(&self, layout: &ChunkLayout) -> crate::aggregate::ChunkId {
        crate::aggregate::ChunkId {
            dataset_id: self.dataset_id,
            index: self.index,
            rows: self.row_count(layout),
        }
    }

    /// The field elements group `group` hashes, after its tag and salt: consecutive rows'
    /// bits concatenated, least significant first.
    pub fn group_elements(&self, layout: &ChunkLayout, group: usize) -> Vec<Fr> {
        let row_bits = layout.row_bits(group);
        let row_value = |row: usize| -> Fr {
            match layout.groups()[group] {
                Group::Wide(c) => Fr::from(self.columns[c][row]),
                Group::Packed => (0..self.columns.len())
                    .filter_map(|c| {
                        let offset = layout.packed_offset(c)?;
                        Some(Fr::from(self.columns[c][row]) * pow2(offset))
                    })
                    .sum(),
            }
        };
        layout
            .element_rows(group)
            .map(|rows| {
                rows.enumerate()
                    .map(|(slot, row)| row_value(row) * pow2(slot as u32 * row_bits))
                    .sum()
            })
            .collect()
    }

    /// Digest of group `group`: `chain([GROUP_TAG, salt, elements...])`.
    pub fn group_digest(&self, layout: &ChunkLayout, group: usize) -> Fr {
        let mut inputs = vec![Fr::from(GROUP_TAG), self.salts[group]];
        inputs.extend(self.group_elements(layout, group));
        poseidon::chain(&inputs)
    }

    /// Digests of every group, in order.
    pub fn group_digests(&self, layout: &ChunkLayout) -> Vec<Fr> {
        (0..layout.groups().len())
            .map(|g| self.group_digest(layout, g))
            .collect()
    }

    /// The chunk commitment a manifest publishes.
    pub fn commitment(&self, layout: &ChunkLayout) -> Fr {
        chunk_commitment(
            self.dataset_id,
            self.index,
            self.row_count(layout),
            &self.group_digests(layout),
        )
    }
}

/// `chain([CHUNK_TAG, dataset id, chunk index, row count, digests...])`.
pub fn chunk_commitment(dataset_id: u64, index: u64, row_count: u64, digests: &[Fr]) -> Fr {
    let mut inputs = vec![
        Fr::from(CHUNK_TAG),
        Fr::from(dataset_id),
        Fr::from(index),
        Fr::from(row_count),
    ];
    inputs.extend_from_slice(digests);
    poseidon::chain(&inputs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ark_std::rand::SeedableRng;

    fn layout() -> ChunkLayout {
        ChunkLayout::new(
            vec![
                ColumnSpec::wide(32),
                ColumnSpec::narrow(4),
                ColumnSpec::narrow(1),
                ColumnSpec::wide(20),
            ],
            2,
            8,
        )
        .unwrap()
    }

    #[test]
    fn layouts_are_validated() {
        assert!(ChunkLayout::new(vec![ColumnSpec::narrow(1)], 0, 6).is_err());
        assert!(
            ChunkLayout::new(vec![ColumnSpec::narrow(65), ColumnSpec::narrow(1)], 1, 8).is_err()
        );
        assert!(ChunkLayout::new(vec![ColumnSpec::narrow(2)], 0, 8).is_err());
        assert!(ChunkLayout::new(
            vec![
                ColumnSpec::narrow(1),
                ColumnSpec::narrow(64),
                ColumnSpec::narrow(64),
                ColumnSpec::narrow(64),
                ColumnSpec::narrow(64)
            ],
            0,
            8
        )
        .is_err());
        let l = layout();
        assert_eq!(l.groups(), &[Group::Packed, Group::Wide(0), Group::Wide(3)]);
        assert_eq!((l.word_bits(), l.rows_per_element(0)), (5, 50));
        // Wide groups pack their own values: 253 / 32 and 253 / 20 rows per element.
        assert_eq!((l.rows_per_element(1), l.rows_per_element(2)), (7, 12));
        assert_eq!(l.group_of(3), 2);
    }

    #[test]
    fn packing_places_each_value_at_its_offset() {
        let l = layout();
        let mut rng = ark_std::rand::rngs::StdRng::seed_from_u64(1);
        let chunk = Chunk::seal(
            &l,
            7,
            0,
            vec![vec![9, 9], vec![3, 15], vec![1, 1], vec![5, 6]],
            &mut rng,
        )
        .unwrap();
        assert_eq!(chunk.row_count(&l), 2);
        // row 0: 3 | 1 << 4 = 19; row 1: 15 | 1 << 4 = 31, at bit 5.
        assert_eq!(
            chunk.group_elements(&l, 0),
            vec![Fr::from(19u64 + (31 << 5))]
        );
        // A wide group: 5 and 6 in consecutive 20-bit slots.
        assert_eq!(
            chunk.group_elements(&l, 2),
            vec![Fr::from(5u64 + (6 << 20))]
        );
        let mut other = chunk.clone();
        other.salts[1] = Fr::from(1u8);
        assert_ne!(other.commitment(&l), chunk.commitment(&l));
        assert!(Chunk::seal(
            &l,
            7,
            0,
            vec![vec![0], vec![16], vec![1], vec![0]],
            &mut rng
        )
        .is_err());
    }
}
