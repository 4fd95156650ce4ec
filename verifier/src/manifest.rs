//! Epoch manifests: what a node publishes about a dataset's sealed chunks, signed with the
//! node's Ed25519 key. A manifest lists every chunk of the epoch (index, commitment, row
//! count), the schema hash and the hash of the previous epoch's manifest, so epochs form a
//! chain. For each roll-up the schema declares, it lists the sealings: which chunks each
//! rolled up and the commitments of the cell chunks it made of them. Keys are not listed: they are made or imported after an epoch is sealed, and a
//! verifier pins them itself (see [`crate::verify::KeyPins`]). A verifier that learned the
//! latest manifest's hash (its head) checks that a bundle's epoch lies on that chain.

use ark_ff::{BigInteger, PrimeField};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zkfabric_circuits::Fr;

/// One sealed chunk as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChunkEntry {
    /// Position within the dataset.
    pub index: u64,
    /// The chunk commitment, `0x` and 64 hex digits (big-endian).
    pub commitment: String,
    /// Rows in the chunk (padding excluded).
    pub rows: u64,
    /// Of them, rows donated with an eligibility proof: the node checked, when they were
    /// donated, that their credential-backed columns (the schema's `credential` marks)
    /// are the donor's credential's. Absent when 0 (so manifests of earlier versions
    /// keep their bytes).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub credential_rows: u64,
    /// Of them, rows of bulk donations an accepted organisation signed.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub organisation_rows: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// A roll-up's cells in an epoch: one entry per sealing that rolled up some of the
/// epoch's chunks. Together the sealings cover every chunk of the epoch exactly once
/// ([`Manifest::check_rollups`]).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RollupEntry {
    /// The roll-up's name in the schema.
    pub name: String,
    /// Its sealings, oldest first.
    pub sealings: Vec<SealingEntry>,
}

impl RollupEntry {
    /// The cells of every sealing: what an answer from the roll-up reads.
    pub fn cells(&self) -> u64 {
        self.sealings
            .iter()
            .flat_map(|s| &s.cells)
            .map(|c| c.rows)
            .sum()
    }
}

/// One sealing of a roll-up: the chunks it rolled up and the cell chunks it made of them,
/// which its proofs show to be their aggregation (at a challenge hashing both lists).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealingEntry {
    /// The indices of the rolled-up chunks, ascending.
    pub chunks: Vec<u64>,
    /// The cell chunks (index within the roll-up's cell table, commitment, cells), in
    /// index order.
    pub cells: Vec<ChunkEntry>,
}

/// Who vouches for an epoch's rows, as its signed manifest states it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Backing {
    /// Every row of the epoch.
    pub rows: u64,
    /// Rows donated with a credential (their credential-backed columns proven).
    pub credential: u64,
    /// Rows an organisation signed for.
    pub organisation: u64,
}

impl Backing {
    /// Rows only the node's operator vouches for (ingested, or donated without a policy).
    pub fn operator(&self) -> u64 {
        self.rows - self.credential - self.organisation
    }
}

/// The signed content of one epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Dataset name.
    pub dataset: String,
    /// Dataset id bound into the commitments.
    pub dataset_id: u64,
    /// Epoch number, from 1.
    pub epoch: u64,
    /// Hash of the dataset's schema file.
    pub schema_hash: String,
    /// Rows per chunk, padding included.
    pub chunk_rows: usize,
    /// Every chunk of the epoch, in index order.
    pub chunks: Vec<ChunkEntry>,
    /// Hash of the previous epoch's manifest.
    pub previous: Option<String>,
    /// `dp` or `threshold-only`: how answers over this epoch protect the people in it.
    pub privacy: String,
    /// For `dp`: the commitment to the epoch's noise secret (`0x` and 64 hex digits),
    /// published before any query, so that the noise of every answer is fixed before
    /// the researcher's nonce is seen.
    pub noise_commitment: Option<String>,
    /// The schema's roll-ups, in its order (absent without any, so that manifests of
    /// earlier versions keep their bytes).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rollups: Vec<RollupEntry>,
}

/// A manifest with the node's signature over its canonical bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedManifest {
    /// The content.
    pub manifest: Manifest,
    /// Ed25519 signature, hex.
    pub signature: String,
    /// The signing node's public key, hex.
    pub node_key: String,
}

/// Why a manifest does not verify.
#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    /// The key or signature is not well-formed hex of the right length.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// The manifest was signed by another key than the one trusted.
    #[error("signed by node key {found}, not the trusted {expected}")]
    WrongKey { found: String, expected: String },
    /// The signature does not match the content.
    #[error("the signature does not match the manifest")]
    BadSignature,
}

impl Manifest {
    /// Who vouches for the epoch's rows: the credential and organisation counts of every
    /// chunk.
    pub fn backing(&self) -> Backing {
        self.chunks.iter().fold(Backing::default(), |b, c| Backing {
            rows: b.rows + c.rows,
            credential: b.credential + c.credential_rows,
            organisation: b.organisation + c.organisation_rows,
        })
    }

    /// Checks how the roll-ups' sealings fit the epoch: each roll-up's sealings cover
    /// every chunk of the epoch exactly once, list their chunks ascending, and their
    /// cell chunks in ascending index order without repeats. The message names the
    /// roll-up and what is wrong.
    pub fn check_rollups(&self) -> Result<(), String> {
        let epoch: Vec<u64> = self.chunks.iter().map(|c| c.index).collect();
        for rollup in &self.rollups {
            let fail = |message: String| Err(format!("roll-up `{}`: {message}", rollup.name));
            let mut covered: Vec<u64> = Vec::with_capacity(epoch.len());
            let mut cells: Vec<u64> = Vec::new();
            for sealing in &rollup.sealings {
                if sealing.chunks.is_empty() || !sealing.chunks.is_sorted_by(|a, b| a < b) {
                    return fail(format!(
                        "a sealing lists chunks {:?}, not ascending",
                        sealing.chunks
                    ));
                }
                covered.extend(&sealing.chunks);
                cells.extend(sealing.cells.iter().map(|c| c.index));
            }
            covered.sort_unstable();
            if covered != epoch {
                return fail(format!(
                    "its sealings roll up chunks {covered:?}, not each of the epoch's {epoch:?} once"
                ));
            }
            if !cells.is_sorted_by(|a, b| a < b) {
                return fail(format!("cell chunks {cells:?} are not in ascending order"));
            }
        }
        Ok(())
    }

    /// The bytes that are hashed and signed: the manifest as compact JSON, fields in
    /// declaration order.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a manifest always serializes")
    }

    /// `sha256:` and the hex SHA-256 of the canonical bytes.
    pub fn hash(&self) -> String {
        format!(
            "sha256:{}",
            hex::encode(Sha256::digest(self.canonical_bytes()))
        )
    }

    /// Signs the manifest.
    pub fn sign(self, key: &SigningKey) -> SignedManifest {
        let signature = key.sign(&self.canonical_bytes());
        SignedManifest {
            manifest: self,
            signature: hex::encode(signature.to_bytes()),
            node_key: hex::encode(key.verifying_key().to_bytes()),
        }
    }
}

impl SignedManifest {
    /// Checks the signature, and that the signer is `trusted` when given.
    pub fn verify(&self, trusted: Option<&VerifyingKey>) -> Result<(), ManifestError> {
        let key_bytes: [u8; 32] = hex::decode(&self.node_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(ManifestError::Malformed("node key"))?;
        let key = VerifyingKey::from_bytes(&key_bytes)
            .map_err(|_| ManifestError::Malformed("node key"))?;
        if let Some(trusted) = trusted {
            if trusted != &key {
                return Err(ManifestError::WrongKey {
                    found: self.node_key.clone(),
                    expected: hex::encode(trusted.to_bytes()),
                });
            }
        }
        let signature: [u8; 64] = hex::decode(&self.signature)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(ManifestError::Malformed("signature"))?;
        key.verify(
            &self.manifest.canonical_bytes(),
            &Signature::from_bytes(&signature),
        )
        .map_err(|_| ManifestError::BadSignature)
    }
}

/// An Ed25519 public key from 64 hex digits.
pub fn parse_ed25519_key(text: &str) -> Result<VerifyingKey, String> {
    let bytes: [u8; 32] = hex::decode(text.trim())
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "an Ed25519 public key is 64 hex digits".to_string())?;
    VerifyingKey::from_bytes(&bytes).map_err(|_| "not an Ed25519 public key".to_string())
}

/// A field element as `0x` and 64 hex digits, big-endian (circomlib's notation).
pub fn fr_to_hex(x: &Fr) -> String {
    format!("0x{}", hex::encode(x.into_bigint().to_bytes_be()))
}

/// Reads a field element written by [`fr_to_hex`]; `None` for anything else, including a
/// value at or above the field modulus.
pub fn fr_from_hex(text: &str) -> Option<Fr> {
    let bytes: [u8; 32] = hex::decode(text.strip_prefix("0x")?)
        .ok()?
        .try_into()
        .ok()?;
    let x = Fr::from_be_bytes_mod_order(&bytes);
    (fr_to_hex(&x) == text).then_some(x)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest() -> Manifest {
        Manifest {
            dataset: "consumption".into(),
            dataset_id: 1,
            epoch: 2,
            schema_hash: "sha256:00".into(),
            chunk_rows: 8,
            chunks: vec![ChunkEntry {
                index: 0,
                commitment: fr_to_hex(&Fr::from(5u8)),
                rows: 8,
                credential_rows: 3,
                organisation_rows: 0,
            }],
            previous: Some("sha256:11".into()),
            privacy: "dp".into(),
            noise_commitment: Some(fr_to_hex(&Fr::from(6u8))),
            rollups: Vec::new(),
        }
    }

    fn entry(index: u64) -> ChunkEntry {
        ChunkEntry {
            index,
            commitment: fr_to_hex(&Fr::from(index)),
            rows: 8,
            credential_rows: 0,
            organisation_rows: 0,
        }
    }

    #[test]
    fn rollups_cover_every_chunk_once_and_are_signed() {
        let mut m = manifest();
        m.chunks = (0..4).map(entry).collect();
        let sealing = |chunks: Vec<u64>, cells: Vec<u64>| SealingEntry {
            chunks,
            cells: cells.into_iter().map(entry).collect(),
        };
        let rollup = |sealings| RollupEntry {
            name: "daily".into(),
            sealings,
        };
        m.rollups = vec![rollup(vec![
            sealing(vec![0, 1], vec![0]),
            sealing(vec![2, 3], vec![1, 2]),
        ])];
        assert_eq!(m.check_rollups(), Ok(()));
        let text = String::from_utf8(m.canonical_bytes()).unwrap();
        assert!(text.contains("\"rollups\":[{\"name\":\"daily\",\"sealings\":[{\"chunks\":[0,1]"));
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = m.clone().sign(&key);
        let mut tampered = signed.clone();
        tampered.manifest.rollups[0].sealings[1].cells[0].commitment = fr_to_hex(&Fr::from(9u8));
        assert!(tampered.verify(None).is_err());
        for (sealings, message) in [
            (
                vec![sealing(vec![0, 1], vec![0])],
                "not each of the epoch's",
            ),
            (
                vec![
                    sealing(vec![0, 1, 2], vec![0]),
                    sealing(vec![2, 3], vec![1]),
                ],
                "not each of the epoch's",
            ),
            (vec![sealing(vec![1, 0, 2, 3], vec![0])], "not ascending"),
            (
                vec![sealing(vec![0, 1], vec![1]), sealing(vec![2, 3], vec![0])],
                "not in ascending order",
            ),
            (
                vec![sealing(vec![0, 1], vec![0]), sealing(vec![2, 3], vec![0])],
                "not in ascending order",
            ),
            (
                vec![sealing(vec![], vec![]), sealing(vec![0, 1, 2, 3], vec![0])],
                "not ascending",
            ),
        ] {
            m.rollups = vec![rollup(sealings)];
            let e = m.check_rollups().unwrap_err();
            assert!(
                e.starts_with("roll-up `daily`: ") && e.contains(message),
                "{e}"
            );
        }
    }

    #[test]
    fn signatures_bind_every_field_and_the_key() {
        let key = SigningKey::from_bytes(&[7; 32]);
        let signed = manifest().sign(&key);
        assert!(signed.verify(Some(&key.verifying_key())).is_ok());
        let other = SigningKey::from_bytes(&[8; 32]);
        assert!(matches!(
            signed.verify(Some(&other.verifying_key())),
            Err(ManifestError::WrongKey { .. })
        ));
        let edits: Vec<fn(&mut Manifest)> = vec![
            |m| m.epoch += 1,
            |m| m.chunks[0].rows -= 1,
            |m| m.chunks[0].commitment = fr_to_hex(&Fr::from(6u8)),
            |m| m.previous = None,
            |m| m.schema_hash.push('0'),
            |m| m.chunks[0].credential_rows += 1,
            |m| m.chunks[0].organisation_rows += 1,
        ];
        for edit in edits {
            let mut tampered = signed.clone();
            edit(&mut tampered.manifest);
            assert!(matches!(
                tampered.verify(None),
                Err(ManifestError::BadSignature)
            ));
        }
        assert_eq!(fr_to_hex(&Fr::from(5u8)).len(), 66);
    }

    #[test]
    fn backing_counts_are_left_out_when_zero_so_older_manifests_keep_their_bytes() {
        let mut m = manifest();
        let text = String::from_utf8(m.canonical_bytes()).unwrap();
        assert!(text.contains("\"credential_rows\":3") && !text.contains("organisation_rows"));
        m.chunks[0].credential_rows = 0;
        let older = String::from_utf8(m.canonical_bytes()).unwrap();
        assert!(!older.contains("credential_rows"), "{older}");
        let parsed: Manifest = serde_json::from_str(&older).unwrap();
        assert_eq!(parsed, m);
        assert_eq!(
            manifest().backing(),
            Backing {
                rows: 8,
                credential: 3,
                organisation: 0
            }
        );
        assert_eq!(manifest().backing().operator(), 5);
    }
}
