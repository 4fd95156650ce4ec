//! The donor commands: `credential keygen|issue` and `donate` (local or `--remote`).

use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use zkfabric::{
    config::Config,
    donor::{self, CredentialFile, HolderKey, IssuerKey},
    records::Format,
    remote::{Credentials, Remote},
    store::sha256_hex,
};
use zkfabric_circuits::{eligibility::EligibilityCircuit, snark::ProvingKey};
use zkfabric_proto::v1 as pb;

use super::{answer::block_on, open_with};
use zkfabric::keys::KeyCache;

/// `zkfabric credential keygen`.
pub fn keygen(issuer: bool, out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} exists; a key is never overwritten", out.display());
    }
    if issuer {
        let key = IssuerKey::generate();
        donor::write_json(out, &key)?;
        println!("issuer key written to {} (keep it secret)", out.display());
        println!(
            "public key, for nodes' [donors.<dataset>] issuers: {}",
            key.public
        );
    } else {
        let key = HolderKey::generate();
        donor::write_json(out, &key)?;
        println!("holder key written to {} (keep it secret)", out.display());
        println!(
            "holder commitment, for the issuer's --holder: {}",
            key.holder
        );
    }
    Ok(())
}

/// `YYYY-MM-DD` as `YYYYMMDD`.
fn parse_date(text: &str) -> Result<u32> {
    let parts: Vec<u32> = text
        .split('-')
        .map(|p| {
            p.parse()
                .map_err(|_| anyhow!("--birth-date {text:?}: expected YYYY-MM-DD"))
        })
        .collect::<Result<_>>()?;
    match parts[..] {
        [y, m, d]
            if (1850..=9999).contains(&y) && (1..=12).contains(&m) && (1..=31).contains(&d) =>
        {
            Ok(y * 10_000 + m * 100 + d)
        }
        _ => bail!("--birth-date {text:?}: expected YYYY-MM-DD"),
    }
}

/// `zkfabric credential issue`.
pub fn issue(
    issuer_key: &Path,
    birth_date: &str,
    district: u64,
    holder: &str,
    out: &Path,
) -> Result<()> {
    let key: IssuerKey = donor::read_json(issuer_key)?;
    let credential = key.issue(
        &issuer_key.display().to_string(),
        holder.trim(),
        parse_date(birth_date)?,
        district,
    )?;
    donor::write_json(out, &credential)?;
    println!(
        "credential for holder {}... written to {}: born {birth_date}, district {district}, \
         signed by {}",
        &credential.holder[..16],
        out.display(),
        credential.issuer
    );
    Ok(())
}

/// What `zkfabric donate` was asked.
pub struct Donation<'a> {
    /// The record file.
    pub file: &'a Path,
    /// The dataset.
    pub dataset: &'a str,
    /// Purposes consented to.
    pub purposes: Vec<String>,
    /// The credential and holder key files, when proving eligibility.
    pub credential: Option<(&'a Path, &'a Path)>,
}

impl Donation<'_> {
    fn records(&self) -> Result<(Vec<u8>, pb::RecordFormat)> {
        let format = match Format::of(self.file)? {
            Format::Csv => pb::RecordFormat::Csv,
            Format::Parquet => pb::RecordFormat::Parquet,
            Format::ArrowIpc => pb::RecordFormat::ArrowIpc,
        };
        let bytes =
            std::fs::read(self.file).with_context(|| format!("reading {}", self.file.display()))?;
        Ok((bytes, format))
    }

    /// The eligibility proof for these records, under the policy a node published.
    fn prove(
        &self,
        policy: Option<&pb::DonorPolicy>,
        records: &[u8],
        key: impl FnOnce() -> Result<std::sync::Arc<ProvingKey>>,
    ) -> Result<Option<pb::EligibilityProof>> {
        let Some((credential_file, holder_file)) = self.credential else {
            return Ok(None);
        };
        let policy = policy.ok_or_else(|| {
            anyhow!(
                "{} takes no eligibility proof: drop --credential",
                self.dataset
            )
        })?;
        let holder: HolderKey = donor::read_json(holder_file)?;
        let credential: CredentialFile = donor::read_json(credential_file)?;
        let (holding, issuer) =
            donor::holding(&holder, &credential, &credential_file.display().to_string())?;
        let proof = donor::prove(&*key()?, policy, self.dataset, records, holding, issuer)
            .context("no eligibility proof was made")?;
        Ok(Some(proof))
    }
}

fn print_receipt(body: &pb::ReceiptBody, secret: &str) {
    let status = match pb::DonationStatus::try_from(body.status) {
        Ok(pb::DonationStatus::Sealed) => format!("sealed in epoch {}", body.epoch.unwrap_or(0)),
        Ok(pb::DonationStatus::Withdrawn) => "withdrawn".into(),
        _ => "pending until the next seal".into(),
    };
    println!(
        "donated {} rows to {} for {}: receipt {} ({status})",
        body.rows,
        body.dataset,
        body.purposes.join(", "),
        body.id
    );
    if !body.nullifier.is_empty() {
        println!(
            "eligibility proven; the node knows you only as nullifier {}",
            body.nullifier
        );
    }
    println!("withdrawal secret (keep it to withdraw while pending): {secret}");
}

/// `zkfabric donate --remote`: proves eligibility against the policy the node publishes,
/// with the proving key it publishes, and checks the signed receipt.
pub fn donate_remote(remote: &Remote, donation: Donation) -> Result<()> {
    let (records, format) = donation.records()?;
    let files = donation
        .credential
        .map(|(c, h)| -> Result<_> {
            Ok((
                donor::read_json::<CredentialFile>(c)?,
                donor::read_json::<HolderKey>(h)?,
            ))
        })
        .transpose()?;
    let credentials = files
        .as_ref()
        .map(|(credential, holder)| Credentials { holder, credential });
    let (body, secret) = block_on(remote.donate(
        donation.dataset,
        format,
        records,
        donation.purposes.clone(),
        credentials,
    ))??;
    print_receipt(&body, &secret);
    Ok(())
}

/// `zkfabric donate` into the local data directory, under the local configuration's
/// policy (the checks a node makes, made here).
pub fn donate_local(data_dir: &Path, config: &Config, donation: Donation) -> Result<()> {
    let (records, _) = donation.records()?;
    let mut store = open_with(data_dir, config, donation.dataset, None)?;
    let keys = KeyCache::new(data_dir);
    let key = || {
        keys.get::<EligibilityCircuit>(&donor::SHAPE, &donor::describe_shape(), true, |_| {
            eprintln!("warning: making a development key for eligibility proofs")
        })
        .map_err(anyhow::Error::from)
    };
    let today = donor::today();
    let policy = config.donors.get(donation.dataset);
    let published = policy.map(|p| donor::policy_to_proto(p, today));
    let proof = donation.prove(published.as_ref(), &records, key)?;
    let eligible = donor::eligible(
        policy,
        || {
            Ok(key()
                .map_err(|e| donor::DonorError::Refused(e.to_string()))?
                .verifying_key()
                .clone())
        },
        today,
        donation.dataset,
        &records,
        proof.as_ref(),
    )?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let (stored, _) = store.donate(
        donation.dataset,
        donation.file,
        &donation.purposes,
        &sha256_hex(secret.as_bytes()),
        eligible.as_ref(),
    )?;
    let body = donor::receipt_body(&stored);
    print_receipt(&body, &secret);
    Ok(())
}
