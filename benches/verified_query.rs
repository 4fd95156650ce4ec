//! End to end: the demo's three queries over generated consumption readings, answered
//! with proofs (keys cached beforehand), against the same SQL in plain DataFusion over
//! the same epoch, and the offline verification of each bundle.
//!
//! `cargo bench --bench verified_query` runs 100,000 rows (98 chunks of 1024 rows per
//! query and proof run: long on two cores); `ZKFABRIC_BENCH_ROWS=8192` for a quicker run.

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use datafusion::prelude::SessionContext;
use zkfabric::{
    clients::demo,
    node::config::Config,
    node::keys::KeyCache,
    node::proofs::ProofCache,
    node::prove::{self, Request},
    verifier::verify::{self, KeyPins, Trust},
};

fn rows() -> usize {
    std::env::var("ZKFABRIC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000)
}

fn verified_query(c: &mut Criterion) {
    let n = rows();
    let tmp = tempfile::TempDir::new().expect("temporary directory");
    let store = demo::prepare(tmp.path(), n, 2026).expect("demo data");
    let keys = KeyCache::new(&tmp.path().join("data"));
    // Every run proves: the proof cache is off.
    let uncached = ProofCache::open(&tmp.path().join("data"), 0).expect("no cache");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = Config::default();

    let mut group = c.benchmark_group("verified_query");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(1))
        .throughput(Throughput::Elements(n as u64));
    for (n, q) in demo::QUERIES.iter().enumerate() {
        // Consumption is dp: one nonce per question, so that every repetition is the same
        // answer, charged once.
        let request = Request::new(&config, q.sql.into(), Some(q.purpose.into()), None, true)
            .with_privacy(None, None, Some(vec![n as u8; 32]))
            .expect("default privacy terms");
        // One run to make the keys and report the figures before criterion repeats it.
        runtime
            .block_on(prove::answer(&store, &keys, &uncached, &request, |_| ()))
            .expect("keys");
        let started = Instant::now();
        let bundle = runtime
            .block_on(prove::answer(&store, &keys, &uncached, &request, |_| ()))
            .expect("answer");
        let proving = started.elapsed();
        let started = Instant::now();
        let plain_rows = runtime.block_on(plain(&store, q.sql));
        let plain_time = started.elapsed();
        let started = Instant::now();
        verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).expect("verifies");
        let verifying = started.elapsed();
        println!(
            "{}: {n} rows, {} chunk proofs + {} combines: verified answer {:.2} s, plain \
             DataFusion {:.1} ms ({plain_rows} result rows), ratio {:.0}x; verify {:.1} ms",
            q.name,
            bundle.chunk_proofs.len(),
            bundle.combine_proofs.len(),
            proving.as_secs_f64(),
            plain_time.as_secs_f64() * 1000.0,
            proving.as_secs_f64() / plain_time.as_secs_f64(),
            verifying.as_secs_f64() * 1000.0
        );

        group.bench_function(format!("{}/prove", q.name), |b| {
            b.iter(|| {
                runtime
                    .block_on(prove::answer(&store, &keys, &uncached, &request, |_| ()))
                    .expect("answer")
            })
        });
        group.bench_function(format!("{}/plain_datafusion", q.name), |b| {
            b.iter(|| runtime.block_on(plain(&store, q.sql)))
        });
        group.bench_function(format!("{}/verify", q.name), |b| {
            b.iter(|| verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).expect("verifies"))
        });
    }
    group.finish();
}

/// The same SQL (labels as codes) in plain DataFusion over the same epoch: the rows of
/// its answer.
async fn plain(store: &zkfabric::node::store::Store, sql: &str) -> usize {
    let ctx = SessionContext::new();
    zkfabric::node::tables::register_epoch(&ctx, store, "consumption", None).expect("table");
    let schema = store.schema("consumption").expect("schema");
    let sql = zkfabric::node::sql::with_codes(&schema, sql).expect("labels");
    let batches = ctx
        .sql(&sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    batches.iter().map(|b| b.num_rows()).sum()
}

criterion_group!(benches, verified_query);
criterion_main!(benches);
