//! The node's side of a donation: a dataset's donor policy, and the checks a donation
//! passes before its rows are stored: an eligibility proof from an accepted issuer's
//! credential (or an accepted organisation's signature) against the policy, and a
//! withdrawal proof against the donation's nullifier; and the receipts the node signs.
//! What donors keep and prove is [`crate::shared::credentials`].

use ark_ff::{BigInteger, PrimeField};
use ed25519_dalek::VerifyingKey as NodeKey;
use serde::Deserialize;
use zkfabric_circuits::{
    eddsa,
    eligibility::{self, BoundRow, EligibilityInstance, EligibilityShape, WithdrawalCircuit},
    snark, Fr,
};
use zkfabric_proto::v1 as pb;

use crate::{
    node::store::{sha256_hex, Admission, Donation, DonationStatus, Eligible},
    shared::credentials::{
        bulk_message, cutoff, fr_from_hex, fr_to_hex, records_hash, refused, scope, segments,
        withdrawal_binding, DonorError, DISTRICT_SLOTS,
    },
    verifier::manifest::parse_ed25519_key,
};

/// A dataset's donor policy (`[donors.<dataset>]` in the node configuration): donations
/// to the dataset must carry an eligibility proof from a credential of one of `issuers`,
/// for an adult resident of one of `districts`, or an organisation's signature.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DonorPolicy {
    /// Accepted credential issuers: BabyJubJub public keys, 64 hex digits each.
    #[serde(default)]
    pub issuers: Vec<String>,
    /// Organisations whose signed bulk donations are accepted: Ed25519 public keys.
    #[serde(default)]
    pub organisations: Vec<String>,
    /// Allowed residence district codes (1 to 16).
    pub districts: Vec<u64>,
    /// Minimum age on the donation date.
    #[serde(default = "adult")]
    pub min_age: u32,
    /// Donations one donor (one nullifier) may make to the dataset.
    #[serde(default = "one")]
    pub donations_per_donor: u32,
}

fn adult() -> u32 {
    18
}

fn one() -> u32 {
    1
}

impl DonorPolicy {
    /// Checks the keys and bounds a node relies on: the message names the field at fault.
    pub fn check(&self) -> Result<(), String> {
        if let Some(bad) = self
            .issuers
            .iter()
            .find(|k| eddsa::point_from_hex(k).is_none())
        {
            return Err(format!("issuer {bad:?} is not a BabyJubJub public key"));
        }
        if self.issuers.is_empty() && self.organisations.is_empty() {
            return Err("list at least one issuer or organisation".into());
        }
        if let Some(bad) = self
            .organisations
            .iter()
            .find(|k| parse_ed25519_key(k).is_err())
        {
            return Err(format!("organisation {bad:?} is not an Ed25519 public key"));
        }
        let slots = eligibility::DISTRICT_BITS;
        if self.districts.is_empty()
            || self.districts.len() > DISTRICT_SLOTS
            || self.districts.iter().any(|d| d >> slots != 0)
        {
            return Err(format!(
                "districts must be 1 to {DISTRICT_SLOTS} codes below 2^{slots}"
            ));
        }
        if self.min_age > 150 || self.donations_per_donor == 0 {
            return Err("min_age at most 150, donations_per_donor at least 1".into());
        }
        Ok(())
    }
}

/// Checks a withdrawal proof for the donation with receipt `id` to `dataset`, whose
/// donor's nullifier is `nullifier` (hex).
pub fn check_withdrawal(
    vk: &snark::VerifyingKey,
    node_key: &NodeKey,
    dataset: &str,
    id: &str,
    nullifier: &str,
    proof: &[u8],
) -> Result<(), DonorError> {
    let nullifier = fr_from_hex(nullifier)
        .ok_or_else(|| DonorError::Refused("the donation has no nullifier".into()))?;
    let inputs = WithdrawalCircuit::public_inputs_of(
        scope(node_key, dataset),
        nullifier,
        withdrawal_binding(id),
    );
    let proof = snark::proof_from_bytes(proof)
        .map_err(|e| DonorError::Refused(format!("malformed withdrawal proof: {e}")))?;
    if !snark::verify(vk, &inputs, &proof)? {
        return refused("the withdrawal proof does not open this donation's nullifier");
    }
    Ok(())
}

/// The protobuf form of a policy, with today's cutoff and the dataset's eligibility
/// circuit.
pub fn policy_to_proto(
    policy: &DonorPolicy,
    shape: &EligibilityShape,
    today: u32,
) -> pb::DonorPolicy {
    pb::DonorPolicy {
        issuers: policy.issuers.clone(),
        districts: policy.districts.clone(),
        min_age: policy.min_age,
        cutoff: cutoff(today, policy.min_age),
        donations_per_donor: policy.donations_per_donor,
        shape: shape.description(),
        organisations: policy.organisations.clone(),
    }
}

/// Checks a donation's eligibility proofs against `policy` on `today`: an accepted
/// issuer, a cutoff no later than today's, the policy's districts, the dataset's scope,
/// the donated records, and one proof per segment of their rows, each checked against
/// the rows' credential-bound values as the node read them from the file. Returns the
/// nullifier (hex).
pub fn check(
    vk: &snark::VerifyingKey,
    policy: &DonorPolicy,
    today: u32,
    node_key: &NodeKey,
    donation: &Submitted,
    proof: &pb::EligibilityProof,
) -> Result<String, DonorError> {
    let dataset = donation.dataset;
    if !policy.issuers.contains(&proof.issuer) {
        return refused(format!(
            "issuer {} is not accepted for {dataset}",
            proof.issuer
        ));
    }
    let issuer = eddsa::point_from_hex(&proof.issuer)
        .ok_or_else(|| DonorError::Refused("the issuer is not a BabyJubJub key".into()))?;
    let latest = cutoff(today, policy.min_age);
    if proof.cutoff > latest {
        return refused(format!(
            "the proof's cutoff {} is later than today's {latest}: donors must be at \
             least {} years old",
            proof.cutoff, policy.min_age
        ));
    }
    let nullifier = Fr::from_be_bytes_mod_order(&proof.nullifier);
    if proof.nullifier.len() != 32 || nullifier.into_bigint().to_bytes_be() != proof.nullifier {
        return refused("the nullifier is not a field element (32 bytes, big-endian)");
    }
    let shape = &donation.shape;
    let segments = segments(shape, donation.rows);
    if proof.proofs.len() != segments.len() {
        return refused(format!(
            "{} rows need {} eligibility proofs (one per {} rows), not {}",
            donation.rows.len(),
            segments.len(),
            shape.rows,
            proof.proofs.len()
        ));
    }
    for (segment, bytes) in segments.iter().zip(&proof.proofs) {
        let instance = EligibilityInstance {
            issuer,
            cutoff: proof.cutoff,
            districts: policy.districts.clone(),
            scope: scope(node_key, dataset),
            records: records_hash(donation.records),
            nullifier,
            rows: eligibility::rows_digest(shape.bound, segment, shape.rows),
        };
        let inputs = instance.public_inputs(shape)?;
        let groth16 = snark::proof_from_bytes(bytes)
            .map_err(|e| DonorError::Refused(format!("malformed proof: {e}")))?;
        if !snark::verify(vk, &inputs, &groth16)? {
            let first = segment.index as usize * shape.rows;
            return refused(format!(
                "the proof of rows {first}..{} does not verify for these records, their {} \
                 values, {dataset}'s districts and this issuer",
                first + segment.rows.len(),
                shape.bound.in_words()
            ));
        }
    }
    Ok(fr_to_hex(&nullifier))
}

/// What a receipt attests of `donation` (the node signs its encoding).
pub fn receipt_body(donation: &Donation) -> pb::ReceiptBody {
    pb::ReceiptBody {
        id: donation.id.clone(),
        dataset: donation.dataset.clone(),
        records_sha256: donation.records_sha256.clone(),
        rows: donation.rows,
        purposes: donation.purposes.clone(),
        donated_at: donation.donated_at,
        status: match donation.status {
            DonationStatus::Pending => pb::DonationStatus::Pending,
            DonationStatus::Sealed => pb::DonationStatus::Sealed,
            DonationStatus::Withdrawn => pb::DonationStatus::Withdrawn,
        } as i32,
        epoch: donation.epoch,
        nullifier: donation.nullifier.clone().unwrap_or_default(),
        organisation: donation.organisation.clone().unwrap_or_default(),
        excluded_from: donation.excluded_from,
        chunks: donation.chunks.clone(),
    }
}

/// What a donation proves of its donor under the dataset's `policy` (nothing is asked
/// when the dataset has none): an eligibility proof, checked with `vk` on `today`, or an
/// accepted organisation's signature on this bulk donation.
pub fn admit(
    policy: Option<&DonorPolicy>,
    vk: impl FnOnce() -> Result<snark::VerifyingKey, DonorError>,
    today: u32,
    node_key: &NodeKey,
    donation: &Submitted,
) -> Result<Admission, DonorError> {
    let dataset = donation.dataset;
    match (policy, donation.eligibility, donation.organisation) {
        (Some(_), Some(_), Some(_)) => Err(DonorError::Missing(
            "send an eligibility proof or an organisation's signature, not both".into(),
        )),
        (Some(policy), Some(proof), None) => {
            let nullifier = check(&vk()?, policy, today, node_key, donation, proof)?;
            Ok(Admission {
                eligible: Some(Eligible {
                    nullifier,
                    proof_sha256: sha256_hex(&proof.proofs.concat()),
                    limit: policy.donations_per_donor,
                }),
                organisation: None,
            })
        }
        (Some(policy), None, Some(signature)) => {
            check_organisation(policy, donation, signature)?;
            Ok(Admission {
                eligible: None,
                organisation: Some(signature.key.clone()),
            })
        }
        (Some(_), None, None) => Err(DonorError::Missing(format!(
            "{dataset} takes donations only with an eligibility proof from a credential of an \
             accepted issuer, or an accepted organisation's signature"
        ))),
        (None, None, None) => Ok(Admission::default()),
        (None, _, _) => Err(DonorError::Missing(format!(
            "{dataset} has no donor policy: send no eligibility proof or signature"
        ))),
    }
}

/// A donation as submitted: the records and what they come with.
pub struct Submitted<'a> {
    /// The dataset.
    pub dataset: &'a str,
    /// The record file's bytes.
    pub records: &'a [u8],
    /// The dataset's eligibility circuit.
    pub shape: EligibilityShape,
    /// The credential-bound values of the file's rows, as the node read them.
    pub rows: &'a [BoundRow],
    /// Purposes consented to.
    pub purposes: &'a [String],
    /// A household's eligibility proof.
    pub eligibility: Option<&'a pb::EligibilityProof>,
    /// An organisation's signature.
    pub organisation: Option<&'a pb::OrganisationSignature>,
}

fn check_organisation(
    policy: &DonorPolicy,
    donation: &Submitted,
    signature: &pb::OrganisationSignature,
) -> Result<(), DonorError> {
    use ed25519_dalek::Verifier;
    if !policy.organisations.contains(&signature.key) {
        return refused(format!(
            "organisation {} is not accepted for {}",
            signature.key, donation.dataset
        ));
    }
    let key = parse_ed25519_key(&signature.key).map_err(DonorError::Refused)?;
    let valid = ed25519_dalek::Signature::from_slice(&signature.signature)
        .map(|s| {
            key.verify(
                &bulk_message(donation.dataset, donation.records, donation.purposes),
                &s,
            )
            .is_ok()
        })
        .unwrap_or(false);
    if !valid {
        return refused(
            "the organisation's signature does not cover these records, this dataset and \
             these purposes",
        );
    }
    Ok(())
}
