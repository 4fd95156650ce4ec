//! Donations: a donor's record file stored as a pending batch, with the purposes it
//! consents to, tracked from pending to sealed (which chunk rows hold it) or withdrawn,
//! for its receipt.
//!
//! A seal that takes only part of the pending rows puts the rest back as one shared
//! batch; each donation keeps its offset in its batch, so it can still be withdrawn.
//! Withdrawing sealed rows seals the chunks that hold them again without them, in a new
//! epoch; earlier epochs are unchanged and still verify.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use fail::fail_point;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};

use super::{IngestReport, SealReport, Store, StoreError};
use crate::shared::records;

/// Where a donation stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DonationStatus {
    /// Stored, waiting for a seal.
    Pending,
    /// Sealed into the chunks of an epoch.
    Sealed,
    /// Withdrawn before it was sealed; its rows are gone.
    Withdrawn,
}

/// A donation as its receipt describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Donation {
    /// Receipt id (32 hex digits).
    pub id: String,
    /// The dataset donated to.
    pub dataset: String,
    /// SHA-256 (hex) of the donated file's bytes.
    pub records_sha256: String,
    /// Rows donated.
    pub rows: u64,
    /// Purposes consented to.
    pub purposes: Vec<String>,
    /// Unix seconds.
    pub donated_at: u64,
    /// The donor's nullifier, when the donation proved eligibility.
    pub nullifier: Option<String>,
    /// The organisation that signed it, when it was a bulk donation.
    pub organisation: Option<String>,
    /// The first epoch without its rows, when it was withdrawn after sealing.
    pub excluded_from: Option<u64>,
    /// The chunks holding its sealed rows.
    pub chunks: Vec<u64>,
    /// Pending, sealed or withdrawn.
    pub status: DonationStatus,
    /// First epoch whose chunks hold every row, once sealed.
    pub epoch: Option<u64>,
}

/// What an eligibility proof established for a donation: the donor's nullifier in the
/// dataset, the proof's hash (a proof is used once) and how many donations one donor may
/// make.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Eligible {
    /// The nullifier, hex.
    pub nullifier: String,
    /// SHA-256 of the proof bytes, hex.
    pub proof_sha256: String,
    /// Donations (not withdrawn) one nullifier may hold.
    pub limit: u32,
}

/// Who a donation's donor proved to be: an eligible holder (by nullifier), an accepted
/// organisation (by key), or nobody in particular when the dataset has no donor policy.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Admission {
    /// What an eligibility proof established.
    pub eligible: Option<Eligible>,
    /// The organisation's Ed25519 key (hex) that signed a bulk donation.
    pub organisation: Option<String>,
}

/// The hex SHA-256 of `bytes`: how donation files and withdrawal secrets are kept.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The pseudonymous privacy unit of a donor known by `key` (a nullifier, a donation id)
/// in `dataset`: the first 8 bytes of a tagged SHA-256.
fn unit_pseudonym(dataset: &str, key: &str) -> u64 {
    let digest = Sha256::new()
        .chain_update(b"zkfabric/unit/v1\0")
        .chain_update(dataset.as_bytes())
        .chain_update([0])
        .chain_update(key.as_bytes())
        .finalize();
    u64::from_be_bytes(digest[..8].try_into().expect("8 bytes"))
}

impl Store {
    /// Stores the record file `path` as one donation to `dataset`, every row consenting to
    /// `purposes`; `secret_sha256` is the hash of the secret that may withdraw it, and
    /// `admission` who the caller checked the donor to be: an eligibility proof is used
    /// once, and a nullifier holds at most its limit of donations. Returns the
    /// donation and, when its rows filled chunks, the seal that published them. If
    /// anything is refused, nothing is stored.
    pub fn donate(
        &mut self,
        dataset: &str,
        path: &Path,
        purposes: &[String],
        secret_sha256: &str,
        admission: &Admission,
    ) -> Result<(Donation, Option<SealReport>), StoreError> {
        let eligible = admission.eligible.as_ref();
        let schema = self.schema(dataset)?;
        let bits = records::consent_bits(&schema, purposes).map_err(StoreError::Donation)?;
        let id = hex::encode(rand::random::<[u8; 16]>());
        // The donor's privacy unit: the credential's nullifier (one donor, however many
        // donations). Otherwise (an organisation's file, an open donation) the file's
        // own unit column, or the donation itself as one unit.
        let unit = schema.unit().map(|c| {
            let width = |u: u64| u & (u64::MAX >> (64 - schema.columns[c].width));
            match eligible {
                Some(e) => records::UnitFill::Donor(width(unit_pseudonym(dataset, &e.nullifier))),
                None => records::UnitFill::Otherwise(width(unit_pseudonym(dataset, &id))),
            }
        });
        let columns = records::read_donation(
            &schema,
            path,
            records::DonationFill {
                consent: bits,
                unit,
            },
        )?;
        let rows = columns.first().map_or(0, Vec::len) as u64;
        if rows == 0 {
            return Err(StoreError::Donation(format!(
                "{} holds no rows",
                path.display()
            )));
        }
        let bytes = std::fs::read(path).map_err(super::io(path))?;
        let mut purposes = purposes.to_vec();
        purposes.sort();
        purposes.dedup();
        let donation = Donation {
            id,
            dataset: dataset.to_string(),
            records_sha256: sha256_hex(&bytes),
            rows,
            purposes,
            donated_at: now(),
            nullifier: eligible.map(|e| e.nullifier.clone()),
            organisation: admission.organisation.clone(),
            excluded_from: None,
            chunks: Vec::new(),
            status: DonationStatus::Pending,
            epoch: None,
        };
        let source = format!("donation {}", donation.id);
        let (_, sealed): (IngestReport, _) =
            self.add_pending(&schema, vec![(source, columns)], |tx, batches| {
                if let Some(e) = eligible {
                    check_eligible(tx, dataset, e)?;
                }
                check_new_records(tx, dataset, &donation.records_sha256)?;
                tx.execute(
                    "INSERT INTO donations (id, dataset, batch, records_sha256, rows,
                        purposes, donated_at, secret_sha256, nullifier, proof_sha256,
                        organisation, batch_offset, pending_rows)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, 0, ?5)",
                    params![
                        donation.id,
                        dataset,
                        batches[0],
                        donation.records_sha256,
                        rows as i64,
                        donation.purposes.join(","),
                        donation.donated_at as i64,
                        secret_sha256,
                        eligible.map(|e| &e.nullifier),
                        eligible.map(|e| &e.proof_sha256),
                        admission.organisation
                    ],
                )?;
                Ok(())
            })?;
        tracing::info!(dataset, rows, "stored a donation");
        Ok((self.donation(&donation.id)?, sealed))
    }

    /// The donation with receipt `id`, as it stands now.
    pub fn donation(&self, id: &str) -> Result<Donation, StoreError> {
        let mut donation = self.donation_row(id)?;
        let mut stmt = self.db.prepare(
            "SELECT DISTINCT chunk FROM donation_rows WHERE donation = ?1 ORDER BY chunk",
        )?;
        let chunks = stmt.query_map([id], |r| r.get::<_, i64>(0))?;
        donation.chunks = chunks
            .map(|c| c.map(|c| c as u64))
            .collect::<Result<_, _>>()?;
        Ok(donation)
    }

    fn donation_row(&self, id: &str) -> Result<Donation, StoreError> {
        self.db
            .query_row(
                "SELECT dataset, records_sha256, rows, purposes, donated_at, epoch, withdrawn_at,
                        nullifier, organisation, excluded_from
                 FROM donations WHERE id = ?1",
                [id],
                |r| {
                    let purposes: String = r.get(3)?;
                    let epoch: Option<i64> = r.get(5)?;
                    let withdrawn: Option<i64> = r.get(6)?;
                    Ok(Donation {
                        id: id.to_string(),
                        dataset: r.get(0)?,
                        records_sha256: r.get(1)?,
                        rows: r.get::<_, i64>(2)? as u64,
                        purposes: purposes.split(',').map(str::to_string).collect(),
                        donated_at: r.get::<_, i64>(4)? as u64,
                        nullifier: r.get(7)?,
                        organisation: r.get(8)?,
                        excluded_from: r.get::<_, Option<i64>>(9)?.map(|e| e as u64),
                        chunks: Vec::new(),
                        status: match (withdrawn, epoch) {
                            (Some(_), _) => DonationStatus::Withdrawn,
                            (None, Some(_)) => DonationStatus::Sealed,
                            (None, None) => DonationStatus::Pending,
                        },
                        epoch: epoch.map(|e| e as u64),
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::UnknownDonation(id.to_string()))
    }

    /// Withdraws a donation, authorised by `by` (its withdrawal secret's hash, or the
    /// donor's nullifier that the caller verified a proof for). Pending rows are dropped;
    /// sealed rows are dropped from a new epoch: each chunk holding some is sealed again
    /// without them, with fresh salts, and retired from that epoch on. All in one
    /// transaction; then the files holding the withdrawn rows are erased (a crash before
    /// that leaves them to the next open, which removes every file no live chunk or
    /// pending batch references). Older epochs' bundles still verify (commitments stay),
    /// but those epochs answer no new query ([`Store::check_queryable`]).
    pub fn withdraw(&mut self, id: &str, by: &Withdrawal) -> Result<Donation, StoreError> {
        let donation = self.donation(id)?;
        let (secret, batch, offset, pending): (String, Option<i64>, i64, i64) = self.db.query_row(
            "SELECT secret_sha256, batch, batch_offset, pending_rows FROM donations
                 WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
        // Both sides are hashes or public nullifiers: comparing them leaks no secret.
        let authorised = match by {
            Withdrawal::Secret(hash) => *hash == secret,
            Withdrawal::Nullifier(n) => donation.nullifier.as_deref() == Some(n.as_str()),
        };
        if !authorised {
            return Err(StoreError::WrongSecret(id.to_string()));
        }
        if donation.status == DonationStatus::Withdrawn {
            return Err(StoreError::NotWithdrawable {
                id: id.to_string(),
                reason: "already withdrawn".into(),
            });
        }
        let dataset = donation.dataset.clone();
        let schema = self.schema(&dataset)?;
        let pending_dir = self.dir.join(&dataset).join("pending");
        let chunk_dir = self.dir.join(&dataset).join("chunks");

        // The pending part: its batch dropped, or rewritten without its rows.
        let mut rewritten = None;
        if let Some(batch) = batch.filter(|_| pending > 0) {
            let (file, rows): (String, i64) = self.db.query_row(
                "SELECT file, rows FROM pending WHERE batch = ?1",
                [batch],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )?;
            if rows > pending {
                let columns = records::read_stored_file(&schema, &pending_dir.join(&file))?;
                let kept = without(&columns, &[(offset as u64, pending as u64)]);
                let name = format!(
                    "{batch}-w{}-{:08x}.parquet",
                    std::process::id(),
                    rand::random::<u32>()
                );
                let stored = records::to_stored_batch(&schema, &kept, None);
                records::write_file(&pending_dir.join(&name), stored.schema(), [stored])?;
                rewritten = Some((batch, name, rows - pending));
            }
        }

        // The sealed part: every live chunk holding some of its rows, sealed again.
        let ranges: Vec<(u64, u64, u64)> = {
            let mut stmt = self.db.prepare(
                "SELECT chunk, first, rows FROM donation_rows WHERE donation = ?1 ORDER BY chunk",
            )?;
            let rows = stmt.query_map([id], |r| {
                Ok((
                    r.get::<_, i64>(0)? as u64,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?;
            rows.collect::<Result<_, _>>()?
        };
        let mut chunks: Vec<u64> = ranges.iter().map(|r| r.0).collect();
        chunks.dedup();
        let mut next: i64 = self.db.query_row(
            "SELECT COALESCE(MAX(idx) + 1, 0) FROM chunks WHERE dataset = ?1",
            [&dataset],
            |r| r.get(0),
        )?;
        let mut resealed = Vec::new();
        for &chunk in &chunks {
            let cut: Vec<(u64, u64)> = ranges
                .iter()
                .filter(|r| r.0 == chunk)
                .map(|r| (r.1, r.2))
                .collect();
            let columns = records::read_stored_file(&schema, &self.chunk_file(&dataset, chunk)?)?;
            let kept = without(&columns, &cut);
            let replacement = if kept.first().is_some_and(|c| !c.is_empty()) {
                let sealed = super::seal::seal_chunk(&schema, &chunk_dir, next as u64, kept)?;
                next += 1;
                Some(sealed)
            } else {
                None
            };
            resealed.push((chunk, cut, replacement));
        }
        fail_point!("withdraw-files-written");

        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(batch) = batch.filter(|_| pending > 0) {
            match &rewritten {
                Some((_, name, rows)) => {
                    tx.execute(
                        "UPDATE pending SET file = ?2, rows = ?3 WHERE batch = ?1",
                        params![batch, name, rows],
                    )?;
                    // Rows after the withdrawn ones move up.
                    tx.execute(
                        "UPDATE donations SET batch_offset = batch_offset - ?3
                         WHERE batch = ?1 AND batch_offset > ?2",
                        params![batch, offset, pending],
                    )?;
                }
                None => {
                    tx.execute("DELETE FROM pending WHERE batch = ?1", [batch])?;
                }
            }
        }
        // The donation's rows leave the chunks before the manifest counts who vouches
        // for each chunk's rows.
        tx.execute("DELETE FROM donation_rows WHERE donation = ?1", [id])?;
        let excluded_from = if resealed.is_empty() {
            None
        } else {
            let epoch = next_epoch(&tx, &dataset)?;
            for (chunk, cut, replacement) in &resealed {
                tx.execute(
                    "UPDATE chunks SET retired_in = ?3 WHERE dataset = ?1 AND idx = ?2",
                    params![dataset, *chunk as i64, epoch as i64],
                )?;
                if let Some(c) = replacement {
                    super::seal::insert_chunk(&tx, &dataset, c)?;
                }
                move_rows(&tx, id, *chunk, cut, replacement.as_ref().map(|c| c.index))?;
            }
            let (published, _) = super::seal::publish_epoch(&tx, &self.dir, &schema, &self.key)?;
            debug_assert_eq!(published, epoch);
            Some(epoch)
        };
        tx.execute(
            "UPDATE donations SET batch = NULL, pending_rows = 0, withdrawn_at = ?2,
                 excluded_from = ?3 WHERE id = ?1",
            params![id, now() as i64, excluded_from.map(|e| e as i64)],
        )?;
        fail_point!("withdraw-before-commit");
        tx.commit()?;
        fail_point!("withdraw-before-erase");
        // The dropped pending file and the retired chunks' files are unreferenced now.
        self.remove_unreferenced_files()?;
        tracing::info!(dataset, chunks = resealed.len(), "withdrew a donation");
        self.donation(id)
    }
}

/// The epoch the next publication of `dataset` will have.
pub(super) fn next_epoch(tx: &Transaction, dataset: &str) -> Result<u64, StoreError> {
    let last: Option<i64> = tx.query_row(
        "SELECT MAX(epoch) FROM epochs WHERE dataset = ?1",
        [dataset],
        |r| r.get(0),
    )?;
    Ok(last.map_or(1, |e| e as u64 + 1))
}

/// How a withdrawal is authorised.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Withdrawal {
    /// The SHA-256 (hex) of the withdrawal secret the receipt came with.
    Secret(String),
    /// The donor's nullifier (hex), for which the caller verified a proof of the secret.
    Nullifier(String),
}

/// `columns` without the row ranges `cut` (`(first, rows)`).
fn without(columns: &[Vec<u64>], cut: &[(u64, u64)]) -> Vec<Vec<u64>> {
    let dropped = |row: usize| {
        cut.iter()
            .any(|&(first, rows)| (first..first + rows).contains(&(row as u64)))
    };
    columns
        .iter()
        .map(|c| {
            c.iter()
                .enumerate()
                .filter(|(row, _)| !dropped(*row))
                .map(|(_, v)| *v)
                .collect()
        })
        .collect()
}

/// Within a withdrawal's transaction: the other donations' rows in a re-sealed `chunk`
/// move to its `replacement`, shifted past the `cut` rows of donation `id`.
fn move_rows(
    tx: &Transaction,
    id: &str,
    chunk: u64,
    cut: &[(u64, u64)],
    replacement: Option<u64>,
) -> Result<(), StoreError> {
    let others: Vec<(i64, u64)> = {
        let mut stmt = tx.prepare(
            "SELECT rowid, first FROM donation_rows WHERE chunk = ?1 AND donation != ?2
                 AND dataset = (SELECT dataset FROM donations WHERE id = ?2)",
        )?;
        let rows = stmt.query_map(params![chunk as i64, id], |r| {
            Ok((r.get(0)?, r.get::<_, i64>(1)? as u64))
        })?;
        rows.collect::<Result<_, _>>()?
    };
    for (rowid, first) in others {
        let before: u64 = cut
            .iter()
            .filter(|&&(f, _)| f < first)
            .map(|&(_, rows)| rows)
            .sum();
        tx.execute(
            "UPDATE donation_rows SET chunk = ?2, first = ?3 WHERE rowid = ?1",
            params![
                rowid,
                replacement.map(|r| r as i64),
                (first - before) as i64
            ],
        )?;
    }
    Ok(())
}

/// Within a donation's transaction: no standing donation to `dataset` holds the same
/// file (its SHA-256), so a donation retried after its answer was lost, or sent twice,
/// never doubles rows; the message names the receipt that holds them.
fn check_new_records(tx: &Transaction, dataset: &str, sha256: &str) -> Result<(), StoreError> {
    let earlier: Option<String> = tx
        .query_row(
            "SELECT id FROM donations
             WHERE dataset = ?1 AND records_sha256 = ?2 AND withdrawn_at IS NULL",
            params![dataset, sha256],
            |r| r.get(0),
        )
        .optional()?;
    match earlier {
        Some(id) => Err(StoreError::Duplicate(format!(
            "these records (SHA-256 {sha256}) were already donated to {dataset}: receipt {id} \
             holds them (Donor.GetReceipt shows it); a file is stored once"
        ))),
        None => Ok(()),
    }
}

/// Within a donation's transaction: the proof was never used, and the donor has room
/// for one more donation.
fn check_eligible(tx: &Transaction, dataset: &str, e: &Eligible) -> Result<(), StoreError> {
    let used: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM donations WHERE proof_sha256 = ?1)",
        [&e.proof_sha256],
        |r| r.get(0),
    )?;
    if used {
        return Err(StoreError::Duplicate(
            "this eligibility proof was already used: a replayed proof".into(),
        ));
    }
    let held: i64 = tx.query_row(
        "SELECT COUNT(*) FROM donations
         WHERE dataset = ?1 AND nullifier = ?2 AND withdrawn_at IS NULL",
        params![dataset, e.nullifier],
        |r| r.get(0),
    )?;
    if held >= i64::from(e.limit) {
        return Err(StoreError::Duplicate(format!(
            "this donor already made {held} donation(s) to {dataset}, the most it takes from one donor"
        )));
    }
    Ok(())
}

/// Within a seal's transaction that took the first `sealed_rows` of `batches` (in
/// order) into chunks `first_index..` of `capacity` rows: each donation in those batches
/// records which chunk rows hold its sealed rows; it is sealed in `epoch` when none are
/// left pending, and otherwise its rest lives in the shared `remainder` batch.
pub(super) fn sealed(
    tx: &Transaction,
    batches: &[(i64, String, u64)],
    sealed_rows: u64,
    remainder: Option<i64>,
    epoch: u64,
    (first_index, capacity): (u64, u64),
) -> Result<(), StoreError> {
    let mut start = 0;
    for (batch, _, rows) in batches {
        let members: Vec<(String, u64, u64)> = {
            let mut stmt = tx
                .prepare("SELECT id, batch_offset, pending_rows FROM donations WHERE batch = ?1")?;
            let found = stmt.query_map([batch], |r| {
                Ok((
                    r.get(0)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?;
            found.collect::<Result<_, _>>()?
        };
        for (id, offset, pending) in members {
            let (a, b) = (start + offset, start + offset + pending);
            // Its sealed rows, chunk by chunk.
            let mut row = a;
            while row < b.min(sealed_rows) {
                let chunk = row / capacity;
                let end = ((chunk + 1) * capacity).min(b).min(sealed_rows);
                tx.execute(
                    "INSERT INTO donation_rows (donation, dataset, chunk, first, rows)
                     SELECT ?1, dataset, ?2, ?3, ?4 FROM donations WHERE id = ?1",
                    params![
                        id,
                        (first_index + chunk) as i64,
                        (row - chunk * capacity) as i64,
                        (end - row) as i64
                    ],
                )?;
                row = end;
            }
            if b <= sealed_rows {
                tx.execute(
                    "UPDATE donations SET batch = NULL, pending_rows = 0, epoch = ?2 WHERE id = ?1",
                    params![id, epoch as i64],
                )?;
            } else {
                let kept_from = a.max(sealed_rows);
                tx.execute(
                    "UPDATE donations SET batch = ?2, batch_offset = ?3,
                         pending_rows = ?4 WHERE id = ?1",
                    params![
                        id,
                        remainder,
                        (kept_from - sealed_rows) as i64,
                        (b - kept_from) as i64
                    ],
                )?;
            }
        }
        start += rows;
    }
    Ok(())
}

pub(super) fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
