//! Sealing: pending rows committed into chunks (fresh salts, Poseidon commitments) and
//! published as a new epoch under a signed manifest, in one catalog transaction. The
//! chunk-writing steps serve withdrawals too (`donations`), which seal the kept rows
//! again.

use std::{fs, path::Path};

use ark_ff::UniformRand;
use ark_serialize::CanonicalSerialize;
use ed25519_dalek::SigningKey;
use fail::fail_point;
use rand::rngs::OsRng;
use rayon::prelude::*;
use rusqlite::{params, OptionalExtension, TransactionBehavior};
use zkfabric_circuits::{commitment::Chunk, noise::secret_commitment, Fr};

use super::{io, Store, StoreError};
use crate::{
    shared::records,
    verifier::{
        manifest::{fr_to_hex, ChunkEntry, Manifest, SignedManifest},
        schema::{Privacy, Schema},
    },
};

/// What a seal published.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SealReport {
    /// The new epoch.
    pub epoch: u64,
    /// Chunks added by this seal.
    pub chunks: u64,
    /// Rows sealed.
    pub rows: u64,
    /// What each roll-up's new sealing made of them.
    pub rollups: Vec<super::RolledUp>,
}

impl Store {
    /// Seals every pending row of `dataset` (the last chunk may be partly filled) and
    /// publishes a new epoch; `None` when nothing is pending.
    pub fn seal(&mut self, dataset: &str) -> Result<Option<SealReport>, StoreError> {
        let schema = self.schema(dataset)?;
        self.seal_rows(&schema, true)
    }

    pub(super) fn seal_rows(
        &mut self,
        schema: &Schema,
        partial_last: bool,
    ) -> Result<Option<SealReport>, StoreError> {
        let dataset = &schema.name;
        let capacity = schema.chunk_rows;
        let batches: Vec<(i64, String, u64)> = {
            let mut stmt = self.db.prepare(
                "SELECT batch, file, rows FROM pending WHERE dataset = ?1 ORDER BY batch",
            )?;
            let rows = stmt.query_map([dataset], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get::<_, i64>(2)? as u64))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut columns: Vec<Vec<u64>> = vec![Vec::new(); schema.declared().len()];
        for (_, file, _) in &batches {
            let path = self.dir.join(dataset).join("pending").join(file);
            for (all, part) in columns
                .iter_mut()
                .zip(records::read_stored_file(schema, &path)?)
            {
                all.extend(part);
            }
        }
        let total = columns.first().map_or(0, Vec::len);
        let sealed_rows = if partial_last {
            total
        } else {
            total - total % capacity
        };
        if sealed_rows == 0 {
            return Ok(None);
        }
        let first_index: i64 = self.db.query_row(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM chunks WHERE dataset = ?1",
            [dataset],
            |r| r.get(0),
        )?;
        let chunk_dir = self.dir.join(dataset).join("chunks");
        fs::create_dir_all(&chunk_dir).map_err(io(&chunk_dir))?;
        // Chunks are committed (hashing dominates) and written in parallel.
        let starts: Vec<usize> = (0..sealed_rows).step_by(capacity).collect();
        let new_chunks = starts
            .par_iter()
            .enumerate()
            .map(|(n, &start)| {
                let end = (start + capacity).min(sealed_rows);
                let stored = columns.iter().map(|c| c[start..end].to_vec()).collect();
                seal_chunk(schema, &chunk_dir, first_index as u64 + n as u64, stored)
            })
            .collect::<Result<Vec<_>, _>>()?;
        fail_point!("seal-chunks-written");

        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        for c in &new_chunks {
            insert_chunk(&tx, dataset, c)?;
        }
        // The remainder of a partly sealed set of batches goes back as one new batch.
        let remainder: Vec<Vec<u64>> = columns.iter().map(|c| c[sealed_rows..].to_vec()).collect();
        let mut remainder_batch = None;
        if sealed_rows < total {
            let name = format!("rest-{first_index}-{}.parquet", std::process::id());
            let path = self.dir.join(dataset).join("pending").join(&name);
            let batch = records::to_stored_batch(schema, &remainder, None);
            records::write_file(&path, batch.schema(), [batch])?;
            tx.execute(
                "INSERT INTO pending (dataset, file, rows, source) VALUES (?1, ?2, ?3, 'remainder of a seal')",
                params![dataset, name, (total - sealed_rows) as i64],
            )?;
            remainder_batch = Some(tx.last_insert_rowid());
        }
        for (batch, _, _) in &batches {
            tx.execute("DELETE FROM pending WHERE batch = ?1", [batch])?;
        }
        // Donations record their sealed rows first: the manifest counts them.
        let epoch = super::donations::next_epoch(&tx, dataset)?;
        super::donations::sealed(
            &tx,
            &batches,
            sealed_rows as u64,
            remainder_batch,
            epoch,
            (first_index as u64, capacity as u64),
        )?;
        let (published, rollups) = publish_epoch(&tx, &self.dir, schema, &self.key)?;
        debug_assert_eq!(published, epoch);
        fail_point!("seal-before-commit");
        tx.commit()?;
        fail_point!("seal-committed");
        // The pending files are no longer referenced; a crash here leaves them for the
        // next open to remove.
        for (_, file, _) in &batches {
            let _ = fs::remove_file(self.dir.join(dataset).join("pending").join(file));
        }
        tracing::info!(
            dataset,
            epoch,
            chunks = new_chunks.len(),
            rows = sealed_rows,
            "sealed and published an epoch"
        );
        Ok(Some(SealReport {
            epoch,
            chunks: new_chunks.len() as u64,
            rows: sealed_rows as u64,
            rollups,
        }))
    }
}

/// A chunk sealed and written, waiting for the transaction that publishes it.
pub(super) struct SealedChunk {
    pub(super) index: u64,
    file: String,
    rows: u64,
    commitment: String,
    salts: Vec<u8>,
}

/// Commits `stored` (a chunk's rows, column-major, without the `present` column) as chunk
/// `index` with fresh salts and writes its file.
pub(super) fn seal_chunk(
    schema: &Schema,
    chunk_dir: &Path,
    index: u64,
    stored: Vec<Vec<u64>>,
) -> Result<SealedChunk, StoreError> {
    let layout = schema.layout()?;
    let rows = stored.first().map_or(0, Vec::len);
    let mut with_present = stored.clone();
    with_present.push(vec![1; rows]);
    let chunk = Chunk::seal(&layout, schema.id, index, with_present, &mut OsRng)?;
    let file = format!("{index}.parquet");
    let batch = records::to_stored_batch(schema, &stored, Some(index));
    records::write_file(&chunk_dir.join(&file), batch.schema(), [batch])?;
    fail_point!("seal-chunk-written");
    let mut salts = Vec::new();
    chunk
        .salts
        .serialize_compressed(&mut salts)
        .expect("serializing into a Vec cannot fail");
    Ok(SealedChunk {
        index,
        file,
        rows: rows as u64,
        commitment: fr_to_hex(&chunk.commitment(&layout)),
        salts,
    })
}

pub(super) fn insert_chunk(
    tx: &rusqlite::Transaction,
    dataset: &str,
    c: &SealedChunk,
) -> Result<(), StoreError> {
    tx.execute(
        "INSERT INTO chunks (dataset, idx, file, rows, commitment, salts)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![
            dataset,
            c.index as i64,
            c.file,
            c.rows as i64,
            c.commitment,
            c.salts
        ],
    )?;
    Ok(())
}

/// Signs and records the next epoch of `schema`'s dataset over its live chunks (those
/// no later epoch retired), each rolled up by every roll-up, chained to the previous
/// manifest; returns the epoch and what its new sealings made.
pub(super) fn publish_epoch(
    tx: &rusqlite::Transaction,
    dir: &Path,
    schema: &Schema,
    key: &SigningKey,
) -> Result<(u64, Vec<super::RolledUp>), StoreError> {
    let dataset = &schema.name;
    let previous: Option<(i64, String)> = tx
        .query_row(
            "SELECT epoch, manifest FROM epochs WHERE dataset = ?1 ORDER BY epoch DESC LIMIT 1",
            [dataset],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let epoch = previous.as_ref().map_or(1, |(e, _)| *e as u64 + 1);
    let previous_hash = previous
        .map(|(_, text)| serde_json::from_str::<SignedManifest>(&text).map(|m| m.manifest.hash()))
        .transpose()
        .map_err(|e| StoreError::Corrupt(format!("previous manifest: {e}")))?;
    // Each live chunk with the rows donors' credentials and organisations vouch for.
    let chunks = {
        let mut stmt = tx.prepare(
            "SELECT c.idx, c.commitment, c.rows,
                 COALESCE(SUM(CASE WHEN d.nullifier IS NOT NULL THEN r.rows END), 0),
                 COALESCE(SUM(CASE WHEN d.organisation IS NOT NULL THEN r.rows END), 0)
             FROM chunks c
             LEFT JOIN donation_rows r ON r.dataset = c.dataset AND r.chunk = c.idx
             LEFT JOIN donations d ON d.id = r.donation
             WHERE c.dataset = ?1 AND c.retired_in IS NULL
             GROUP BY c.idx ORDER BY c.idx",
        )?;
        let rows = stmt.query_map([dataset], |r| {
            Ok(ChunkEntry {
                index: r.get::<_, i64>(0)? as u64,
                commitment: r.get(1)?,
                rows: r.get::<_, i64>(2)? as u64,
                credential_rows: r.get::<_, i64>(3)? as u64,
                organisation_rows: r.get::<_, i64>(4)? as u64,
            })
        })?;
        rows.collect::<Result<Vec<_>, _>>()?
    };
    let rolled_up = super::rollups::roll_up(tx, dir, schema, epoch)?;
    // A dp epoch commits to a fresh noise secret before anyone can ask about it.
    let secret = match schema.privacy {
        Privacy::Dp(_) => Some(Fr::rand(&mut OsRng)),
        Privacy::ThresholdOnly => None,
    };
    let manifest = Manifest {
        dataset: dataset.clone(),
        dataset_id: schema.id,
        epoch,
        schema_hash: schema.hash(),
        chunk_rows: schema.chunk_rows,
        chunks,
        previous: previous_hash,
        privacy: schema.privacy.mode().to_string(),
        noise_commitment: secret.map(|s| fr_to_hex(&secret_commitment(s))),
        rollups: super::rollups::entries(tx, schema)?,
    }
    .sign(key);
    let secret = secret.map(|s| {
        let mut bytes = Vec::new();
        s.serialize_compressed(&mut bytes)
            .expect("serializing into a Vec cannot fail");
        bytes
    });
    tx.execute(
        "INSERT INTO epochs (dataset, epoch, manifest, noise_secret) VALUES (?1, ?2, ?3, ?4)",
        params![
            dataset,
            epoch as i64,
            serde_json::to_string(&manifest).expect("serializable"),
            secret
        ],
    )?;
    Ok((epoch, rolled_up))
}
