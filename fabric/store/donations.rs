//! Donations: a donor's record file stored as its own pending batch, with the purposes it
//! consents to, tracked from pending to sealed (or withdrawn) for its receipt.
//!
//! A donation keeps its own pending batch until a seal takes its rows. If a seal takes
//! only part of the pending rows, the rest go back as one shared batch: a donation in it
//! is still pending but can no longer be withdrawn by dropping its batch.

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use sha2::{Digest, Sha256};

use super::{IngestReport, SealReport, Store, StoreError};
use crate::records;

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
        let consent_column = &schema.columns[schema.consent()];
        if purposes.is_empty() {
            return Err(StoreError::Donation(format!(
                "name at least one purpose to consent to ({})",
                consent_column.purposes.join(", ")
            )));
        }
        let mut bits = 0u64;
        for purpose in purposes {
            let bit = consent_column
                .purposes
                .iter()
                .position(|p| p == purpose)
                .ok_or_else(|| {
                    StoreError::Donation(format!(
                        "unknown purpose `{purpose}` (purposes of {dataset}: {})",
                        consent_column.purposes.join(", ")
                    ))
                })?;
            bits |= 1 << bit;
        }
        let columns = records::read_donation(&schema, path, bits)?;
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
            id: hex::encode(rand::random::<[u8; 16]>()),
            dataset: dataset.to_string(),
            records_sha256: sha256_hex(&bytes),
            rows,
            purposes,
            donated_at: now(),
            nullifier: eligible.map(|e| e.nullifier.clone()),
            organisation: admission.organisation.clone(),
            status: DonationStatus::Pending,
            epoch: None,
        };
        let source = format!("donation {}", donation.id);
        let (_, sealed): (IngestReport, _) =
            self.add_pending(&schema, vec![(source, columns)], |tx, batches| {
                if let Some(e) = eligible {
                    check_eligible(tx, dataset, e)?;
                }
                tx.execute(
                    "INSERT INTO donations (id, dataset, batch, own_batch, records_sha256, rows,
                        purposes, donated_at, secret_sha256, nullifier, proof_sha256,
                        organisation)
                     VALUES (?1, ?2, ?3, 1, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
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
        self.db
            .query_row(
                "SELECT dataset, records_sha256, rows, purposes, donated_at, epoch, withdrawn_at,
                        nullifier, organisation
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

    /// Withdraws a pending donation: its rows are dropped in one transaction. Refused when
    /// `secret_sha256` is not the donation's, or when its rows are already (partly) sealed.
    pub fn withdraw(&mut self, id: &str, secret_sha256: &str) -> Result<Donation, StoreError> {
        let donation = self.donation(id)?;
        let (secret, batch, own): (String, Option<i64>, bool) = self.db.query_row(
            "SELECT secret_sha256, batch, own_batch FROM donations WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        // Both sides are hashes of secrets: comparing them leaks nothing of the secret.
        if secret != secret_sha256 {
            return Err(StoreError::WrongSecret(id.to_string()));
        }
        let refuse = |reason: String| StoreError::NotWithdrawable {
            id: id.to_string(),
            reason,
        };
        match (donation.status, batch) {
            (DonationStatus::Withdrawn, _) => return Err(refuse("already withdrawn".into())),
            (DonationStatus::Sealed, _) => {
                return Err(refuse(format!(
                    "its rows are sealed in epoch {}; published epochs never change",
                    donation.epoch.unwrap_or_default()
                )))
            }
            (DonationStatus::Pending, Some(_)) if !own => {
                return Err(refuse(
                    "part of its rows are sealed, the rest share a pending batch".into(),
                ))
            }
            _ => {}
        }
        let batch =
            batch.ok_or_else(|| StoreError::Corrupt(format!("donation {id} has no batch")))?;
        let file: String =
            self.db
                .query_row("SELECT file FROM pending WHERE batch = ?1", [batch], |r| {
                    r.get(0)
                })?;
        let tx = self
            .db
            .transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("DELETE FROM pending WHERE batch = ?1", [batch])?;
        tx.execute(
            "UPDATE donations SET batch = NULL, withdrawn_at = ?2 WHERE id = ?1",
            params![id, now() as i64],
        )?;
        tx.commit()?;
        // Unreferenced now; a crash before this leaves it for the next open to remove.
        let _ = std::fs::remove_file(self.dir.join(&donation.dataset).join("pending").join(file));
        tracing::info!(dataset = donation.dataset, "withdrew a donation");
        self.donation(id)
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
            "this donor already made {held} donation(s) to {dataset}, the most it takes              from one donor"
        )));
    }
    Ok(())
}

/// Within a seal's transaction: donations whose batches were consumed are sealed in
/// `epoch` when all their rows fell in the first `sealed_rows`, and otherwise now live in
/// the shared `remainder` batch.
pub(super) fn sealed(
    tx: &Transaction,
    batches: &[(i64, String, u64)],
    sealed_rows: u64,
    remainder: Option<i64>,
    epoch: u64,
) -> Result<(), StoreError> {
    let mut end = 0;
    for (batch, _, rows) in batches {
        end += rows;
        if end <= sealed_rows {
            tx.execute(
                "UPDATE donations SET batch = NULL, epoch = ?2 WHERE batch = ?1",
                params![batch, epoch as i64],
            )?;
        } else {
            tx.execute(
                "UPDATE donations SET batch = ?2, own_batch = 0 WHERE batch = ?1",
                params![batch, remainder],
            )?;
        }
    }
    Ok(())
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
