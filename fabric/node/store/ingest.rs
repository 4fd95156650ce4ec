//! Ingest: record files validated against the dataset's schema and stored as pending
//! rows, all files or none; full chunks are sealed at once.

use std::{fs, path::PathBuf};

use fail::fail_point;
use rusqlite::{params, TransactionBehavior};

use super::{io, SealReport, Store, StoreError};
use crate::{shared::records, verifier::schema::Schema};

/// What an ingest stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestReport {
    /// Rows accepted from the file.
    pub rows: u64,
    /// Rows now waiting to be sealed.
    pub pending: u64,
}

impl Store {
    /// Validates every file against the dataset's schema, then stores all their rows as
    /// pending in one transaction: if any file is refused, nothing is stored. Full chunks
    /// are sealed at once.
    pub fn ingest(
        &mut self,
        dataset: &str,
        files: &[PathBuf],
    ) -> Result<(IngestReport, Option<SealReport>), StoreError> {
        let schema = self.schema(dataset)?;
        let parsed = files
            .iter()
            .map(|f| Ok((f.display().to_string(), records::read_file(&schema, f)?)))
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.add_pending(&schema, parsed, |_, _| Ok(()))
    }

    /// Stores parsed files as pending batches in one transaction, calls `within` with the
    /// transaction and the new batch ids before committing (so that a donation is recorded
    /// atomically with its rows), then seals full chunks.
    pub(super) fn add_pending(
        &mut self,
        schema: &Schema,
        parsed: Vec<(String, Vec<Vec<u64>>)>,
        within: impl FnOnce(&rusqlite::Transaction, &[i64]) -> Result<(), StoreError>,
    ) -> Result<(IngestReport, Option<SealReport>), StoreError> {
        let dataset = schema.name.as_str();
        let pending_dir = self.dir.join(dataset).join("pending");
        fs::create_dir_all(&pending_dir).map_err(io(&pending_dir))?;
        let next: i64 =
            self.db
                .query_row("SELECT COALESCE(MAX(batch), 0) + 1 FROM pending", [], |r| {
                    r.get(0)
                })?;
        let mut written = Vec::new();
        let mut rows = 0u64;
        for (i, (source, columns)) in parsed.iter().enumerate() {
            let count = columns.first().map_or(0, Vec::len) as u64;
            if count == 0 {
                continue;
            }
            // Unique across processes and threads: a random suffix.
            let name = format!(
                "{}-{}-{:08x}.parquet",
                next + i as i64,
                std::process::id(),
                rand::random::<u32>()
            );
            let batch = records::to_stored_batch(schema, columns, None);
            records::write_file(&pending_dir.join(&name), batch.schema(), [batch])?;
            written.push((name, count, source));
            rows += count;
        }
        fail_point!("ingest-files-written");
        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut batches = Vec::new();
        for (name, count, source) in &written {
            tx.execute(
                "INSERT INTO pending (dataset, file, rows, source) VALUES (?1, ?2, ?3, ?4)",
                params![dataset, name, *count as i64, source],
            )?;
            batches.push(tx.last_insert_rowid());
        }
        let recorded =
            super::units::count(&tx, schema, &parsed).and_then(|()| within(&tx, &batches));
        if let Err(e) = recorded {
            drop(tx);
            for (name, _, _) in &written {
                let _ = fs::remove_file(pending_dir.join(name));
            }
            return Err(e);
        }
        fail_point!("ingest-before-commit");
        tx.commit()?;
        fail_point!("ingest-committed");
        let sealed = if self.pending_rows(dataset)? >= schema.chunk_rows as u64 {
            self.seal_rows(schema, false)?
        } else {
            None
        };
        let pending = self.pending_rows(dataset)?;
        tracing::info!(dataset, files = parsed.len(), rows, pending, "ingested");
        Ok((IngestReport { rows, pending }, sealed))
    }

    /// Rows of `dataset` waiting to be sealed.
    pub fn pending_rows(&self, dataset: &str) -> Result<u64, StoreError> {
        let rows: i64 = self.db.query_row(
            "SELECT COALESCE(SUM(rows), 0) FROM pending WHERE dataset = ?1",
            [dataset],
            |r| r.get(0),
        )?;
        Ok(rows as u64)
    }
}
