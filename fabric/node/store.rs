//! The embedded store under a data directory: pending and sealed records as Parquet
//! files, and a SQLite catalog of datasets, pending batches, chunks (commitments and
//! salts) and signed epoch manifests. This file opens the store and reads it; the
//! writing stages are `store/ingest.rs` (files to pending rows), `store/seal.rs` (pending
//! rows to committed chunks and a signed epoch) and `store/donations.rs` (donations,
//! receipts and withdrawals).
//!
//! ```text
//! DATA_DIR/catalog.sqlite          the catalog
//! DATA_DIR/node.key                the node's Ed25519 secret key (owner-only)
//! DATA_DIR/DATASET/pending/B.parquet   ingested rows waiting to be sealed
//! DATA_DIR/DATASET/chunks/I.parquet    sealed chunk I, with `_chunk` and `_row` columns
//! DATA_DIR/DATASET/rollups/NAME/I.parquet   cell chunk I of roll-up NAME, likewise
//! ```
//!
//! Durability: every file is written to a temporary name, synced and renamed, and only
//! then referenced by a catalog transaction; the commit is the acknowledgement. Opening a
//! store removes files no transaction references (left by a crash before its commit).
//! Sealing writes the chunk files, then in one transaction records the chunks, drops the
//! pending batches, rolls the new chunks up (writing each roll-up's cell files, then
//! recording them: `store/rollups.rs`) and publishes the epoch, and only then deletes the
//! pending files. A
//! crash at any point leaves either the old state or the new one.
//!
//! Withdrawing a sealed donation writes the chunks that held its rows again without
//! them (fresh salts, new indexes), then in one transaction records them, retires the old
//! chunks from a new epoch on and publishes it; older epochs keep their chunks.
//!
//! Each step boundary is a named failpoint (the `fail` crate: `ingest-files-written`,
//! `ingest-before-commit`, `ingest-committed`, `seal-chunk-written`,
//! `seal-chunks-written`, `seal-cells-written`, `seal-before-commit`, `seal-committed`,
//! `withdraw-files-written`, `withdraw-before-commit`); setting for example
//! `FAILPOINTS=seal-before-commit=panic` for the `zkfabric` binary crashes it there, which
//! is how the crash tests reach every step. Failpoints are compiled only into test builds
//! (the `fail` dev-dependency's feature); a shipped binary ignores `FAILPOINTS`.

use std::{
    collections::HashSet,
    fs,
    path::{Path, PathBuf},
};

use ark_serialize::CanonicalDeserialize;
use ed25519_dalek::{SigningKey, VerifyingKey};
use rand::rngs::OsRng;
use rusqlite::{params, Connection, OptionalExtension};
use zkfabric_circuits::{commitment::Chunk, CircuitError, Fr};

mod donations;
mod ingest;
mod ledger;
mod rollups;
mod seal;
mod units;
pub use donations::{sha256_hex, Admission, Donation, DonationStatus, Eligible, Withdrawal};
pub use ingest::{IngestReport, IngestedBatch};
pub use ledger::{Charge, ChargeRequest, LedgerSummary};
pub use rollups::RolledUp;
pub use seal::SealReport;

use crate::verifier::files;
use crate::{
    shared::records::{self, RecordsError},
    verifier::manifest::SignedManifest,
    verifier::schema::Schema,
};

/// Why a store operation failed; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The catalog database failed.
    #[error("catalog: {0}")]
    Catalog(#[from] rusqlite::Error),
    /// A record file was refused or could not be written.
    #[error(transparent)]
    Records(#[from] RecordsError),
    /// A file of the store could not be read or written.
    #[error("{path}: {source}", path = path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No dataset of that name is registered.
    #[error("unknown dataset `{0}`")]
    UnknownDataset(String),
    /// No such epoch.
    #[error("dataset `{dataset}` has no epoch {epoch}")]
    UnknownEpoch { dataset: String, epoch: u64 },
    /// The dataset is registered under another schema.
    #[error("dataset `{0}` is registered with another schema; published epochs never change")]
    SchemaChanged(String),
    /// The node key file is unreadable.
    #[error("node key {path}: {message}", path = path.display())]
    NodeKey { path: PathBuf, message: String },
    /// Committing a chunk failed.
    #[error(transparent)]
    Commitment(#[from] CircuitError),
    /// Another process (a running `zkfabric serve`, say) has the data directory open.
    #[error("{path} is in use by another zkfabric process (a running node? ask it with --remote)", path = .0.display())]
    Busy(PathBuf),
    /// A donation was refused: the message says why; nothing was stored.
    #[error("donation refused: {0}")]
    Donation(String),
    /// A replayed eligibility proof, or a donor beyond the dataset's per-donor limit.
    #[error("donation refused: {0}")]
    Duplicate(String),
    /// A file whose bytes were already ingested into the dataset; nothing was stored.
    #[error(
        "{file} was already ingested into {dataset} as batch {batch} ({when}, SHA-256 \
         {sha256}): ingesting it again would count its rows twice. Nothing was stored; pass \
         --allow-duplicate if it holds new readings that happen to be byte-identical"
    )]
    AlreadyIngested {
        file: String,
        dataset: String,
        batch: u64,
        when: String,
        sha256: String,
    },
    /// Two files of one ingest have the same bytes; nothing was stored.
    #[error(
        "{second} has the same bytes as {first}, given before it: its rows would be counted \
         twice. Nothing was stored; pass --allow-duplicate to ingest both"
    )]
    SameBytesTwice { first: String, second: String },
    /// No donation has that receipt id.
    #[error("no donation has receipt id `{0}`")]
    UnknownDonation(String),
    /// The epoch listed chunks that held withdrawn rows: their raw values are erased.
    #[error(
        "epoch {epoch} of {dataset} held rows that a donor withdrew, erased since epoch \
         {withdrawn_in}: its bundles still verify, but it answers no new query; ask epoch \
         {latest} (the latest) instead"
    )]
    Erased {
        dataset: String,
        epoch: u64,
        withdrawn_in: u64,
        latest: u64,
    },
    /// The withdrawal secret does not match the donation's.
    #[error("the withdrawal secret does not match receipt `{0}`")]
    WrongSecret(String),
    /// The donation can no longer be withdrawn; the message says why.
    #[error("receipt `{id}` cannot be withdrawn: {reason}")]
    NotWithdrawable { id: String, reason: String },
    /// Rows would take a privacy unit beyond its bound, or disagree on its attributes;
    /// the message names the file, row, unit and bound. Nothing was stored.
    #[error("refused: {0}")]
    Unit(String),
    /// The charge would take the dataset beyond its privacy budget; nothing was charged.
    #[error(
        "privacy budget of `{dataset}` exhausted: spent epsilon {} and delta {:e} of {} and \
         {:e}; this query asks for {} and {:e} more",
        spent.0, spent.1, budget.0, budget.1, asked.0, asked.1
    )]
    BudgetExhausted {
        dataset: String,
        spent: (f64, f64),
        asked: (f64, f64),
        budget: (f64, f64),
    },
    /// Stored data do not match the catalog (the store was altered outside zkfabric).
    #[error("store is inconsistent: {0}")]
    Corrupt(String),
    /// The data directory's chunks were sealed in a format this version cannot prove.
    #[error("{path} holds chunks sealed in format {found}, but this zkfabric seals and proves format {COMMITMENT_FORMAT}: ingest the source files into a new data directory", path = path.display())]
    Format { path: PathBuf, found: i64 },
}

/// The sealed format (the catalog's `user_version`): 2 since wide columns pack several
/// values per field element; 3 since manifests list no time windows (nothing unproven is
/// signed) and are read strictly; 4 since each epoch commits to a noise secret and
/// manifests state the privacy mode. Chunks of another format cannot be proven.
pub const COMMITMENT_FORMAT: i64 = 4;

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A catalog line about one dataset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DatasetSummary {
    /// Dataset name.
    pub name: String,
    /// Latest epoch, if any was sealed.
    pub latest_epoch: Option<u64>,
    /// Sealed chunks.
    pub chunks: u64,
    /// Sealed rows.
    pub rows: u64,
    /// Rows waiting to be sealed.
    pub pending: u64,
}

/// An open data directory, locked against other processes while open.
pub struct Store {
    dir: PathBuf,
    db: Connection,
    key: SigningKey,
    /// Holds the exclusive lock on `DATA_DIR/lock`.
    _lock: fs::File,
}

const CATALOG: &str = "
CREATE TABLE IF NOT EXISTS datasets (
    name TEXT PRIMARY KEY, id INTEGER NOT NULL, schema TEXT NOT NULL, schema_hash TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS pending (
    batch INTEGER PRIMARY KEY AUTOINCREMENT, dataset TEXT NOT NULL REFERENCES datasets(name),
    file TEXT NOT NULL, rows INTEGER NOT NULL, source TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS chunks (
    dataset TEXT NOT NULL REFERENCES datasets(name), idx INTEGER NOT NULL, file TEXT NOT NULL,
    rows INTEGER NOT NULL, commitment TEXT NOT NULL, salts BLOB NOT NULL,
    retired_in INTEGER, PRIMARY KEY (dataset, idx));
CREATE TABLE IF NOT EXISTS donations (
    id TEXT PRIMARY KEY, dataset TEXT NOT NULL REFERENCES datasets(name),
    batch INTEGER, records_sha256 TEXT NOT NULL,
    rows INTEGER NOT NULL, purposes TEXT NOT NULL, donated_at INTEGER NOT NULL,
    secret_sha256 TEXT NOT NULL, epoch INTEGER, withdrawn_at INTEGER,
    nullifier TEXT, proof_sha256 TEXT UNIQUE, organisation TEXT,
    batch_offset INTEGER NOT NULL DEFAULT 0, pending_rows INTEGER NOT NULL DEFAULT 0,
    excluded_from INTEGER);
CREATE TABLE IF NOT EXISTS donation_rows (
    donation TEXT NOT NULL REFERENCES donations(id), dataset TEXT NOT NULL,
    chunk INTEGER NOT NULL, first INTEGER NOT NULL, rows INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS epochs (
    dataset TEXT NOT NULL REFERENCES datasets(name), epoch INTEGER NOT NULL,
    manifest TEXT NOT NULL, noise_secret BLOB, PRIMARY KEY (dataset, epoch));
CREATE TABLE IF NOT EXISTS ledger (
    dataset TEXT NOT NULL REFERENCES datasets(name), seq INTEGER NOT NULL,
    query_hash TEXT NOT NULL, nonce BLOB NOT NULL, entry BLOB NOT NULL,
    PRIMARY KEY (dataset, seq), UNIQUE (dataset, query_hash, nonce));
CREATE TABLE IF NOT EXISTS ingested (
    dataset TEXT NOT NULL REFERENCES datasets(name), batch INTEGER NOT NULL,
    sha256 TEXT NOT NULL, source TEXT NOT NULL, rows INTEGER NOT NULL,
    ingested_at INTEGER NOT NULL, duplicate_of INTEGER, PRIMARY KEY (dataset, batch));
CREATE INDEX IF NOT EXISTS ingested_by_hash ON ingested (dataset, sha256);
CREATE TABLE IF NOT EXISTS units (
    dataset TEXT NOT NULL REFERENCES datasets(name), unit INTEGER NOT NULL,
    rows INTEGER NOT NULL, attributes TEXT NOT NULL, PRIMARY KEY (dataset, unit));
CREATE TABLE IF NOT EXISTS sealings (
    dataset TEXT NOT NULL REFERENCES datasets(name), rollup TEXT NOT NULL,
    sealing INTEGER NOT NULL, chunks TEXT NOT NULL, retired_in INTEGER,
    PRIMARY KEY (dataset, rollup, sealing));
CREATE TABLE IF NOT EXISTS cells (
    dataset TEXT NOT NULL REFERENCES datasets(name), rollup TEXT NOT NULL,
    idx INTEGER NOT NULL, sealing INTEGER NOT NULL, file TEXT NOT NULL,
    rows INTEGER NOT NULL, commitment TEXT NOT NULL, salts BLOB NOT NULL,
    PRIMARY KEY (dataset, rollup, idx));
";

/// How long opening waits for the data directory's lock before answering `Busy`. A
/// process that has just ended may still hold it for a moment: a child forked by another
/// thread shares the lock's file until it executes its program.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

/// Takes an exclusive lock on `file`, retrying until `grace` has passed.
fn lock_within(file: &fs::File, grace: std::time::Duration) -> Result<(), fs::TryLockError> {
    let deadline = std::time::Instant::now() + grace;
    loop {
        match file.try_lock() {
            Err(fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            result => return result,
        }
    }
}

impl Store {
    /// Opens (or creates) the store under `dir`, creating the node key on first start and
    /// removing files that no committed transaction references.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        // Absolute, so that chunk files can be handed to DataFusion as URLs.
        let dir = &dir.canonicalize().map_err(io(dir))?;
        // One process at a time: opening removes files no transaction references, which
        // would race with another process's ingest.
        let lock_path = dir.join("lock");
        let lock = fs::File::create(&lock_path).map_err(io(&lock_path))?;
        lock_within(&lock, LOCK_GRACE).map_err(|e| match e {
            fs::TryLockError::WouldBlock => StoreError::Busy(dir.to_path_buf()),
            fs::TryLockError::Error(e) => io(&lock_path)(e),
        })?;
        let db = Connection::open(dir.join("catalog.sqlite"))?;
        db.pragma_update(None, "journal_mode", "WAL")?;
        db.pragma_update(None, "synchronous", "FULL")?;
        // Deleted content is overwritten, not left in free pages.
        db.pragma_update(None, "secure_delete", true)?;
        db.execute_batch(CATALOG)?;
        // Catalogs from before withdrawals lack the column that retires chunks.
        let retired: bool = db.query_row(
            "SELECT COUNT(*) > 0 FROM pragma_table_info('chunks') WHERE name = 'retired_in'",
            [],
            |r| r.get(0),
        )?;
        if !retired {
            db.execute_batch("ALTER TABLE chunks ADD COLUMN retired_in INTEGER")?;
        }
        let format: i64 = db.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if format != COMMITMENT_FORMAT {
            let sealed: bool = db.query_row("SELECT COUNT(*) > 0 FROM chunks", [], |r| r.get(0))?;
            if sealed {
                return Err(StoreError::Format {
                    path: dir.to_path_buf(),
                    found: format.max(1),
                });
            }
            db.pragma_update(None, "user_version", COMMITMENT_FORMAT)?;
        }
        let key = node_key(&dir.join("node.key"))?;
        let store = Self {
            dir: dir.to_path_buf(),
            db,
            key,
            _lock: lock,
        };
        store.remove_unreferenced_files()?;
        Ok(store)
    }

    /// The node's public key, which verifiers trust manifests by.
    pub fn node_key(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Signs `message` with the node key (receipts; manifests sign themselves at sealing).
    pub fn sign(&self, message: &[u8]) -> ed25519_dalek::Signature {
        use ed25519_dalek::Signer;
        self.key.sign(message)
    }

    /// Registers `schema` if its dataset is new; refuses a changed schema.
    pub fn register(&mut self, schema: &Schema) -> Result<(), StoreError> {
        let known: Option<String> = self
            .db
            .query_row(
                "SELECT schema_hash FROM datasets WHERE name = ?1",
                [&schema.name],
                |r| r.get(0),
            )
            .optional()?;
        match known {
            Some(hash) if hash == schema.hash() => Ok(()),
            Some(_) => Err(StoreError::SchemaChanged(schema.name.clone())),
            None => {
                self.db.execute(
                    "INSERT INTO datasets (name, id, schema, schema_hash) VALUES (?1, ?2, ?3, ?4)",
                    params![schema.name, schema.id as i64, schema.source, schema.hash()],
                )?;
                Ok(())
            }
        }
    }

    /// Registers the schema `builtin` gives when `dataset` is not registered yet: built-in
    /// datasets are registered on first use.
    pub fn register_on_first_use(
        &mut self,
        dataset: &str,
        builtin: impl FnOnce(&str) -> Option<Schema>,
    ) -> Result<(), StoreError> {
        match self.schema(dataset) {
            Err(StoreError::UnknownDataset(_)) => match builtin(dataset) {
                Some(schema) => self.register(&schema),
                None => Err(StoreError::UnknownDataset(dataset.to_string())),
            },
            other => other.map(|_| ()),
        }
    }

    /// The schema of a registered dataset.
    pub fn schema(&self, dataset: &str) -> Result<Schema, StoreError> {
        let text: String = self
            .db
            .query_row(
                "SELECT schema FROM datasets WHERE name = ?1",
                [dataset],
                |r| r.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownDataset(dataset.to_string()))?;
        Schema::parse(&format!("{dataset} (catalog)"), &text)
            .map_err(|e| StoreError::Corrupt(e.to_string()))
    }

    /// Every registered dataset with its counts.
    pub fn datasets(&self) -> Result<Vec<DatasetSummary>, StoreError> {
        let mut stmt = self.db.prepare(
            "SELECT d.name,
                    (SELECT MAX(epoch) FROM epochs e WHERE e.dataset = d.name),
                    (SELECT COUNT(*) FROM chunks c WHERE c.dataset = d.name AND retired_in IS NULL),
                    (SELECT COALESCE(SUM(rows), 0) FROM chunks c
                     WHERE c.dataset = d.name AND retired_in IS NULL),
                    (SELECT COALESCE(SUM(rows), 0) FROM pending p WHERE p.dataset = d.name)
             FROM datasets d ORDER BY d.name",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(DatasetSummary {
                name: r.get(0)?,
                latest_epoch: r.get::<_, Option<i64>>(1)?.map(|e| e as u64),
                chunks: r.get::<_, i64>(2)? as u64,
                rows: r.get::<_, i64>(3)? as u64,
                pending: r.get::<_, i64>(4)? as u64,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Published epochs of `dataset`, oldest first.
    pub fn epochs(&self, dataset: &str) -> Result<Vec<u64>, StoreError> {
        self.schema(dataset)?;
        let mut stmt = self
            .db
            .prepare("SELECT epoch FROM epochs WHERE dataset = ?1 ORDER BY epoch")?;
        let rows = stmt.query_map([dataset], |r| r.get::<_, i64>(0))?;
        Ok(rows
            .map(|e| e.map(|e| e as u64))
            .collect::<Result<_, _>>()?)
    }

    /// The signed manifest of an epoch (the latest when `None`).
    pub fn manifest(
        &self,
        dataset: &str,
        epoch: Option<u64>,
    ) -> Result<SignedManifest, StoreError> {
        let epochs = self.epochs(dataset)?;
        let epoch = match epoch.or(epochs.last().copied()) {
            Some(e) if epochs.contains(&e) => e,
            e => {
                return Err(StoreError::UnknownEpoch {
                    dataset: dataset.to_string(),
                    epoch: e.unwrap_or(1),
                })
            }
        };
        let text: String = self.db.query_row(
            "SELECT manifest FROM epochs WHERE dataset = ?1 AND epoch = ?2",
            params![dataset, epoch as i64],
            |r| r.get(0),
        )?;
        serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("manifest of epoch {epoch}: {e}")))
    }

    /// The noise secret of an epoch whose manifest committed to one (a `dp` epoch): the
    /// witness of every noisy answer over it. Never leaves the node.
    pub fn noise_secret(&self, dataset: &str, epoch: u64) -> Result<Fr, StoreError> {
        let bytes: Option<Vec<u8>> = self
            .db
            .query_row(
                "SELECT noise_secret FROM epochs WHERE dataset = ?1 AND epoch = ?2",
                params![dataset, epoch as i64],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let bytes = bytes.ok_or_else(|| {
            StoreError::Corrupt(format!(
                "{dataset} epoch {epoch} has no noise secret: it was sealed threshold-only"
            ))
        })?;
        Fr::deserialize_compressed(bytes.as_slice())
            .map_err(|e| StoreError::Corrupt(format!("noise secret of epoch {epoch}: {e}")))
    }

    /// A sealed chunk with its rows and salts, padded to capacity: the prover's witness.
    pub fn chunk(&self, dataset: &str, index: u64) -> Result<Chunk, StoreError> {
        load_chunk(&self.db, &self.dir, &self.schema(dataset)?, index)
    }

    /// Path of sealed chunk `index`'s Parquet file; a chunk retired by a withdrawal has
    /// none (it is erased).
    pub fn chunk_file(&self, dataset: &str, index: u64) -> Result<PathBuf, StoreError> {
        chunk_file(&self.db, &self.dir, dataset, index)
    }

    /// Cell chunk `index` of `rollup` with its cells and salts, padded to capacity: the
    /// witness of the roll-up's proofs and of queries answered from it.
    pub fn cell_chunk(&self, dataset: &str, rollup: &str, index: u64) -> Result<Chunk, StoreError> {
        let schema = self.schema(dataset)?;
        let declared = schema
            .rollups
            .iter()
            .find(|r| r.name == rollup)
            .ok_or_else(|| {
                StoreError::Corrupt(format!("{dataset} declares no roll-up {rollup}"))
            })?;
        let (file, salts, retired_in): (String, Vec<u8>, Option<i64>) = self
            .db
            .query_row(
                "SELECT c.file, c.salts, s.retired_in FROM cells c JOIN sealings s
                 ON s.dataset = c.dataset AND s.rollup = c.rollup AND s.sealing = c.sealing
                 WHERE c.dataset = ?1 AND c.rollup = ?2 AND c.idx = ?3",
                params![dataset, rollup, index as i64],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?
            .ok_or_else(|| {
                StoreError::Corrupt(format!(
                    "roll-up {rollup} of {dataset} has no cell chunk {index}"
                ))
            })?;
        if let Some(withdrawn_in) = retired_in {
            return Err(StoreError::Corrupt(format!(
                "cell chunk {index} of roll-up {rollup} was erased: a donor withdrew rows it \
                 aggregated, retired in epoch {withdrawn_in}"
            )));
        }
        let path = rollups::cells_dir(&self.dir, dataset, rollup).join(file);
        let columns = records::read_columns(&schema.cell_columns(declared), &path)?;
        padded_chunk(
            schema.cells_table_id(declared),
            index,
            columns,
            schema.chunk_rows,
            &salts,
        )
    }

    /// Refuses a query over `epoch` when it lists a chunk a withdrawal erased, naming
    /// the withdrawal's epoch and the latest.
    pub fn check_queryable(&self, dataset: &str, epoch: u64) -> Result<(), StoreError> {
        let manifest = self.manifest(dataset, Some(epoch))?;
        let indices: Vec<i64> = manifest
            .manifest
            .chunks
            .iter()
            .map(|c| c.index as i64)
            .collect();
        let mut stmt = self.db.prepare(
            "SELECT idx, retired_in FROM chunks WHERE dataset = ?1 AND retired_in IS NOT NULL",
        )?;
        let retired: Vec<(i64, i64)> = stmt
            .query_map([dataset], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        match retired
            .iter()
            .filter(|(idx, _)| indices.contains(idx))
            .map(|(_, w)| *w as u64)
            .min()
        {
            Some(withdrawn_in) => Err(StoreError::Erased {
                dataset: dataset.to_string(),
                epoch,
                withdrawn_in,
                latest: self
                    .epochs(dataset)?
                    .last()
                    .copied()
                    .unwrap_or(withdrawn_in),
            }),
            None => Ok(()),
        }
    }

    /// Deletes pending, chunk and cell files that no committed transaction references,
    /// and the files of chunks a withdrawal retired and of the cells that aggregated
    /// them (erasure: their rows were withdrawn).
    fn remove_unreferenced_files(&self) -> Result<(), StoreError> {
        let referenced: HashSet<(String, String)> = {
            let mut stmt = self.db.prepare(
                "SELECT dataset, 'pending/' || file FROM pending UNION ALL SELECT dataset, \
                 'chunks/' || file FROM chunks WHERE retired_in IS NULL UNION ALL \
                 SELECT c.dataset, 'rollups/' || c.rollup || '/' || c.file FROM cells c \
                 JOIN sealings s ON s.dataset = c.dataset AND s.rollup = c.rollup \
                 AND s.sealing = c.sealing WHERE s.retired_in IS NULL",
            )?;
            let rows = stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            rows.collect::<Result<_, _>>()?
        };
        let mut stmt = self.db.prepare("SELECT name FROM datasets")?;
        let datasets: Vec<String> = stmt
            .query_map([], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        for dataset in datasets {
            // Every roll-up folder, declared or not (a crash may leave one of a sealing
            // that was never recorded).
            let rollups = fs::read_dir(self.dir.join(&dataset).join("rollups"))
                .into_iter()
                .flatten()
                .flatten()
                .map(|e| format!("rollups/{}", e.file_name().to_string_lossy()));
            for sub in ["pending".to_string(), "chunks".to_string()]
                .into_iter()
                .chain(rollups)
            {
                let dir = self.dir.join(&dataset).join(&sub);
                let Ok(entries) = fs::read_dir(&dir) else {
                    continue;
                };
                for entry in entries {
                    let entry = entry.map_err(io(&dir))?;
                    let name = format!("{sub}/{}", entry.file_name().to_string_lossy());
                    if !referenced.contains(&(dataset.clone(), name)) {
                        fs::remove_file(entry.path()).map_err(io(&entry.path()))?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Sealed chunk `index` of `schema`'s dataset, read through `db` (the store's connection,
/// or a transaction on it that has just recorded the chunk).
fn load_chunk(
    db: &Connection,
    dir: &Path,
    schema: &Schema,
    index: u64,
) -> Result<Chunk, StoreError> {
    let path = chunk_file(db, dir, &schema.name, index)?;
    let salts: Vec<u8> = db.query_row(
        "SELECT salts FROM chunks WHERE dataset = ?1 AND idx = ?2",
        params![schema.name, index as i64],
        |r| r.get(0),
    )?;
    let columns = records::read_stored_file(schema, &path)?;
    padded_chunk(schema.id, index, columns, schema.chunk_rows, &salts)
}

/// A chunk of stored `columns` (without `present`), the `present` column appended and
/// every column padded to `capacity`, with its serialized salts.
fn padded_chunk(
    table: u64,
    index: u64,
    mut columns: Vec<Vec<u64>>,
    capacity: usize,
    salts: &[u8],
) -> Result<Chunk, StoreError> {
    let rows = columns.first().map_or(0, Vec::len);
    columns.push(vec![1; rows]);
    for c in &mut columns {
        c.resize(capacity, 0);
    }
    let salts = Vec::<Fr>::deserialize_compressed(salts)
        .map_err(|e| StoreError::Corrupt(format!("salts of chunk {index}: {e}")))?;
    Ok(Chunk {
        dataset_id: table,
        index,
        columns,
        salts,
    })
}

/// Path of sealed chunk `index`'s file; refused for a chunk a withdrawal retired.
fn chunk_file(
    db: &Connection,
    dir: &Path,
    dataset: &str,
    index: u64,
) -> Result<PathBuf, StoreError> {
    let (file, retired_in): (String, Option<i64>) = db
        .query_row(
            "SELECT file, retired_in FROM chunks WHERE dataset = ?1 AND idx = ?2",
            params![dataset, index as i64],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?
        .ok_or_else(|| StoreError::Corrupt(format!("{dataset} has no chunk {index}")))?;
    if let Some(withdrawn_in) = retired_in {
        return Err(StoreError::Corrupt(format!(
            "chunk {index} of {dataset} was erased: a donor withdrew rows of it, \
             retired in epoch {withdrawn_in}"
        )));
    }
    Ok(dir.join(dataset).join("chunks").join(file))
}

/// Loads the node key, or creates one readable by the owner only.
fn node_key(path: &Path) -> Result<SigningKey, StoreError> {
    let bad = |message: String| StoreError::NodeKey {
        path: path.to_path_buf(),
        message,
    };
    if path.exists() {
        let text = fs::read_to_string(path).map_err(io(path))?;
        let bytes: [u8; 32] = hex::decode(text.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("not 64 hex digits".into()))?;
        return Ok(SigningKey::from_bytes(&bytes));
    }
    let key = SigningKey::generate(&mut OsRng);
    files::write_atomically(path, |file| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            file.set_permissions(fs::Permissions::from_mode(0o600))
                .map_err(|source| RecordsError::Io {
                    file: path.to_path_buf(),
                    source,
                })?;
        }
        use std::io::Write;
        let mut f = file;
        f.write_all(hex::encode(key.to_bytes()).as_bytes())
            .map_err(|source| RecordsError::Io {
                file: path.to_path_buf(),
                source,
            })
    })?;
    Ok(key)
}
