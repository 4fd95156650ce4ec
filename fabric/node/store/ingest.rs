//! Ingest: record files validated against the dataset's schema and stored as pending
//! rows, all files or none; full chunks are sealed at once. Each file's SHA-256 is kept
//! with the batch it became, so a file ingested again (an ingest killed after its commit
//! and run once more) is refused instead of counting its rows twice.

use std::{collections::HashMap, fs, path::PathBuf};

use fail::fail_point;
use rusqlite::{params, OptionalExtension, TransactionBehavior};

use super::{io, sha256_hex, SealReport, Store, StoreError};
use crate::{shared::records, verifier::schema::Schema};

/// What an ingest stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestReport {
    /// Rows accepted from the file.
    pub rows: u64,
    /// Rows now waiting to be sealed.
    pub pending: u64,
    /// The batches committed, one per non-empty file.
    pub batches: Vec<u64>,
}

/// One ingested file, as the catalog keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IngestedBatch {
    /// The batch its rows became.
    pub batch: u64,
    /// The file's SHA-256, hex.
    pub sha256: String,
    /// The file as it was named.
    pub source: String,
    /// Its rows.
    pub rows: u64,
    /// When it was ingested, in seconds since 1970.
    pub ingested_at: u64,
    /// The earlier batch of the same bytes, for a file ingested again on purpose
    /// (`--allow-duplicate`).
    pub duplicate_of: Option<u64>,
}

impl Store {
    /// Validates every file against the dataset's schema, then stores all their rows as
    /// pending in one transaction: if any file is refused, nothing is stored. A file whose
    /// bytes were already ingested into the dataset (or appear twice in `files`) is
    /// refused naming the batch, unless `allow_duplicate`, which the catalog records. Full
    /// chunks are sealed at once.
    pub fn ingest(
        &mut self,
        dataset: &str,
        files: &[PathBuf],
        allow_duplicate: bool,
    ) -> Result<(IngestReport, Option<SealReport>), StoreError> {
        let schema = self.schema(dataset)?;
        // Each file's SHA-256, by the name its batch records.
        let mut sha_of: HashMap<String, String> = HashMap::new();
        let mut parsed = Vec::with_capacity(files.len());
        for file in files {
            let source = file.display().to_string();
            let sha256 = sha256_hex(&fs::read(file).map_err(io(file))?);
            if let Some((earlier, _)) = sha_of.iter().find(|(_, h)| **h == sha256) {
                if !allow_duplicate {
                    return Err(StoreError::SameBytesTwice {
                        first: earlier.clone(),
                        second: source,
                    });
                }
            }
            parsed.push((source.clone(), records::read_file(&schema, file)?));
            sha_of.insert(source, sha256);
        }
        // Refused before anything is written (the data directory's lock keeps another
        // ingest from racing this one).
        let earlier = |db: &rusqlite::Connection, sha256: &str| {
            db.query_row(
                "SELECT batch, ingested_at FROM ingested WHERE dataset = ?1 AND sha256 = ?2 \
                 ORDER BY batch LIMIT 1",
                params![dataset, sha256],
                |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?)),
            )
            .optional()
        };
        if !allow_duplicate {
            for (source, sha256) in &sha_of {
                if let Some((batch, when)) = earlier(&self.db, sha256)? {
                    return Err(StoreError::AlreadyIngested {
                        file: source.clone(),
                        dataset: dataset.to_string(),
                        batch: batch as u64,
                        when: format!("ingested at Unix time {when}"),
                        sha256: sha256.clone(),
                    });
                }
            }
        }
        let at = super::donations::now();
        self.add_pending(&schema, parsed, |tx, batches| {
            for &batch in batches {
                let (source, rows): (String, i64) = tx.query_row(
                    "SELECT source, rows FROM pending WHERE batch = ?1",
                    [batch],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )?;
                let sha256 = &sha_of[&source];
                let duplicate_of = earlier(tx, sha256)?.map(|(b, _)| b);
                tx.execute(
                    "INSERT INTO ingested (dataset, batch, sha256, source, rows, ingested_at, \
                     duplicate_of) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    params![
                        dataset,
                        batch,
                        sha256,
                        source,
                        rows,
                        at as i64,
                        duplicate_of
                    ],
                )?;
            }
            Ok(())
        })
    }

    /// The files ingested into `dataset`, oldest first.
    pub fn ingested(&self, dataset: &str) -> Result<Vec<IngestedBatch>, StoreError> {
        let mut statement = self.db.prepare(
            "SELECT batch, sha256, source, rows, ingested_at, duplicate_of FROM ingested \
             WHERE dataset = ?1 ORDER BY batch",
        )?;
        let rows = statement.query_map([dataset], |r| {
            Ok(IngestedBatch {
                batch: r.get::<_, i64>(0)? as u64,
                sha256: r.get(1)?,
                source: r.get(2)?,
                rows: r.get::<_, i64>(3)? as u64,
                ingested_at: r.get::<_, i64>(4)? as u64,
                duplicate_of: r.get::<_, Option<i64>>(5)?.map(|b| b as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
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
        let batches = batches.into_iter().map(|b| b as u64).collect();
        Ok((
            IngestReport {
                rows,
                pending,
                batches,
            },
            sealed,
        ))
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
