//! The node commands: `serve`, `token`, and the `--remote` forms of `query`, `verify`,
//! `catalog`, `seal` and `setup`.

use std::{io::Write, net::SocketAddr, path::Path, time::Instant};

use crate::{
    clients::remote::{ClientTls, Remote, RemoteError},
    node::config::Config,
    node::server::{self, auth},
    node::store::sha256_hex,
    verifier::command::VerifyArgs,
};
use anyhow::{bail, Context, Result};
use zkfabric_proto::v1::{self as pb, run_event::Event};

use super::{
    answer::{block_on, chunk_bar, finish_answer, print_explanation, proven_rows, verified},
    print_catalog, print_manifest, CostArgs, TableArgs,
};

/// `zkfabric serve`: serves until SIGTERM or Ctrl-C, over TLS when `[server.tls]` is
/// configured, and in plaintext only on loopback unless `insecure`.
pub fn serve(
    config: Config,
    data_dir: &Path,
    listen: Option<SocketAddr>,
    insecure: bool,
) -> Result<()> {
    let address = listen.unwrap_or(config.server.listen);
    let tls = server::transport_security(&config.server, address, insecure)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    if tls.is_none() && !address.ip().is_loopback() {
        eprintln!(
            "warning: --insecure: serving plaintext gRPC on {address}; tokens and donated \
             records cross the network in clear"
        );
    }
    block_on(async move {
        let listener = server::bind(address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let bound = listener.local_addr()?;
        println!(
            "zkfabric node listening on {scheme}://{bound} (data {}); SIGTERM or Ctrl-C stops it",
            data_dir.display()
        );
        std::io::stdout().flush()?;
        if config.server.tokens.is_empty() {
            eprintln!(
                "warning: no [[server.tokens]] configured: only the Catalog and Donor services \
                 can be used (`zkfabric token` makes one)"
            );
        }
        server::serve(config, data_dir, listener, tls, server::termination()).await?;
        println!("zkfabric node stopped");
        Ok(())
    })?
}

/// `zkfabric token`: a new token (stderr) and the configuration lines that accept it
/// (stdout).
pub fn token(name: &str, role: &str) -> Result<()> {
    if role != "researcher" && role != "admin" {
        bail!("--role: `{role}` is not a role; use researcher or admin");
    }
    let token = auth::new_token();
    // The token on stderr, the configuration lines on stdout: `>> node.toml` keeps only
    // the hash.
    eprintln!("token for {name} (shown once; give it to them for --token or ZKFABRIC_TOKEN):");
    eprintln!("{token}");
    println!("\n[[server.tokens]]");
    println!("name = {name:?}");
    println!("role = \"{role}\"");
    println!("sha256 = \"{}\"", sha256_hex(token.as_bytes()));
    Ok(())
}

/// Connects to the node at `url`, with `tls` for an https:// URL.
pub fn connect(url: &str, token: Option<String>, tls: &ClientTls) -> Result<Remote> {
    Ok(block_on(Remote::connect_with(url, token, tls))??)
}

/// `zkfabric query --explain --remote`.
pub fn explain(remote: &Remote, request: pb::QueryRequest) -> Result<()> {
    print_explanation(&explanation(remote, request)?)
}

/// The node's plan of `request`.
fn explanation(remote: &Remote, request: pb::QueryRequest) -> Result<pb::ExplainResponse> {
    Ok(block_on(async {
        remote
            .query()
            .explain(remote.request(request))
            .await
            .map(|r| r.into_inner())
    })?
    .map_err(RemoteError::from)?)
}

/// The epoch the node would answer `request` over now, asked without the nonce: naming
/// it in the query keeps a node from sealing a fresh noise secret after seeing the nonce.
pub fn current_epoch(remote: &Remote, request: &pb::QueryRequest) -> Result<u64> {
    let without_nonce = pb::QueryRequest {
        nonce: Vec::new(),
        ..request.clone()
    };
    Ok(explanation(remote, without_nonce)?.epoch)
}

/// `zkfabric query --remote`: runs the query on the node with a progress bar, writes the
/// bundle and prints the answer, once the bundle verifies against the request (`verify`:
/// pins and what was asked); a bundle that does not is neither written nor printed.
pub fn query(
    remote: &Remote,
    request: pb::QueryRequest,
    out: &Path,
    json: bool,
    verify: &VerifyArgs,
    table: &TableArgs,
    chart: Option<&Path>,
) -> Result<()> {
    let started = Instant::now();
    let bar = chunk_bar("sent");
    let reused = std::sync::atomic::AtomicU64::new(0);
    let on_event = |event: &Event| match event {
        Event::Queued(q) => bar.set_message(format!("queued at position {}", q.position)),
        Event::Started(s) => {
            bar.set_length(s.chunks);
            bar.set_message("proving");
            bar.reset_eta();
        }
        Event::ChunkProven(c) => {
            reused.store(c.reused, std::sync::atomic::Ordering::Relaxed);
            bar.set_position(c.done)
        }
        Event::Combining(_) => bar.set_message("combining"),
        Event::Finished(_) => {}
    };
    let answer = block_on(remote.run(request, on_event))?;
    bar.finish_and_clear();
    let (id, bundle) = answer?;
    let seconds = started.elapsed().as_secs_f64();
    let report = verified(&bundle, verify, Some(remote))
        .context("the node's answer does not verify against the request: REJECTED")?;
    if !report.keys_pinned {
        table.say(
            "UNVERIFIED   keys not pinned (--allow-unpinned-keys): the node's own keys were used",
        );
    }
    finish_answer(&bundle, out, json, table, chart)?;
    let reused = match reused.into_inner() {
        0 => String::new(),
        n => format!(" ({n} reused from its proof cache)"),
    };
    table.say(&format!(
        "\nthe node proved {} chunk(s){reused} and {} combine(s), {} rows, in {seconds:.1} s \
         (bundle id {id}); verified against the request; anyone can check it again with \
         `zkfabric verify {}`",
        bundle.chunk_proofs.len(),
        bundle.combine_proofs.len(),
        proven_rows(&bundle),
        out.display()
    ));
    Ok(())
}

/// `zkfabric catalog --remote`.
pub fn catalog(remote: &Remote) -> Result<()> {
    let (key, datasets) = block_on(async { (remote.node_key().await, remote.datasets().await) })?;
    print_catalog(&key?, &datasets?);
    Ok(())
}

/// `zkfabric catalog show --remote`.
pub fn catalog_show(remote: &Remote, dataset: &str, epoch: Option<u64>) -> Result<()> {
    let (key, manifest, description) = block_on(async {
        let description = remote
            .catalog()
            .describe_dataset(remote.request(pb::DescribeDatasetRequest {
                dataset: dataset.to_string(),
            }))
            .await;
        (
            remote.node_key().await,
            remote.manifest(dataset, epoch).await,
            description,
        )
    })?;
    let description = description.map_err(RemoteError::from)?.into_inner();
    let schema = crate::verifier::schema::Schema::parse("the node's schema", &description.schema)?;
    let summaries = description.epochs;
    let epochs: Vec<u64> = summaries.iter().map(|e| e.epoch).collect();
    let manifest = manifest?;
    let erased = summaries
        .iter()
        .find(|e| e.epoch == manifest.manifest.epoch)
        .and_then(|e| e.erased.clone());
    print_manifest(&manifest, &schema, &epochs, &key?, erased)
}

/// `zkfabric ledger --remote`: the node key and the ledgers of `dataset`, or of every
/// dataset.
pub fn ledgers(
    remote: &Remote,
    dataset: Option<&str>,
) -> Result<(ed25519_dalek::VerifyingKey, Vec<pb::Ledger>)> {
    block_on(async {
        let names = match dataset {
            Some(d) => vec![d.to_string()],
            None => remote
                .datasets()
                .await?
                .into_iter()
                .map(|d| d.name)
                .collect(),
        };
        let mut ledgers = Vec::new();
        for dataset in names {
            ledgers.push(remote.ledger(&dataset).await?);
        }
        Ok((remote.node_key().await?, ledgers))
    })?
}

/// `zkfabric seal --remote`: an administrator seals on the node.
pub fn seal(remote: &Remote, dataset: &str, prove_rollups: bool) -> Result<()> {
    let sealed = block_on(remote.admin().seal(remote.request(pb::SealRequest {
        dataset: dataset.to_string(),
        prove_rollups,
    })))?
    .map_err(RemoteError::from)?
    .into_inner();
    if sealed.sealed {
        println!(
            "sealed {} rows into {} chunk(s): epoch {} published",
            sealed.rows, sealed.chunks, sealed.epoch
        );
    } else {
        println!("nothing to seal: {dataset} has no pending rows");
    }
    if sealed.sealings_proven > 0 {
        println!("proved {} roll-up sealing(s)", sealed.sealings_proven);
    }
    if sealed.sealings_unproven > 0 {
        println!(
            "{} roll-up sealing(s) not proven yet: answers read the rows until `seal {dataset} \
             --prove-rollups` proves them",
            sealed.sealings_unproven
        );
    }
    Ok(())
}

/// `zkfabric setup --remote`: an administrator makes the node's keys for the queries.
pub fn setup(
    remote: &Remote,
    sql: &[String],
    purpose: Option<String>,
    cost: &CostArgs,
) -> Result<()> {
    println!("# development keys (single-party setup) of the node");
    for text in sql {
        let request = pb::QuerySetupRequest {
            sql: text.clone(),
            purpose: purpose.clone().unwrap_or_default(),
            epsilon: cost.epsilon,
            delta: cost.delta,
        };
        let keys = block_on(remote.admin().setup(remote.request(request)))?
            .map_err(RemoteError::from)?
            .into_inner()
            .keys;
        for line in keys {
            println!("{line}");
        }
    }
    Ok(())
}
