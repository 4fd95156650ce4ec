//! The donor commands: `credential keygen|issue` and `donate` (local or `--remote`).

use std::path::Path;

use crate::{
    clients::remote::{DonorProof, Remote, WithdrawWith},
    node::config::Config,
    node::donor,
    node::store::{sha256_hex, Withdrawal},
    shared::credentials::{self, CredentialFile, HolderKey, IssuerKey, OrganisationKey},
    shared::records::Format,
};
use anyhow::{anyhow, bail, Context, Result};
use zkfabric_circuits::eligibility::EligibilityCircuit;
use zkfabric_proto::v1 as pb;

use super::{answer::block_on, open_with};
use crate::node::keys::KeyCache;

/// `zkfabric credential keygen`.
pub fn keygen(issuer: bool, organisation: bool, out: &Path) -> Result<()> {
    if out.exists() {
        bail!("{} exists; a key is never overwritten", out.display());
    }
    if organisation {
        let key = OrganisationKey::generate();
        credentials::write_json(out, &key)?;
        println!(
            "organisation key written to {} (keep it secret)",
            out.display()
        );
        println!(
            "public key, for nodes' [donors.<dataset>] organisations: {}",
            key.public
        );
    } else if issuer {
        let key = IssuerKey::generate();
        credentials::write_json(out, &key)?;
        println!("issuer key written to {} (keep it secret)", out.display());
        println!(
            "public key, for nodes' [donors.<dataset>] issuers: {}",
            key.public
        );
    } else {
        let key = HolderKey::generate();
        credentials::write_json(out, &key)?;
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
    let key: IssuerKey = credentials::read_json(issuer_key)?;
    let credential = key.issue(
        &issuer_key.display().to_string(),
        holder.trim(),
        parse_date(birth_date)?,
        district,
    )?;
    credentials::write_json(out, &credential)?;
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
    /// The files that prove who donates.
    pub proof: ProofFiles<'a>,
}

/// The files a donation proves its donor with.
pub enum ProofFiles<'a> {
    /// None: the dataset has no donor policy.
    None,
    /// A credential and the holder's key.
    Credential {
        /// The credential file.
        credential: &'a Path,
        /// The holder key file.
        holder: &'a Path,
    },
    /// An organisation's key file, for a signed bulk donation.
    Organisation(&'a Path),
}

/// [`ProofFiles`] read.
enum Proof {
    None,
    Credential(CredentialFile, HolderKey),
    Organisation(OrganisationKey),
}

impl Proof {
    fn read(files: &ProofFiles) -> Result<Self> {
        Ok(match files {
            ProofFiles::None => Self::None,
            ProofFiles::Credential { credential, holder } => Self::Credential(
                credentials::read_json(credential)?,
                credentials::read_json(holder)?,
            ),
            ProofFiles::Organisation(key) => Self::Organisation(credentials::read_json(key)?),
        })
    }

    fn for_remote(&self) -> DonorProof<'_> {
        match self {
            Self::None => DonorProof::None,
            Self::Credential(credential, holder) => DonorProof::Credential { holder, credential },
            Self::Organisation(key) => DonorProof::Organisation(key),
        }
    }
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
}

fn print_receipt(body: &pb::ReceiptBody, secret: &str) {
    let status = match pb::DonationStatus::try_from(body.status) {
        Ok(pb::DonationStatus::Sealed) => format!(
            "sealed in epoch {}, chunks {:?}",
            body.epoch.unwrap_or(0),
            body.chunks
        ),
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
    if !body.organisation.is_empty() {
        println!(
            "a bulk donation signed by organisation {}",
            body.organisation
        );
    }
    if !body.nullifier.is_empty() {
        println!(
            "eligibility proven; the node knows you only as nullifier {}",
            body.nullifier
        );
    }
    println!("withdrawal secret (keep it to withdraw while pending): {secret}");
}

/// `zkfabric donate --remote`: a credential proves eligibility against the policy the
/// node publishes, with the proving key it publishes; the signed receipt is checked.
pub fn donate_remote(remote: &Remote, donation: Donation) -> Result<()> {
    let (records, format) = donation.records()?;
    let proof = Proof::read(&donation.proof)?;
    let (body, secret) = block_on(remote.donate(
        donation.dataset,
        format,
        records,
        donation.purposes.clone(),
        proof.for_remote(),
    ))??;
    print_receipt(&body, &secret);
    Ok(())
}

/// `zkfabric donate` into the local data directory, under the local configuration's
/// policy (the checks a node makes, made here).
pub fn donate_local(data_dir: &Path, config: &Config, donation: Donation) -> Result<()> {
    let (records, _) = donation.records()?;
    let mut store = open_with(data_dir, config, donation.dataset, None)?;
    let schema = store.schema(donation.dataset)?;
    let shape = credentials::shape(&schema);
    let keys = KeyCache::new(data_dir).with_mode(config.keys.mode);
    let key = || {
        keys.get::<EligibilityCircuit>(&shape, &shape.description(), true, |_| {
            eprintln!("warning: making a development key for eligibility proofs")
        })
    };
    let today = credentials::today();
    let policy = config.donors.get(donation.dataset);
    let mut rows = Vec::new();
    let (eligibility, organisation) = match Proof::read(&donation.proof)? {
        Proof::None => (None, None),
        Proof::Organisation(org) => (
            None,
            Some(org.sign(donation.dataset, &records, &donation.purposes)?),
        ),
        Proof::Credential(credential, holder) => {
            let published = policy
                .map(|p| donor::policy_to_proto(p, &shape, today))
                .ok_or_else(|| anyhow!("{} takes no eligibility proof", donation.dataset))?;
            let (holding, issuer) = credentials::holding(&holder, &credential, "--credential")?;
            rows = credentials::bound_rows(&schema, donation.file, &donation.purposes)?;
            let proving = credentials::Proving {
                policy: &published,
                pk: &*key()?,
                node_key: &store.node_key(),
                dataset: donation.dataset,
                records: &records,
                rows: &rows,
            };
            let proof = credentials::prove(&proving, holding, issuer)
                .context("no eligibility proof was made")?;
            (Some(proof), None)
        }
    };
    let admission = donor::admit(
        policy,
        || {
            key()
                .map(|k| k.verifying_key().clone())
                .map_err(|e| credentials::DonorError::Refused(e.to_string()))
        },
        today,
        &store.node_key(),
        &donor::Submitted {
            dataset: donation.dataset,
            records: &records,
            shape,
            rows: &rows,
            purposes: &donation.purposes,
            eligibility: eligibility.as_ref(),
            organisation: organisation.as_ref(),
        },
    )?;
    let secret = hex::encode(rand::random::<[u8; 32]>());
    let (stored, _) = store.donate(
        donation.dataset,
        donation.file,
        &donation.purposes,
        &sha256_hex(secret.as_bytes()),
        &admission,
    )?;
    print_receipt(&donor::receipt_body(&stored), &secret);
    Ok(())
}

/// `zkfabric withdraw`: with the receipt's secret, or by proving the holder secret behind
/// the donation's nullifier; on the node (`--remote`) or in the local data directory.
pub fn withdraw(
    data_dir: &Path,
    remote: Option<&Remote>,
    id: &str,
    secret: Option<String>,
    holder_key: Option<std::path::PathBuf>,
) -> Result<()> {
    let holder: Option<HolderKey> = holder_key.map(|p| credentials::read_json(&p)).transpose()?;
    let body = match remote {
        Some(remote) => {
            let with = match (&holder, &secret) {
                (Some(holder), _) => WithdrawWith::Holder(holder),
                (None, Some(secret)) => WithdrawWith::Secret(secret),
                (None, None) => bail!("give --secret or --holder-key"),
            };
            block_on(remote.withdraw(id, with))??
        }
        None => {
            let mut store = super::open(data_dir)?;
            let by = match (&holder, &secret) {
                (Some(holder), _) => {
                    let dataset = store.donation(id)?.dataset;
                    let secret = credentials::fr_from_hex(&holder.secret)
                        .ok_or_else(|| anyhow!("--holder-key: not a holder key"))?;
                    let nullifier = zkfabric_circuits::eligibility::nullifier(
                        secret,
                        credentials::scope(&store.node_key(), &dataset),
                    );
                    Withdrawal::Nullifier(credentials::fr_to_hex(&nullifier))
                }
                (None, Some(secret)) => Withdrawal::Secret(sha256_hex(secret.trim().as_bytes())),
                (None, None) => bail!("give --secret or --holder-key"),
            };
            donor::receipt_body(&store.withdraw(id, &by)?)
        }
    };
    match body.excluded_from {
        Some(epoch) => println!(
            "receipt {} withdrawn: its rows are excluded from epoch {epoch} on and erased \
             (bundles of earlier epochs still verify, but those epochs answer no new query)",
            body.id
        ),
        None => println!(
            "receipt {} withdrawn: its pending rows were dropped",
            body.id
        ),
    }
    Ok(())
}
