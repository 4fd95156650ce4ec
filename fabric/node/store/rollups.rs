//! Roll-ups at publication: each roll-up the schema declares keeps every live chunk rolled
//! up by exactly one live **sealing**, a set of chunks and the cells made of their rows.
//! Publishing an epoch (a seal, or a withdrawal that sealed chunks again) retires the
//! sealings that lost a chunk and rolls every chunk no live sealing covers into one new
//! sealing: its cells are computed from the chunks' rows (the native twin of the
//! sealing's rows statement), sealed into cell chunks of the dataset's chunk size with
//! fresh salts, written under `DATASET/rollups/NAME/`, and recorded in the publication's
//! transaction. Cell files of a retired sealing are erased with the withdrawn rows'
//! chunks: their cells aggregated those rows.

use std::{fs, path::Path};

use ark_serialize::CanonicalSerialize;
use fail::fail_point;
use rand::rngs::OsRng;
use rayon::prelude::*;
use rusqlite::{params, Connection};
use zkfabric_circuits::{
    aggregate,
    commitment::Chunk,
    evaluation::{add_tallies, Tallies},
};

use super::{io, StoreError};
use crate::{
    shared::records,
    verifier::{
        manifest::{fr_to_hex, ChunkEntry, RollupEntry, SealingEntry},
        schema::{Rollup, Schema},
    },
};

/// What one roll-up's new sealing made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RolledUp {
    /// The roll-up.
    pub rollup: String,
    /// Chunks the sealing rolled up (new ones, and any whose sealing lost a chunk).
    pub chunks: u64,
    /// Cells (non-empty keys) it made of them.
    pub cells: u64,
    /// Cell chunks those fill.
    pub cell_chunks: u64,
}

/// The folder of a roll-up's cell files.
pub(super) fn cells_dir(dir: &Path, dataset: &str, rollup: &str) -> std::path::PathBuf {
    dir.join(dataset).join("rollups").join(rollup)
}

/// Brings every roll-up of `schema` up to the live chunks, inside the transaction that
/// publishes `epoch`: see the module documentation.
pub(super) fn roll_up(
    tx: &Connection,
    dir: &Path,
    schema: &Schema,
    epoch: u64,
) -> Result<Vec<RolledUp>, StoreError> {
    let dataset = &schema.name;
    let live: Vec<u64> = {
        let mut stmt = tx.prepare(
            "SELECT idx FROM chunks WHERE dataset = ?1 AND retired_in IS NULL ORDER BY idx",
        )?;
        let rows = stmt.query_map([dataset], |r| r.get::<_, i64>(0))?;
        rows.map(|i| i.map(|i| i as u64))
            .collect::<Result<_, _>>()?
    };
    let mut report = Vec::new();
    for rollup in &schema.rollups {
        let mut covered = Vec::new();
        for (sealing, chunks) in sealings(tx, dataset, &rollup.name)? {
            if chunks.iter().all(|c| live.contains(c)) {
                covered.extend(chunks);
            } else {
                tx.execute(
                    "UPDATE sealings SET retired_in = ?4
                     WHERE dataset = ?1 AND rollup = ?2 AND sealing = ?3",
                    params![dataset, rollup.name, sealing as i64, epoch as i64],
                )?;
            }
        }
        let uncovered: Vec<u64> = live
            .iter()
            .copied()
            .filter(|c| !covered.contains(c))
            .collect();
        if !uncovered.is_empty() {
            report.push(seal_cells(tx, dir, schema, rollup, &uncovered)?);
        }
    }
    Ok(report)
}

/// A roll-up's live sealings (number, rolled-up chunks), oldest first.
fn sealings(
    tx: &Connection,
    dataset: &str,
    rollup: &str,
) -> Result<Vec<(u64, Vec<u64>)>, StoreError> {
    let mut stmt = tx.prepare(
        "SELECT sealing, chunks FROM sealings
         WHERE dataset = ?1 AND rollup = ?2 AND retired_in IS NULL ORDER BY sealing",
    )?;
    let rows = stmt.query_map(params![dataset, rollup], |r| {
        Ok((r.get::<_, i64>(0)? as u64, r.get::<_, String>(1)?))
    })?;
    rows.map(|row| {
        let (sealing, chunks) = row?;
        let chunks = serde_json::from_str(&chunks).map_err(|e| {
            StoreError::Corrupt(format!("sealing {sealing} of roll-up {rollup}: {e}"))
        })?;
        Ok((sealing, chunks))
    })
    .collect()
}

/// Rolls `chunks` up into a new sealing of `rollup`: cells, cell chunks, files, rows.
fn seal_cells(
    tx: &Connection,
    dir: &Path,
    schema: &Schema,
    rollup: &Rollup,
    chunks: &[u64],
) -> Result<RolledUp, StoreError> {
    let dataset = &schema.name;
    let shapes = schema.rollup_shapes(rollup, schema.chunk_rows)?;
    let query = shapes.rows_query(schema.rollup_clips(rollup));
    let loaded = chunks
        .iter()
        .map(|&index| super::load_chunk(tx, dir, schema, index))
        .collect::<Result<Vec<_>, _>>()?;
    let tallies = loaded
        .par_iter()
        .map(|chunk| aggregate::evaluate(&shapes.rows, &query, chunk))
        .try_fold(Tallies::new, |mut all, tallies| {
            add_tallies(&mut all, &tallies?);
            Ok::<_, zkfabric_circuits::CircuitError>(all)
        })
        .try_reduce(Tallies::new, |mut all, more| {
            add_tallies(&mut all, &more);
            Ok(all)
        })?;
    let columns = shapes.cells_of(&tallies)?;
    let cells = columns.first().map_or(0, Vec::len);
    let sealing: i64 = tx.query_row(
        "SELECT COALESCE(MAX(sealing) + 1, 0) FROM sealings WHERE dataset = ?1 AND rollup = ?2",
        params![dataset, rollup.name],
        |r| r.get(0),
    )?;
    let first: i64 = tx.query_row(
        "SELECT COALESCE(MAX(idx) + 1, 0) FROM cells WHERE dataset = ?1 AND rollup = ?2",
        params![dataset, rollup.name],
        |r| r.get(0),
    )?;
    let folder = cells_dir(dir, dataset, &rollup.name);
    fs::create_dir_all(&folder).map_err(io(&folder))?;
    let names = schema.cell_columns(rollup);
    let table = schema.cells_table_id(rollup);
    let capacity = schema.chunk_rows;
    let layout = shapes.cell_layout();
    let starts: Vec<usize> = (0..cells).step_by(capacity).collect();
    let sealed = starts
        .par_iter()
        .enumerate()
        .map(|(n, &start)| {
            let index = first as u64 + n as u64;
            let end = (start + capacity).min(cells);
            let stored: Vec<Vec<u64>> = columns[..names.len()]
                .iter()
                .map(|c| c[start..end].to_vec())
                .collect();
            let mut with_present = stored.clone();
            with_present.push(vec![1; end - start]);
            let chunk = Chunk::seal(layout, table, index, with_present, &mut OsRng)?;
            let file = format!("{index}.parquet");
            let batch = records::columns_batch(&names, &stored, Some(index));
            records::write_file(&folder.join(&file), batch.schema(), [batch])?;
            let mut salts = Vec::new();
            chunk
                .salts
                .serialize_compressed(&mut salts)
                .expect("serializing into a Vec cannot fail");
            Ok((
                index,
                file,
                end - start,
                fr_to_hex(&chunk.commitment(layout)),
                salts,
            ))
        })
        .collect::<Result<Vec<_>, StoreError>>()?;
    fail_point!("seal-cells-written");
    tx.execute(
        "INSERT INTO sealings (dataset, rollup, sealing, chunks) VALUES (?1, ?2, ?3, ?4)",
        params![
            dataset,
            rollup.name,
            sealing,
            serde_json::to_string(chunks).expect("a list of numbers")
        ],
    )?;
    for (index, file, rows, commitment, salts) in &sealed {
        tx.execute(
            "INSERT INTO cells (dataset, rollup, idx, sealing, file, rows, commitment, salts)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![
                dataset,
                rollup.name,
                *index as i64,
                sealing,
                file,
                *rows as i64,
                commitment,
                salts
            ],
        )?;
    }
    Ok(RolledUp {
        rollup: rollup.name.clone(),
        chunks: chunks.len() as u64,
        cells: cells as u64,
        cell_chunks: sealed.len() as u64,
    })
}

/// The manifest's roll-up entries: each roll-up's live sealings with their cell chunks.
pub(super) fn entries(tx: &Connection, schema: &Schema) -> Result<Vec<RollupEntry>, StoreError> {
    schema
        .rollups
        .iter()
        .map(|rollup| {
            let sealings = sealings(tx, &schema.name, &rollup.name)?
                .into_iter()
                .map(|(sealing, chunks)| {
                    let mut stmt = tx.prepare(
                        "SELECT idx, commitment, rows FROM cells
                         WHERE dataset = ?1 AND rollup = ?2 AND sealing = ?3 ORDER BY idx",
                    )?;
                    let cells = stmt
                        .query_map(params![schema.name, rollup.name, sealing as i64], |r| {
                            Ok(ChunkEntry {
                                index: r.get::<_, i64>(0)? as u64,
                                commitment: r.get(1)?,
                                rows: r.get::<_, i64>(2)? as u64,
                                credential_rows: 0,
                                organisation_rows: 0,
                            })
                        })?
                        .collect::<Result<_, _>>()?;
                    Ok(SealingEntry { chunks, cells })
                })
                .collect::<Result<_, StoreError>>()?;
            Ok(RollupEntry {
                name: rollup.name.clone(),
                sealings,
            })
        })
        .collect()
}
