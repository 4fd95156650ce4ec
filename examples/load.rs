//! Load on a node: 16 researchers run a small verified query in a loop while a probe
//! times Explain and Catalog calls; prints the queries per minute the node held and the
//! p50/p99 latencies of the probe's calls under that load.
//!
//! The node runs in this process on a loopback port, over generated consumption readings
//! (default: 512 rows in 64-row chunks, so each answer is 8 chunk proofs and a combine).
//!
//! ```text
//! cargo run --release --example load [-- --clients 16 --seconds 60 --rows 512 --chunk-rows 64]
//! ```

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::{Context, Result};
use tokio::sync::Mutex;
use zkfabric::{
    clients::remote::Remote,
    node::config::{Config, Role, Token},
    node::server,
    node::store::sha256_hex,
};
use zkfabric_proto::v1 as pb;

const SQL: &str = "SELECT COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 17 AND 21";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> Result<()> {
    let clients = arg("--clients", 16) as usize;
    let seconds = arg("--seconds", 60);
    let rows = arg("--rows", 512) as usize;
    let chunk_rows = arg("--chunk-rows", 64) as usize;

    let dir = tempfile::tempdir()?;
    let token = "zkf_load-researcher";
    let mut config = Config::default();
    config.store.chunk_rows = Some(chunk_rows);
    config.query.default_purpose = Some("energy-research".into());
    // A load test asks the same question over and over: answered exactly, so that no
    // privacy budget runs out (a dp node refuses once its budget is spent).
    config.privacy.threshold_only = vec!["consumption".into()];
    config.server.queue_capacity = clients;
    // Every client shares one token here.
    config.server.queries_per_token = clients;
    config.server.tokens = vec![Token {
        name: "load".into(),
        role: Role::Admin,
        sha256: sha256_hex(token.as_bytes()),
    }];
    let schema = config
        .builtin_schema("consumption")
        .context("chunk rows must be a power of two")?;
    drop(zkfabric::clients::demo::prepare_with(
        dir.path(),
        &schema,
        rows,
        7,
    )?);
    let data = dir.path().join("data");

    let listener = server::bind("127.0.0.1:0".parse()?).await?;
    let url = format!("http://{}", listener.local_addr()?);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let node = tokio::spawn(async move {
        server::serve(config, &data, listener, None, async {
            let _ = stopped.await;
        })
        .await
    });

    let admin = Remote::connect(&url, Some(token.into())).await?;
    let setup = Instant::now();
    admin
        .admin()
        .setup(admin.request(pb::QuerySetupRequest {
            sql: SQL.into(),
            ..Default::default()
        }))
        .await?;
    println!(
        "node {url}: {rows} rows in {}-row chunks; keys made in {:.1} s",
        chunk_rows,
        setup.elapsed().as_secs_f64()
    );

    let request = pb::QueryRequest {
        sql: SQL.into(),
        ..Default::default()
    };
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let answered = Arc::new(Mutex::new(Vec::<Duration>::new()));
    let mut researchers = Vec::new();
    for _ in 0..clients {
        let remote = Remote::connect(&url, Some(token.into())).await?;
        let request = request.clone();
        let answered = answered.clone();
        researchers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let started = Instant::now();
                remote.run(request.clone(), |_| {}).await?;
                answered.lock().await.push(started.elapsed());
            }
            Ok::<_, zkfabric::clients::remote::RemoteError>(())
        }));
    }
    let probe = Remote::connect(&url, Some(token.into())).await?;
    let (mut explain, mut catalog) = (Vec::new(), Vec::new());
    let started = Instant::now();
    while Instant::now() < deadline {
        let t = Instant::now();
        probe
            .query()
            .explain(probe.request(request.clone()))
            .await?;
        explain.push(t.elapsed());
        let t = Instant::now();
        probe.datasets().await?;
        catalog.push(t.elapsed());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for r in researchers {
        r.await??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    node.await??;

    let mut answered = answered.lock().await.clone();
    answered.sort();
    explain.sort();
    catalog.sort();
    println!(
        "{clients} clients, {elapsed:.0} s: {} verified answers, {:.1} queries/minute; \
         answer latency p50 {:.0} ms, p99 {:.0} ms",
        answered.len(),
        answered.len() as f64 * 60.0 / elapsed,
        percentile(&answered, 0.5),
        percentile(&answered, 0.99)
    );
    println!(
        "under that load: Explain p50 {:.1} ms, p99 {:.1} ms ({} calls); ListDatasets p50 \
         {:.1} ms, p99 {:.1} ms ({} calls)",
        percentile(&explain, 0.5),
        percentile(&explain, 0.99),
        explain.len(),
        percentile(&catalog, 0.5),
        percentile(&catalog, 0.99),
        catalog.len()
    );
    Ok(())
}
