//! Donors' side of a donation: the key and credential files issuers, holders and
//! organisations keep, and the proofs and signatures a donation carries.
//!
//! An issuer (a municipality, say) signs a credential for a holder's commitment: birth
//! date and residence district. The holder proves, for one donation to one dataset, that
//! an accepted issuer signed their credential, that they were born on or before today's
//! cutoff (`min_age` years ago) and live in an allowed district; the node learns only the
//! dataset nullifier, which limits donations per donor without identifying anyone. An
//! organisation donating a data set signs it instead. The node's checks of both are
//! [`crate::node::donor`].

use std::{
    path::Path,
    time::{SystemTime, UNIX_EPOCH},
};

use ark_ff::{BigInteger, PrimeField};
use ed25519_dalek::VerifyingKey as NodeKey;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zkfabric_circuits::{
    eddsa::{self, Point, Scalar, SecretKey, Signature},
    eligibility::{
        self, BoundRow, Credential, EligibilityCircuit, EligibilityShape, Holding, Requirement,
        Segment, WithdrawalCircuit, WithdrawalShape,
    },
    snark::{self, ProvingKey},
    Fr,
};
use zkfabric_proto::v1 as pb;

use crate::{
    shared::records::{self, RecordsError},
    verifier::{
        files::{self, FileError},
        schema::Schema,
    },
};

/// Allowed-district slots of every eligibility circuit.
pub const DISTRICT_SLOTS: usize = 16;
/// Rows one eligibility proof binds: a week of hourly readings. A longer donation carries
/// one proof per segment of this many rows.
pub const SEGMENT_ROWS: usize = 168;

/// The eligibility circuit of donations to a dataset of `schema`: its credential-bound
/// columns ([`Schema::attested`]), [`SEGMENT_ROWS`] rows a proof when it has any.
pub fn shape(schema: &Schema) -> EligibilityShape {
    let bound = schema.attested().bound;
    EligibilityShape {
        districts: DISTRICT_SLOTS,
        rows: if bound.any() { SEGMENT_ROWS } else { 0 },
        bound,
    }
}

/// The eligibility shape a description names, if it is one a node publishes a key for
/// (16 district slots, [`SEGMENT_ROWS`] rows when it binds any): a bounded set, so no
/// request makes the node set up arbitrary circuits.
pub fn published_shape(description: &str) -> Option<EligibilityShape> {
    let shape = EligibilityShape::parse(description)?;
    let rows = if shape.bound.any() { SEGMENT_ROWS } else { 0 };
    (shape.districts == DISTRICT_SLOTS && shape.rows == rows).then_some(shape)
}

/// A donation's bound rows in the segments its proofs cover, in file order: one segment
/// (empty) when the shape binds no rows.
pub fn segments(shape: &EligibilityShape, rows: &[BoundRow]) -> Vec<Segment> {
    if !shape.binds_rows() || rows.is_empty() {
        return vec![Segment::default()];
    }
    rows.chunks(shape.rows)
        .enumerate()
        .map(|(index, rows)| Segment {
            index: index as u64,
            rows: rows.to_vec(),
        })
        .collect()
}

/// The credential-bound values of a donated record file's rows, in file order (none when
/// `schema` binds none), read as the node reads the donation for `purposes`.
pub fn bound_rows(
    schema: &Schema,
    path: &Path,
    purposes: &[String],
) -> Result<Vec<BoundRow>, DonorError> {
    let attested = schema.attested();
    if !attested.bound.any() {
        return Ok(Vec::new());
    }
    let fill = records::DonationFill {
        consent: records::consent_bits(schema, purposes).map_err(DonorError::Records)?,
        unit: schema.unit().map(|_| records::UnitFill::Otherwise(0)),
    };
    let columns = records::read_donation(schema, path, fill)
        .map_err(|e: RecordsError| DonorError::Records(e.to_string()))?;
    let rows = columns.first().map_or(0, Vec::len);
    Ok((0..rows).map(|row| attested.row(&columns, row)).collect())
}

/// The canonical description of the withdrawal circuit (its key's name).
pub const WITHDRAWAL_SHAPE: &str = WithdrawalShape::DESCRIPTION;

/// What a withdrawal proof is bound to: the receipt id it withdraws.
pub fn withdrawal_binding(id: &str) -> Fr {
    Fr::from_be_bytes_mod_order(&Sha256::digest(format!("zkfabric withdrawal {id}")))
}

/// Proves knowledge of the secret behind the holder's nullifier in `dataset`, to withdraw
/// the donation with receipt `id`.
pub fn prove_withdrawal(
    pk: &ProvingKey,
    secret: Fr,
    node_key: &NodeKey,
    dataset: &str,
    id: &str,
) -> Result<Vec<u8>, DonorError> {
    let circuit = WithdrawalCircuit::new(secret, scope(node_key, dataset), withdrawal_binding(id));
    let proof = snark::prove(pk, circuit, &mut rand::rngs::OsRng)?;
    Ok(snark::proof_to_bytes(&proof))
}

/// Why a credential file, a proof or a donation was refused.
#[derive(Debug, thiserror::Error)]
pub enum DonorError {
    /// A key or credential file is unreadable or malformed.
    #[error("{file}: {message}")]
    File { file: String, message: String },
    /// A proof is missing where the dataset needs one, or sent where it takes none.
    #[error("eligibility: {0}")]
    Missing(String),
    /// The donation's eligibility proof is refused; the message says why.
    #[error("eligibility: {0}")]
    Refused(String),
    /// The holder is not eligible, or proving failed.
    #[error("eligibility: {0}")]
    Circuit(#[from] zkfabric_circuits::CircuitError),
    /// The donated records or purposes are malformed (the message names file, row and
    /// column, or the purpose).
    #[error("{0}")]
    Records(String),
}

pub(crate) fn refused<T>(message: impl Into<String>) -> Result<T, DonorError> {
    Err(DonorError::Refused(message.into()))
}

/// An issuer's key file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct IssuerKey {
    /// The secret scalar, 64 hex digits.
    pub secret: String,
    /// The public key nodes list in `[donors.<dataset>] issuers`.
    pub public: String,
}

/// A holder's key file: the secret stays with the holder; `holder` goes to the issuer.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HolderKey {
    /// The secret, 64 hex digits (a field element, big-endian).
    pub secret: String,
    /// The commitment an issuer signs for.
    pub holder: String,
}

/// A credential file, as an issuer hands it to a holder.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CredentialFile {
    /// The issuer's public key.
    pub issuer: String,
    /// The holder's commitment.
    pub holder: String,
    /// Birth date, YYYYMMDD.
    pub birth_date: u32,
    /// Residence district code.
    pub district: u64,
    /// The signature's `R8` (compressed point) and `S` (scalar), hex.
    pub r8: String,
    /// See `r8`.
    pub s: String,
}

/// A field element as 64 hex digits, big-endian.
pub fn fr_to_hex(x: &Fr) -> String {
    hex::encode(x.into_bigint().to_bytes_be())
}

/// A field element from [`fr_to_hex`]'s form; `None` unless canonical.
pub fn fr_from_hex(text: &str) -> Option<Fr> {
    let bytes = hex::decode(text.trim()).ok()?;
    let x = Fr::from_be_bytes_mod_order(&bytes);
    (bytes.len() == 32 && x.into_bigint().to_bytes_be() == bytes).then_some(x)
}

impl IssuerKey {
    /// A new random issuer key.
    pub fn generate() -> Self {
        let secret = SecretKey(Scalar::from_le_bytes_mod_order(&random_bytes()));
        Self {
            secret: eddsa::scalar_to_hex(&secret.0),
            public: eddsa::point_to_hex(&secret.public_key()),
        }
    }

    fn secret_key(&self, file: &str) -> Result<SecretKey, DonorError> {
        let key = eddsa::scalar_from_hex(&self.secret)
            .map(SecretKey)
            .ok_or_else(|| bad(file, "secret is not a BabyJubJub scalar"))?;
        if eddsa::point_to_hex(&key.public_key()) != self.public {
            return Err(bad(file, "public key does not match the secret"));
        }
        Ok(key)
    }

    /// Issues a credential for `holder` (a holder's commitment, hex).
    pub fn issue(
        &self,
        file: &str,
        holder: &str,
        birth_date: u32,
        district: u64,
    ) -> Result<CredentialFile, DonorError> {
        let key = self.secret_key(file)?;
        let holder_fr = fr_from_hex(holder)
            .ok_or_else(|| bad("--holder", "not a holder commitment (64 hex digits)"))?;
        if district >> eligibility::DISTRICT_BITS != 0 {
            return Err(bad("--district", "a district code is below 65536"));
        }
        let credential = Credential {
            holder: holder_fr,
            birth_date,
            district,
        };
        let signature = credential.sign(&key);
        Ok(CredentialFile {
            issuer: self.public.clone(),
            holder: holder.to_string(),
            birth_date,
            district,
            r8: eddsa::point_to_hex(&signature.r8),
            s: eddsa::scalar_to_hex(&signature.s),
        })
    }
}

impl HolderKey {
    /// A new random holder secret.
    pub fn generate() -> Self {
        let secret = Fr::from_le_bytes_mod_order(&random_bytes());
        Self {
            secret: fr_to_hex(&secret),
            holder: fr_to_hex(&eligibility::holder(secret)),
        }
    }
}

/// 64 random bytes: reduced modulo a 254-bit order, uniform to within 2^-256.
fn random_bytes() -> Vec<u8> {
    [rand::random::<[u8; 32]>(), rand::random::<[u8; 32]>()].concat()
}

fn bad(file: &str, message: &str) -> DonorError {
    DonorError::File {
        file: file.to_string(),
        message: message.to_string(),
    }
}

/// Reads a JSON key or credential file.
pub fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T, DonorError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| bad(&file, &e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| bad(&file, &e.to_string()))
}

/// Writes a JSON key or credential file atomically, readable by the owner only.
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), DonorError> {
    let text = serde_json::to_string_pretty(value).expect("serializable");
    files::write_atomically(path, |mut file| {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = file.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
        std::io::Write::write_all(&mut file, text.as_bytes()).map_err(|e| FileError::at(path, e))
    })
    .map_err(|e| bad(&path.display().to_string(), &e.to_string()))
}

/// The holder's witness from their key and credential files.
pub fn holding(
    key: &HolderKey,
    credential: &CredentialFile,
    credential_file: &str,
) -> Result<(Holding, Point), DonorError> {
    let secret = fr_from_hex(&key.secret).ok_or_else(|| bad("holder key", "bad secret"))?;
    if fr_to_hex(&eligibility::holder(secret)) != credential.holder {
        return Err(bad(
            credential_file,
            "the credential was issued for another holder key",
        ));
    }
    let issuer = eddsa::point_from_hex(&credential.issuer)
        .ok_or_else(|| bad(credential_file, "issuer is not a BabyJubJub key"))?;
    let signature = Signature {
        r8: eddsa::point_from_hex(&credential.r8)
            .ok_or_else(|| bad(credential_file, "r8 is not a curve point"))?,
        s: eddsa::scalar_from_hex(&credential.s)
            .ok_or_else(|| bad(credential_file, "s is not a scalar"))?,
    };
    let holding = Holding {
        credential: Credential {
            holder: eligibility::holder(secret),
            birth_date: credential.birth_date,
            district: credential.district,
        },
        signature,
        secret,
    };
    if !eddsa::verify(&issuer, holding.credential.message(), &signature) {
        return Err(bad(
            credential_file,
            "the issuer's signature does not verify",
        ));
    }
    Ok((holding, issuer))
}

/// The nullifier scope of a dataset on one node: the node's key and the dataset's name.
/// A donor's nullifier is the same for every donation to this dataset on this node (the
/// per-donor limit rests on that), and unlinkable to their nullifiers on other nodes
/// hosting a dataset of the same name, or in other datasets.
pub fn scope(node_key: &NodeKey, dataset: &str) -> Fr {
    let mut hash = Sha256::new();
    hash.update(b"zkfabric donor scope v2\0");
    hash.update(node_key.as_bytes());
    hash.update(dataset.as_bytes());
    Fr::from_be_bytes_mod_order(&hash.finalize())
}

/// The field element a proof binds donated records to: their SHA-256, reduced.
pub fn records_hash(records: &[u8]) -> Fr {
    Fr::from_be_bytes_mod_order(&Sha256::digest(records))
}

/// Today's date (UTC) as YYYYMMDD.
pub fn today() -> u32 {
    let days = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year * 10_000 + month * 100 + day) as u32
}

/// The latest birth date (YYYYMMDD) of someone at least `min_age` on `date`.
pub fn cutoff(date: u32, min_age: u32) -> u32 {
    date - min_age * 10_000
}

/// The file extension of a donation's record format, if it names one.
pub fn record_extension(format: pb::RecordFormat) -> Option<&'static str> {
    match format {
        pb::RecordFormat::Csv => Some("csv"),
        pb::RecordFormat::Parquet => Some("parquet"),
        pb::RecordFormat::ArrowIpc => Some("arrow"),
        _ => None,
    }
}

/// [`bound_rows`] of a record file's bytes in `format`, read as the node reads them.
pub fn bound_rows_of(
    schema: &Schema,
    records: &[u8],
    format: pb::RecordFormat,
    purposes: &[String],
) -> Result<Vec<BoundRow>, DonorError> {
    let extension = record_extension(format)
        .ok_or_else(|| DonorError::Records("name the records' format".into()))?;
    let dir = tempfile::tempdir().map_err(|e| DonorError::Records(e.to_string()))?;
    let path = dir.path().join(format!("records.{extension}"));
    std::fs::write(&path, records).map_err(|e| DonorError::Records(e.to_string()))?;
    bound_rows(schema, &path, purposes).map_err(|e| {
        DonorError::Records(
            e.to_string()
                .replace(&path.display().to_string(), "records"),
        )
    })
}

/// The policy's eligibility shape, as the node published it.
pub fn policy_shape(policy: &pb::DonorPolicy) -> Result<EligibilityShape, DonorError> {
    published_shape(&policy.shape).ok_or_else(|| {
        DonorError::Refused(format!(
            "the policy names eligibility circuit {:?}, which this client does not know",
            policy.shape
        ))
    })
}

/// What a donation proves with: the policy the node publishes, its proving key, and
/// the donated records (file bytes, and the credential-bound values of their rows).
pub struct Proving<'a> {
    /// The dataset's donor policy, as published.
    pub policy: &'a pb::DonorPolicy,
    /// The proving key of the policy's shape.
    pub pk: &'a ProvingKey,
    /// The node's key (the nullifier scope).
    pub node_key: &'a NodeKey,
    /// The dataset.
    pub dataset: &'a str,
    /// The record file's bytes.
    pub records: &'a [u8],
    /// Its rows' credential-bound values ([`bound_rows`]).
    pub rows: &'a [BoundRow],
}

/// Proves that `holding` (issued by `issuer`) makes its holder eligible under the
/// published policy for donating the records, and that every row's credential-bound
/// values are the credential's: one proof per segment. A row that disagrees is named
/// (its position in the file, from 0) before anything is proven.
pub fn prove(
    proving: &Proving,
    holding: Holding,
    issuer: Point,
) -> Result<pb::EligibilityProof, DonorError> {
    let Proving {
        policy, dataset, ..
    } = proving;
    if !policy.issuers.contains(&eddsa::point_to_hex(&issuer)) {
        return refused(format!(
            "the credential's issuer is not accepted for {dataset}"
        ));
    }
    let shape = policy_shape(policy)?;
    let segments = segments(&shape, proving.rows);
    if shape.binds_rows() {
        for segment in &segments {
            if let Some((row, why)) =
                eligibility::row_mismatch(shape.bound, &holding.credential, &segment.rows)
            {
                return refused(format!(
                    "row {} of the file: {why}; the credential backs this dataset's {} \
                     columns, so the file must agree with it",
                    segment.index as usize * shape.rows + row,
                    shape.bound.in_words()
                ));
            }
        }
    }
    let requirement = Requirement {
        issuer,
        cutoff: policy.cutoff,
        districts: policy.districts.clone(),
    };
    let scope = scope(proving.node_key, dataset);
    let records = records_hash(proving.records);
    let mut nullifier = Fr::from(0u8);
    let mut proofs = Vec::with_capacity(segments.len());
    for segment in segments {
        let circuit =
            EligibilityCircuit::new(shape, &requirement, scope, records, holding, segment)?;
        nullifier = circuit.instance.nullifier;
        let proof = snark::prove(proving.pk, circuit, &mut rand::rngs::OsRng)?;
        proofs.push(snark::proof_to_bytes(&proof));
    }
    Ok(pb::EligibilityProof {
        issuer: eddsa::point_to_hex(&issuer),
        cutoff: policy.cutoff,
        nullifier: nullifier.into_bigint().to_bytes_be(),
        proofs,
    })
}

/// What an organisation signs for a bulk donation: the dataset, the records' SHA-256 and
/// the purposes (sorted), so the signature covers exactly this file for these purposes.
pub fn bulk_message(dataset: &str, records: &[u8], purposes: &[String]) -> Vec<u8> {
    let mut purposes = purposes.to_vec();
    purposes.sort();
    purposes.dedup();
    format!(
        "zkfabric bulk donation v1\n{dataset}\n{}\n{}",
        hex::encode(Sha256::digest(records)),
        purposes.join("\n")
    )
    .into_bytes()
}

/// An organisation's Ed25519 key file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct OrganisationKey {
    /// The secret key, 64 hex digits.
    pub secret: String,
    /// The public key nodes list in `[donors.<dataset>] organisations`.
    pub public: String,
}

impl OrganisationKey {
    /// A new random organisation key.
    pub fn generate() -> Self {
        let key = ed25519_dalek::SigningKey::generate(&mut rand::rngs::OsRng);
        Self {
            secret: hex::encode(key.to_bytes()),
            public: hex::encode(key.verifying_key().to_bytes()),
        }
    }

    /// Signs a bulk donation of `records` to `dataset` for `purposes`.
    pub fn sign(
        &self,
        dataset: &str,
        records: &[u8],
        purposes: &[String],
    ) -> Result<pb::OrganisationSignature, DonorError> {
        use ed25519_dalek::Signer;
        let bytes: [u8; 32] = hex::decode(&self.secret)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("organisation key", "secret is not 64 hex digits"))?;
        let key = ed25519_dalek::SigningKey::from_bytes(&bytes);
        if hex::encode(key.verifying_key().to_bytes()) != self.public {
            return Err(bad(
                "organisation key",
                "public key does not match the secret",
            ));
        }
        Ok(pb::OrganisationSignature {
            key: self.public.clone(),
            signature: key
                .sign(&bulk_message(dataset, records, purposes))
                .to_bytes()
                .to_vec(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_donor_is_unlinkable_across_nodes_hosting_the_same_dataset() {
        // Two nodes both host `consumption`; one holder donates to both. The scope, and
        // so the nullifier each node learns, differs; within one node it is stable.
        let node_a = ed25519_dalek::SigningKey::from_bytes(&[1; 32]).verifying_key();
        let node_b = ed25519_dalek::SigningKey::from_bytes(&[2; 32]).verifying_key();
        let secret = Fr::from(1234u64);
        let on = |node: &NodeKey, dataset| {
            zkfabric_circuits::eligibility::nullifier(secret, scope(node, dataset))
        };
        assert_ne!(on(&node_a, "consumption"), on(&node_b, "consumption"));
        assert_ne!(on(&node_a, "consumption"), on(&node_a, "movement"));
        assert_eq!(on(&node_a, "consumption"), on(&node_a, "consumption"));
    }

    #[test]
    fn cutoffs_follow_the_calendar() {
        assert_eq!(cutoff(20261123, 18), 20081123);
        let today = today();
        assert!((20260101..21000101).contains(&today), "{today}");
        assert!((1..=12).contains(&(today / 100 % 100)) && (1..=31).contains(&(today % 100)));
    }

    #[test]
    fn field_elements_round_trip_through_hex() {
        let x = Fr::from(123_456u64);
        assert_eq!(fr_from_hex(&fr_to_hex(&x)), Some(x));
        assert_eq!(fr_from_hex(&"ff".repeat(32)), None, "not canonical");
    }
}
