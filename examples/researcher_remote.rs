//! A researcher asks a node a verified question over gRPC and checks the answer locally:
//! Explain shows what will be proven, Run streams progress and returns the bundle, and
//! the bundle is verified offline against the node's key, the verifying keys the
//! researcher pins by fingerprint and shape (ZKFABRIC_TRUSTED_KEYS, a file of the lines
//! `zkfabric setup` or `zkfabric keys import` printed), and the purpose asked for.
//!
//! ```text
//! zkfabric token --name me --role researcher   # add its lines to node.toml
//! zkfabric --config node.toml serve &
//! ZKFABRIC_TOKEN=zkf_... ZKFABRIC_TRUSTED_KEYS=trusted-keys cargo run --example researcher_remote -- http://127.0.0.1:50051 \
//!     "SELECT district, COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 17 AND 21 GROUP BY district"
//! ```

use anyhow::{bail, Context, Result};
use zkfabric::{
    clients::remote::Remote,
    verifier::verify::{verify, Expected, KeyPins, PinnedKey, Trust},
};
use zkfabric_proto::v1::{self as pb, run_event::Event};

#[tokio::main]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .unwrap_or_else(|| "http://127.0.0.1:50051".into());
    let sql = args.next().unwrap_or_else(|| {
        "SELECT COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 17 AND 21".into()
    });
    let purpose = args.next().unwrap_or_else(|| "energy-research".into());
    let token = std::env::var("ZKFABRIC_TOKEN").context("set ZKFABRIC_TOKEN to your token")?;
    let node = Remote::connect(&url, Some(token)).await?;
    // A fresh nonce keys the public half of the noise on a dp dataset: the node cannot
    // choose the noise, and asking again with this nonce costs no more budget.
    let request = pb::QueryRequest {
        sql: sql.clone(),
        purpose: purpose.clone(),
        nonce: zkfabric::verifier::privacy::fresh_nonce(),
        ..Default::default()
    };

    let plan = node
        .query()
        .explain(node.request(request.clone()))
        .await
        .context("explaining")?
        .into_inner();
    println!(
        "{} epoch {}: {} of {} chunks touched, {} constraints, about {:.0} s",
        plan.dataset,
        plan.epoch,
        plan.chunks_touched,
        plan.chunks_total,
        plan.estimated_constraints.unwrap_or(0),
        plan.estimated_seconds.unwrap_or(0.0)
    );

    let (id, bundle) = node
        .run(request, |event| match event {
            Event::Queued(q) => println!("queued at position {}", q.position),
            Event::Started(s) => println!("proving {} chunks", s.chunks),
            Event::ChunkProven(c) => {
                println!(
                    "  {}/{} chunks, {:.0} rows/s",
                    c.done, c.total, c.rows_per_second
                )
            }
            Event::Combining(_) => println!("combining"),
            Event::Finished(_) => {}
        })
        .await?;
    println!("bundle {id}");

    // Trust nothing the node says about the answer: check the proofs here, against keys
    // pinned by fingerprint and shape (ZKFABRIC_TRUSTED_KEYS: a file of the lines
    // `zkfabric setup` or `keys import` printed), and against what was asked.
    let pins = match std::env::var("ZKFABRIC_TRUSTED_KEYS") {
        Ok(file) => PinnedKey::parse_all(&std::fs::read_to_string(&file)?, &file)
            .map_err(|e| anyhow::anyhow!(e))?,
        Err(_) => bail!(
            "set ZKFABRIC_TRUSTED_KEYS to a trusted-keys file: keys the node itself \
             publishes prove nothing about its answers"
        ),
    };
    // The dataset's public privacy ledger: a noisy answer's charge must stand in it.
    let ledger = node
        .catalog()
        .get_ledger(node.request(pb::GetLedgerRequest {
            dataset: bundle.dataset.clone(),
        }))
        .await?
        .into_inner();
    let trust = Trust {
        node_key: Some(node.node_key().await?),
        keys: KeyPins::Pinned(pins.into_iter().collect()),
        expected: Expected {
            purpose: Some(purpose.clone()),
            ..Expected::default()
        },
        ledgers: Some(vec![ledger]),
    };
    let report = match verify(&bundle, &trust) {
        Ok(report) => report,
        Err(e) => bail!("the bundle does not verify: {e}"),
    };
    println!(
        "verified: {} proofs over all {} chunks of {} epoch {}",
        report.proofs, report.chunks, report.dataset, report.epoch
    );
    println!("{sql}");
    for row in bundle.result.map(|r| r.rows).unwrap_or_default() {
        let key = row.labels.join(" / ");
        if row.suppressed {
            println!("  {key:>12}  suppressed (fewer rows than the node's minimum group size)");
        } else {
            println!(
                "  {key:>12}  count {}  sums {}  holds {}",
                row.count,
                row.sums.join(", "),
                row.holds
            );
        }
    }
    Ok(())
}
