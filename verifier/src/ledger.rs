//! Privacy ledgers: per dataset, an append-only chain of charges to its privacy budget,
//! each entry signed by the node and naming the hash of the one before. A bundle carries
//! its own entry; the whole ledger is public (`zkfabric ledger`, `Catalog.GetLedger`),
//! so researchers, donors and auditors can add up what was spent and see that nothing
//! was dropped or rewritten.

use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use prost::Message;
use sha2::{Digest, Sha256};
use zkfabric_proto::v1 as pb;

/// Why a ledger or an entry does not check.
#[derive(Debug, thiserror::Error)]
#[error("ledger entry {seq}: {message}")]
pub struct LedgerError {
    /// The entry at fault.
    pub seq: u64,
    /// What is wrong with it.
    pub message: String,
}

/// The bytes a node signs and a chain hashes: the entry's protobuf encoding with an
/// empty signature.
pub fn signed_bytes(entry: &pb::LedgerEntry) -> Vec<u8> {
    let mut unsigned = entry.clone();
    unsigned.signature.clear();
    unsigned.encode_to_vec()
}

/// `sha256:` and the hex SHA-256 of [`signed_bytes`]: what the next entry's `previous`
/// names.
pub fn entry_hash(entry: &pb::LedgerEntry) -> String {
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(signed_bytes(entry)))
    )
}

/// Signs `entry` with the node's key.
pub fn sign(entry: &mut pb::LedgerEntry, key: &SigningKey) {
    entry.signature = key.sign(&signed_bytes(entry)).to_bytes().to_vec();
}

/// Checks that `node_key` signed `entry`.
pub fn check_signature(
    entry: &pb::LedgerEntry,
    node_key: &VerifyingKey,
) -> Result<(), LedgerError> {
    let bad = |message: &str| LedgerError {
        seq: entry.seq,
        message: message.into(),
    };
    let signature: [u8; 64] = entry
        .signature
        .as_slice()
        .try_into()
        .map_err(|_| bad("the signature is not 64 bytes"))?;
    node_key
        .verify(&signed_bytes(entry), &Signature::from_bytes(&signature))
        .map_err(|_| bad("the node's signature does not match the entry"))
}

/// Checks a whole ledger of `dataset`: entries numbered from 1, each naming the hash of
/// the one before and signed by `node_key`, their running totals the sums of the charges
/// and within the budget. Returns what was spent.
pub fn check_chain(
    dataset: &str,
    entries: &[pb::LedgerEntry],
    node_key: &VerifyingKey,
) -> Result<(f64, f64), LedgerError> {
    let (mut epsilon, mut delta) = (0.0, 0.0);
    let mut previous = String::new();
    for (i, entry) in entries.iter().enumerate() {
        let bad = |message: String| LedgerError {
            seq: entry.seq,
            message,
        };
        if entry.seq != i as u64 + 1 {
            return Err(bad(format!("is at position {}", i + 1)));
        }
        if entry.dataset != dataset {
            return Err(bad(format!("is about {}, not {dataset}", entry.dataset)));
        }
        if entry.previous != previous {
            return Err(bad(format!(
                "names {:?} as the entry before, which hashes to {previous:?}",
                entry.previous
            )));
        }
        check_signature(entry, node_key)?;
        epsilon += entry.epsilon;
        delta += entry.delta;
        if entry.spent_epsilon != epsilon || entry.spent_delta != delta {
            return Err(bad(format!(
                "states ({}, {:e}) spent; the charges add up to ({epsilon}, {delta:e})",
                entry.spent_epsilon, entry.spent_delta
            )));
        }
        if epsilon > entry.budget_epsilon || delta > entry.budget_delta {
            return Err(bad(format!(
                "spends ({epsilon}, {delta:e}), beyond the budget ({}, {:e})",
                entry.budget_epsilon, entry.budget_delta
            )));
        }
        previous = entry_hash(entry);
    }
    Ok((epsilon, delta))
}
