//! A household donates a week of hourly readings to a zkfabric node over gRPC, checks the
//! node's signed receipt, and follows it until its rows are sealed into an epoch (or,
//! with `--withdraw`, takes the donation back while it is still pending).
//!
//! Start a node first (Donor calls need no token):
//!
//! ```text
//! cargo run -- serve &
//! cargo run --example donor -- http://127.0.0.1:50051 [--withdraw]
//! ```

use std::time::Duration;

use anyhow::{Context, Result};
use zkfabric::remote::{verify_receipt, Remote};
use zkfabric_proto::v1 as pb;

/// One household's week: 168 hourly readings from Monday 2026-01-05, without a consent
/// column (the donation names its purposes).
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
        csv.push_str(&format!(
            "{},Daan,{hour},3,41,{kwh},{water},{}\n",
            monday + 3600 * h,
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
    let url = args
        .iter()
        .find(|a| !a.starts_with("--"))
        .cloned()
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let withdraw = args.iter().any(|a| a == "--withdraw");

    let node = Remote::connect(&url, None).await?;
    let node_key = node.node_key().await?;
    println!("node {url}, key {}", hex::encode(node_key.to_bytes()));

    let records = week_of_readings();
    let response = node
        .donor()
        .donate(pb::DonateRequest {
            dataset: "consumption".into(),
            format: pb::RecordFormat::Csv as i32,
            records,
            purposes: vec!["energy-research".into(), "public-health".into()],
            eligibility: None,
        })
        .await
        .context("donating")?
        .into_inner();
    let receipt = response.receipt.context("no receipt")?;
    let body = verify_receipt(&receipt, Some(&node_key))?;
    println!(
        "donated {} rows to {} for {}: receipt {} ({}), signature valid",
        body.rows,
        body.dataset,
        body.purposes.join(" and "),
        body.id,
        status_name(body.status)
    );
    println!(
        "keep the withdrawal secret to take it back: {}",
        response.withdrawal_secret
    );

    if withdraw {
        let receipt = node
            .donor()
            .withdraw(pb::WithdrawRequest {
                id: body.id.clone(),
                withdrawal_secret: response.withdrawal_secret,
            })
            .await
            .context("withdrawing")?
            .into_inner();
        let body = verify_receipt(&receipt, Some(&node_key))?;
        println!("receipt {} is now {}", body.id, status_name(body.status));
        return Ok(());
    }

    // Rows are sealed when a chunk fills (or an administrator seals): follow the receipt.
    for _ in 0..10 {
        let receipt = node
            .donor()
            .get_receipt(pb::GetReceiptRequest {
                id: body.id.clone(),
            })
            .await?
            .into_inner();
        let now = verify_receipt(&receipt, Some(&node_key))?;
        if let Some(epoch) = now.epoch {
            println!(
                "sealed: the rows are committed in epoch {epoch} of {}",
                now.dataset
            );
            return Ok(());
        }
        println!("still {}; checking again in 1 s", status_name(now.status));
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    println!("not sealed yet: the node seals when a chunk fills, or an administrator seals");
    Ok(())
}
