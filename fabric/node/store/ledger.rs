//! The privacy ledger: per dp dataset, every charge to its budget, signed by the node and
//! chained by hash, appended in the same transaction that checks the budget, so that two
//! queries can never both spend its last part.

use fail::fail_point;
use prost::Message;
use rusqlite::{params, OptionalExtension, Transaction, TransactionBehavior};
use zkfabric_proto::v1 as pb;

use super::{Store, StoreError};
use crate::verifier::{ledger, privacy::Cost};

/// What an answer asks to be charged.
#[derive(Clone, Debug)]
pub struct ChargeRequest {
    /// The dataset whose budget pays.
    pub dataset: String,
    /// The epoch answered over.
    pub epoch: u64,
    /// The canonical query's hash (`0x` hex), which keys the noise.
    pub query_hash: String,
    /// The researcher's nonce.
    pub nonce: Vec<u8>,
    /// What the answer costs.
    pub cost: Cost,
    /// The consent purpose it counts rows for.
    pub purpose: String,
    /// The dataset's total budget.
    pub budget: Cost,
}

/// A charge: a new ledger entry, or the one an identical earlier request made.
#[derive(Clone, Debug)]
pub struct Charge {
    /// The entry.
    pub entry: pb::LedgerEntry,
    /// Whether this request added it (false: the same query and nonce were answered
    /// before, with the same noise, and nothing more is spent).
    pub new: bool,
}

/// A dataset's ledger and what it spent.
#[derive(Clone, Debug)]
pub struct LedgerSummary {
    /// Every entry, oldest first.
    pub entries: Vec<pb::LedgerEntry>,
    /// Epsilon and delta spent (basic composition: sums).
    pub spent: Cost,
}

impl LedgerSummary {
    /// The protobuf form (`Catalog.GetLedger`, `zkfabric ledger --json`), with the
    /// dataset's configured `budget`.
    pub fn to_proto(&self, dataset: &str, budget: Cost) -> pb::Ledger {
        pb::Ledger {
            dataset: dataset.to_string(),
            entries: self.entries.clone(),
            budget_epsilon: budget.epsilon,
            budget_delta: budget.delta,
            spent_epsilon: self.spent.epsilon,
            spent_delta: self.spent.delta,
        }
    }
}

impl Store {
    /// Charges `request` to its dataset's ledger, or returns the entry an earlier
    /// request for the same query hash and nonce made. Refused, with nothing written,
    /// when the charge would take the dataset beyond its budget. The entry is signed with
    /// the node key and names the hash of the entry before it.
    pub fn charge(&self, request: &ChargeRequest) -> Result<Charge, StoreError> {
        let tx = Transaction::new_unchecked(&self.db, TransactionBehavior::Immediate)?;
        let existing: Option<Vec<u8>> = tx
            .query_row(
                "SELECT entry FROM ledger WHERE dataset = ?1 AND query_hash = ?2 AND nonce = ?3",
                params![request.dataset, request.query_hash, request.nonce],
                |r| r.get(0),
            )
            .optional()?;
        if let Some(bytes) = existing {
            return Ok(Charge {
                entry: decode(&bytes)?,
                new: false,
            });
        }
        let last = last_entry(&tx, &request.dataset)?;
        let (spent_epsilon, spent_delta) = last
            .as_ref()
            .map_or((0.0, 0.0), |e| (e.spent_epsilon, e.spent_delta));
        let (epsilon, delta) = (
            spent_epsilon + request.cost.epsilon,
            spent_delta + request.cost.delta,
        );
        if epsilon > request.budget.epsilon || delta > request.budget.delta {
            return Err(StoreError::BudgetExhausted {
                dataset: request.dataset.clone(),
                spent: (spent_epsilon, spent_delta),
                asked: (request.cost.epsilon, request.cost.delta),
                budget: (request.budget.epsilon, request.budget.delta),
            });
        }
        let mut entry = pb::LedgerEntry {
            dataset: request.dataset.clone(),
            seq: last.as_ref().map_or(1, |e| e.seq + 1),
            previous: last.as_ref().map(ledger::entry_hash).unwrap_or_default(),
            query_hash: request.query_hash.clone(),
            nonce: request.nonce.clone(),
            epsilon: request.cost.epsilon,
            delta: request.cost.delta,
            purpose: request.purpose.clone(),
            epoch: request.epoch,
            time: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            spent_epsilon: epsilon,
            spent_delta: delta,
            budget_epsilon: request.budget.epsilon,
            budget_delta: request.budget.delta,
            signature: Vec::new(),
        };
        ledger::sign(&mut entry, &self.key);
        tx.execute(
            "INSERT INTO ledger (dataset, seq, query_hash, nonce, entry) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![
                entry.dataset,
                entry.seq as i64,
                entry.query_hash,
                entry.nonce,
                entry.encode_to_vec()
            ],
        )?;
        fail_point!("ledger-before-commit");
        tx.commit()?;
        fail_point!("ledger-committed");
        tracing::info!(
            dataset = request.dataset,
            seq = entry.seq,
            epsilon = request.cost.epsilon,
            delta = request.cost.delta,
            "charged an answer to the privacy ledger"
        );
        Ok(Charge { entry, new: true })
    }

    /// `dataset`'s ledger, oldest entry first, and what it spent.
    pub fn ledger(&self, dataset: &str) -> Result<LedgerSummary, StoreError> {
        self.schema(dataset)?;
        let mut stmt = self
            .db
            .prepare("SELECT entry FROM ledger WHERE dataset = ?1 ORDER BY seq")?;
        let entries = stmt
            .query_map([dataset], |r| r.get::<_, Vec<u8>>(0))?
            .map(|bytes| decode(&bytes?))
            .collect::<Result<Vec<_>, _>>()?;
        let spent = entries.last().map_or(
            Cost {
                epsilon: 0.0,
                delta: 0.0,
            },
            |e| Cost {
                epsilon: e.spent_epsilon,
                delta: e.spent_delta,
            },
        );
        Ok(LedgerSummary { entries, spent })
    }
}

fn last_entry(tx: &Transaction, dataset: &str) -> Result<Option<pb::LedgerEntry>, StoreError> {
    tx.query_row(
        "SELECT entry FROM ledger WHERE dataset = ?1 ORDER BY seq DESC LIMIT 1",
        [dataset],
        |r| r.get::<_, Vec<u8>>(0),
    )
    .optional()?
    .map(|bytes| decode(&bytes))
    .transpose()
}

fn decode(bytes: &[u8]) -> Result<pb::LedgerEntry, StoreError> {
    pb::LedgerEntry::decode(bytes)
        .map_err(|e| StoreError::Corrupt(format!("a ledger entry does not decode: {e}")))
}
