//! A household donates a week of hourly readings to a zkfabric node over gRPC: an issuer
//! (the municipality) signs the household's credential, the household proves it is an
//! adult resident without revealing who it is, donates, checks the node's signed receipt,
//! and withdraws the donation by proving the secret behind its nullifier.
//!
//! The example plays the issuer too, so the node must accept the issuer key it makes:
//!
//! ```text
//! cargo run --example donor -- --issuer-key issuer.json     # once: makes the key, prints the policy
//! # add the printed [donors.consumption] table to node.toml, then:
//! cargo run -- --config node.toml serve &
//! cargo run --example donor -- --issuer-key issuer.json http://127.0.0.1:50051
//! ```

use std::path::PathBuf;

use anyhow::{Context, Result};
use zkfabric::circuits::eligibility::age_at;
use zkfabric::{
    clients::remote::{DonorProof, Remote, WithdrawWith},
    shared::credentials::{self, HolderKey, IssuerKey},
};
use zkfabric_proto::v1 as pb;

/// The donor's birth date, as the municipality's credential says it (YYYYMMDD).
const BIRTH_DATE: u32 = 19_830_412;

/// One household's week: 168 hourly readings from Monday 2026-01-05, without a consent
/// column (the donation names its purposes), in district 4 (Daan), each row's age the
/// donor's (born 1983-04-12) at its time: the credential backs both, and the proof checks
/// them row by row.
fn week_of_readings() -> Vec<u8> {
    let mut csv = String::from("time,district,hour,household_size,age,kwh,water,spend\n");
    let monday = 1_767_571_200u64;
    for h in 0..168u64 {
        let hour = h % 24;
        let evening = (17..=21).contains(&hour);
        let kwh = if evening {
            900 + 37 * (h % 5)
        } else {
            250 + 11 * (h % 7)
        };
        let water = if (6..=8).contains(&hour) { 60 } else { 8 };
        let time = monday + 3600 * h;
        let age = age_at(BIRTH_DATE, time).expect("born before 2026");
        csv.push_str(&format!(
            "{time},Daan,{hour},3,{age},{kwh},{water},{}\n",
            if hour == 18 { 2450 } else { 0 }
        ));
    }
    csv.into_bytes()
}

fn status_name(status: i32) -> &'static str {
    match pb::DonationStatus::try_from(status) {
        Ok(pb::DonationStatus::Pending) => "pending",
        Ok(pb::DonationStatus::Sealed) => "sealed",
        Ok(pb::DonationStatus::Withdrawn) => "withdrawn",
        _ => "unknown",
    }
}

#[tokio::main]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let issuer_file = args
        .iter()
        .position(|a| a == "--issuer-key")
        .and_then(|i| args.get(i + 1))
        .map(PathBuf::from)
        .context("--issuer-key FILE: the municipality's key (made on the first run)")?;
    let url = args.iter().find(|a| a.starts_with("http"));

    // The municipality's key, made once; the node's operator lists its public part.
    let issuer: IssuerKey = if issuer_file.exists() {
        credentials::read_json(&issuer_file)?
    } else {
        let key = IssuerKey::generate();
        credentials::write_json(&issuer_file, &key)?;
        key
    };
    let Some(url) = url else {
        println!(
            "issuer key in {}; give the node this policy:\n",
            issuer_file.display()
        );
        println!(
            "[donors.consumption]\nissuers = [\"{}\"]\ndistricts = [4]",
            issuer.public
        );
        return Ok(());
    };

    // The household: a secret only it keeps, and a credential for its commitment.
    let holder = HolderKey::generate();
    let credential = issuer.issue("issuer key", &holder.holder, BIRTH_DATE, 4)?;
    println!(
        "the municipality signed a credential for holder {}...: born 1983-04-12, district 4",
        &holder.holder[..16]
    );

    let node = Remote::connect(url, None).await?;
    let (receipt, _secret) = node
        .donate(
            "consumption",
            pb::RecordFormat::Csv,
            week_of_readings(),
            vec!["energy-research".into(), "public-health".into()],
            DonorProof::Credential {
                holder: &holder,
                credential: &credential,
            },
        )
        .await
        .context("donating")?;
    println!(
        "donated {} rows to {} for {}: receipt {} ({}), signed by the node",
        receipt.rows,
        receipt.dataset,
        receipt.purposes.join(" and "),
        receipt.id,
        status_name(receipt.status)
    );
    println!(
        "the node knows the household only as nullifier {}...",
        receipt.nullifier.get(..16).unwrap_or_default()
    );

    // Changed its mind: withdraw by proving the secret behind the nullifier (the node
    // drops pending rows now, and sealed ones from its next epoch).
    let body = node
        .withdraw(&receipt.id, WithdrawWith::Holder(&holder))
        .await
        .context("withdrawing")?;
    println!("receipt {} is now {}", body.id, status_name(body.status));
    Ok(())
}
