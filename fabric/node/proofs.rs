//! Chunk proofs kept for reuse, in `DATA_DIR/proofs.sqlite`.
//!
//! A chunk proof depends only on the chunk (its commitment), the circuit (the proving
//! key's fingerprint and shape), the query's parameters as the circuit takes them, and the
//! blind that hides the chunk's partial. So a repeated query, or a query on a later epoch
//! whose chunks are partly unchanged, can reuse the proof and its blind instead of proving
//! again. The cache holds at most a configured number of proofs and forgets the least
//! recently used; it survives restarts.
//!
//! Beside them it keeps every roll-up sealing's whole proof (`sealing_proofs`, outside
//! the capacity): a sealing is proven once, when it is sealed or first read, and every
//! answer from the roll-up carries that proof; the planner reads a roll-up only once its
//! sealings are kept here, since proving a sealing costs more than reading the rows.
//!
//! The cache is an optimisation, never an authority: the prover checks that a cached
//! proof verifies against the public inputs it recomputes before reusing it, so a damaged
//! cache costs a proof, not a wrong answer. A cache that cannot be read or written is
//! logged and bypassed. Blinds are as private as the partials they hide: the cache lives
//! beside the store's salts and never leaves the node.

use std::{
    path::{Path, PathBuf},
    sync::Mutex,
};

use ark_serialize::{CanonicalDeserialize, CanonicalSerialize};
use rusqlite::{params, Connection, OptionalExtension};
use sha2::{Digest, Sha256};
use zkfabric_circuits::{snark, Fr};

/// The cache's file under the data directory.
pub const FILE: &str = "proofs.sqlite";

/// Why the cache could not be opened.
#[derive(Debug, thiserror::Error)]
#[error("proof cache {path}: {source}", path = path.display())]
pub struct ProofCacheError {
    path: PathBuf,
    #[source]
    source: rusqlite::Error,
}

/// What identifies a chunk proof: a SHA-256 over everything the proof depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ProofKey([u8; 32]);

impl ProofKey {
    /// The key of a chunk proof made with the key `fingerprint` for the circuit `shape`
    /// (its canonical description), with the circuit's query `parameters` (their canonical
    /// text), over the chunk committed to by `chunk_commitment`.
    pub fn new(fingerprint: &str, shape: &str, parameters: &str, chunk_commitment: &Fr) -> Self {
        let mut hash = Sha256::new();
        for part in ["chunk-proof/v1", fingerprint, shape, parameters] {
            hash.update((part.len() as u64).to_le_bytes());
            hash.update(part.as_bytes());
        }
        chunk_commitment
            .serialize_compressed(&mut HashWriter(&mut hash))
            .expect("hashing cannot fail");
        Self(hash.finalize().into())
    }

    /// The key of a sealing's whole proof at `challenge` (which binds the sealing's
    /// chunks, cells and shapes), its chunk proofs made with the keys `fingerprints`
    /// (the rows' and the cells'), added up by subtotal combines of `fan_in` inputs.
    pub fn sealing(fingerprints: [&str; 2], fan_in: usize, challenge: &Fr) -> Self {
        Self::new(
            fingerprints[0],
            "sealing-proof/v1",
            &format!("{} fan-in {fan_in}", fingerprints[1]),
            challenge,
        )
    }
}

/// Feeds serialized bytes straight into a hash.
struct HashWriter<'a>(&'a mut Sha256);

impl std::io::Write for HashWriter<'_> {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.update(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// A cached chunk proof: the proof and the blind of the partial commitment it proves.
#[derive(Clone, Debug)]
pub struct CachedProof {
    /// Blind of the chunk's partial commitment.
    pub blind: Fr,
    /// The chunk proof.
    pub proof: snark::Proof,
}

/// A bounded, persistent cache of chunk proofs.
pub struct ProofCache {
    /// `None` when caching is off (capacity 0).
    db: Option<Mutex<Connection>>,
    capacity: usize,
}

impl ProofCache {
    /// Opens (or creates) the cache in the existing directory `data_dir`, holding at most `capacity` proofs; a
    /// capacity of 0 turns caching off and touches no file.
    pub fn open(data_dir: &Path, capacity: usize) -> Result<Self, ProofCacheError> {
        if capacity == 0 {
            return Ok(Self { db: None, capacity });
        }
        let path = data_dir.join(FILE);
        let failed = |source| ProofCacheError {
            path: path.clone(),
            source,
        };
        let db = Connection::open(&path).map_err(failed)?;
        db.pragma_update(None, "journal_mode", "WAL")
            .and_then(|()| {
                db.execute_batch(
                    "CREATE TABLE IF NOT EXISTS proofs (
                        key BLOB PRIMARY KEY, blind BLOB NOT NULL, proof BLOB NOT NULL,
                        used INTEGER NOT NULL);
                     CREATE INDEX IF NOT EXISTS proofs_used ON proofs(used);
                     CREATE TABLE IF NOT EXISTS sealing_proofs (
                        key BLOB PRIMARY KEY, proof BLOB NOT NULL);",
                )
            })
            .map_err(failed)?;
        // A smaller capacity than last time applies at once.
        trim(&db, capacity).map_err(failed)?;
        Ok(Self {
            db: Some(Mutex::new(db)),
            capacity,
        })
    }

    /// The cached proof under `key`, marked as recently used; `None` when there is none
    /// or it cannot be read.
    pub fn get(&self, key: &ProofKey) -> Option<CachedProof> {
        let db = self.db.as_ref()?;
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        let found = db
            .query_row(
                "UPDATE proofs SET used = (SELECT MAX(used) + 1 FROM proofs) WHERE key = ?1
                 RETURNING blind, proof",
                params![&key.0[..]],
                |row| Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, Vec<u8>>(1)?)),
            )
            .optional();
        let (blind, proof) = match found {
            Ok(found) => found?,
            Err(e) => {
                tracing::warn!("proof cache not read: {e}");
                return None;
            }
        };
        let blind = Fr::deserialize_compressed(&blind[..]).ok();
        let proof = snark::proof_from_bytes(&proof).ok();
        match (blind, proof) {
            (Some(blind), Some(proof)) => Some(CachedProof { blind, proof }),
            _ => {
                tracing::warn!("a damaged proof cache entry was ignored");
                None
            }
        }
    }

    /// Keeps `proof`, made with `blind`, under `key`, then forgets the least recently used
    /// proofs beyond the capacity.
    pub fn put(&self, key: &ProofKey, blind: Fr, proof: &snark::Proof) {
        let Some(db) = &self.db else { return };
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        let mut blind_bytes = Vec::new();
        blind
            .serialize_compressed(&mut blind_bytes)
            .expect("serializing into a Vec cannot fail");
        let stored = db
            .execute(
                "INSERT OR REPLACE INTO proofs (key, blind, proof, used)
                 VALUES (?1, ?2, ?3, (SELECT COALESCE(MAX(used), 0) + 1 FROM proofs))",
                params![&key.0[..], blind_bytes, snark::proof_to_bytes(proof)],
            )
            .and_then(|_| trim(&db, self.capacity));
        if let Err(e) = stored {
            tracing::warn!("proof cache not written: {e}");
        }
    }

    /// The encoded sealing proof kept under `key` ([`ProofKey::sealing`]).
    pub fn sealing(&self, key: &ProofKey) -> Option<Vec<u8>> {
        let db = self.db.as_ref()?;
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        db.query_row(
            "SELECT proof FROM sealing_proofs WHERE key = ?1",
            params![&key.0[..]],
            |row| row.get(0),
        )
        .optional()
        .unwrap_or_else(|e| {
            tracing::warn!("proof cache not read: {e}");
            None
        })
    }

    /// Whether a sealing proof is kept under `key`.
    pub fn has_sealing(&self, key: &ProofKey) -> bool {
        let Some(db) = &self.db else { return false };
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        db.query_row(
            "SELECT 1 FROM sealing_proofs WHERE key = ?1",
            params![&key.0[..]],
            |_| Ok(()),
        )
        .optional()
        .is_ok_and(|found| found.is_some())
    }

    /// Keeps the encoded sealing proof `proof` under `key`, whatever the capacity.
    pub fn keep_sealing(&self, key: &ProofKey, proof: &[u8]) {
        let Some(db) = &self.db else { return };
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = db.execute(
            "INSERT OR REPLACE INTO sealing_proofs (key, proof) VALUES (?1, ?2)",
            params![&key.0[..], proof],
        ) {
            tracing::warn!("proof cache not written: {e}");
        }
    }

    /// How many proofs the cache holds.
    pub fn len(&self) -> usize {
        let Some(db) = &self.db else { return 0 };
        let db = db.lock().unwrap_or_else(|e| e.into_inner());
        db.query_row("SELECT COUNT(*) FROM proofs", [], |r| r.get::<_, i64>(0))
            .map_or(0, |n| n as usize)
    }

    /// Whether the cache holds no proof.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Forgets the least recently used proofs beyond `capacity`.
fn trim(db: &Connection, capacity: usize) -> rusqlite::Result<()> {
    db.execute(
        "DELETE FROM proofs WHERE key IN
         (SELECT key FROM proofs ORDER BY used DESC LIMIT -1 OFFSET ?1)",
        params![capacity as i64],
    )
    .map(|_| ())
}
