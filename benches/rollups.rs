//! Roll-ups against rows: a query over a generated built-in dataset, answered from the raw
//! chunks and from the dataset's built-in roll-up, with what sealing the roll-up costs.
//! Two workloads: consumption (the default: evening load of larger households by
//! district, from district x hour x household size x day) and movement (the
//! origin-destination matrix, from origin x destination x mode x hour).
//!
//! Prints one table row: rows, cells, seconds to ingest and seal (cells included), to
//! prove the sealing, to answer from the rows and from the cells (proof cache off for the
//! rows; on for the cells, as a node has it after `seal --prove-rollups`, which keeps the
//! sealing's proof), and to verify the roll-up answer (sealing proofs included).
//!
//! `ZKFABRIC_BENCH_ROWS=16384 ZKFABRIC_BENCH_DATASET=consumption cargo bench --profile dev
//! --workspace --bench rollups` (default 16,384 consumption rows; the tables in
//! benches/README.md list the sizes measured).

use std::{
    sync::atomic::AtomicBool,
    time::{Duration, Instant},
};

use criterion::{criterion_group, criterion_main, Criterion};
use zkfabric::{
    node::{
        config::Config,
        keys::KeyCache,
        proofs::ProofCache,
        prove::{self, LoadedSealing, QueryPath, Request, Sealing},
        store::Store,
    },
    shared::{records, synth},
    verifier::verify::{self, KeyPins, Trust},
};

/// One measured query: the built-in dataset it reads, its SQL, the purpose it is asked
/// under, and whether the dataset is registered threshold-only (exact answers with k, as
/// `[privacy] threshold_only` registers it) rather than answered with differential
/// privacy.
struct Workload {
    dataset: &'static str,
    sql: &'static str,
    purpose: &'static str,
    threshold_only: bool,
}

/// The workloads `ZKFABRIC_BENCH_DATASET` picks from, by dataset name.
const WORKLOADS: [Workload; 2] = [
    // Evening load of larger households, by district.
    Workload {
        dataset: "consumption",
        sql: "SELECT district, COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 17 AND \
              21 AND household_size IN ('3','4','5+') GROUP BY district",
        purpose: "energy-research",
        threshold_only: false,
    },
    // The origin-destination matrix: trips and their total minutes between every pair of
    // zones. Exact: at the default epsilon a noisy 144-group matrix draws more noise coins
    // than a node proves (`[privacy] max_root_coins`), on either path alike.
    Workload {
        dataset: "movement",
        sql: "SELECT origin, destination, COUNT(*), SUM(duration) FROM movement GROUP BY \
              origin, destination",
        purpose: "transport-research",
        threshold_only: true,
    },
];

/// The workload `ZKFABRIC_BENCH_DATASET` names (default consumption).
fn workload() -> &'static Workload {
    let name = std::env::var("ZKFABRIC_BENCH_DATASET").unwrap_or_else(|_| "consumption".into());
    WORKLOADS
        .iter()
        .find(|w| w.dataset == name)
        .unwrap_or_else(|| panic!("ZKFABRIC_BENCH_DATASET: no workload for `{name}`"))
}

fn rows() -> usize {
    std::env::var("ZKFABRIC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_384)
}

fn rollups(c: &mut Criterion) {
    let n = rows();
    let workload = workload();
    let tmp = tempfile::TempDir::new().expect("temporary directory");
    let data = tmp.path().join("data");
    let mut config = Config::default();
    if workload.threshold_only {
        config.privacy.threshold_only = vec![workload.dataset.into()];
    }
    let schema = config.builtin_schema(workload.dataset).expect("built in");
    let rollup = schema.rollups[0].name.clone();
    let columns = synth::generate(&schema, n, 2026, |_| {}).expect("generated");
    let file = tmp.path().join("records.parquet");
    records::write_file(
        &file,
        records::arrow_schema(&schema),
        [records::to_batch(&schema, &columns, 0..n)],
    )
    .expect("written");
    let mut store = Store::open(&data).expect("store");
    store.register(&schema).expect("registered");
    let started = Instant::now();
    store
        .ingest(workload.dataset, &[file], false)
        .expect("ingested");
    store.seal(workload.dataset).expect("sealed");
    let sealing_time = started.elapsed();
    let manifest = store.manifest(workload.dataset, None).expect("manifest");
    let cells = manifest.manifest.rollups[0].cells();

    let keys = KeyCache::new(&data);
    let cache = ProofCache::open(&data, 1 << 20).expect("cache");
    let uncached = ProofCache::open(&data, 0).expect("no cache");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let request = |path| {
        let mut r = Request::new(
            &config,
            workload.sql.into(),
            Some(workload.purpose.into()),
            None,
            true,
        )
        .with_privacy(None, None, Some(vec![7; 32]))
        .expect("default privacy terms");
        r.path = path;
        r
    };
    // Keys first (both paths', the sealing's included), outside every figure.
    for path in [QueryPath::Raw, QueryPath::Rollup] {
        let ctx = datafusion::prelude::SessionContext::new();
        let (plan, _) = runtime
            .block_on(prove::plan(&ctx, &store, &keys, &cache, &request(path)))
            .expect("planned");
        prove::setup_keys(&keys, &plan).expect("keys");
    }

    // The sealing's proofs, as `zkfabric seal` makes them.
    let started = Instant::now();
    let cancel = AtomicBool::new(false);
    for position in 0..manifest.manifest.rollups[0].sealings.len() {
        let loaded = LoadedSealing::load(&store, &manifest, &rollup, position).expect("loaded");
        Sealing {
            keys: &keys,
            proofs: &cache,
            setup: true,
            fan_in: config.query.combine_inputs,
            cancel: &cancel,
        }
        .prove(&loaded, |_| ())
        .expect("sealing proven");
    }
    let sealing_proofs = started.elapsed();
    // Once proven, auto takes the roll-up.
    let ctx = datafusion::prelude::SessionContext::new();
    let (auto, _) = runtime
        .block_on(prove::plan(
            &ctx,
            &store,
            &keys,
            &cache,
            &request(QueryPath::Auto),
        ))
        .expect("planned");
    assert_eq!(auto.rollup.as_ref(), Some(&rollup), "{}", auto.path_reason);

    let answer = |path, proofs: &ProofCache| {
        let started = Instant::now();
        let bundle = runtime
            .block_on(prove::answer(&store, &keys, proofs, &request(path), |_| ()))
            .expect("answer");
        (bundle, started.elapsed())
    };
    let (raw, raw_time) = answer(QueryPath::Raw, &uncached);
    let (rolled, rolled_time) = answer(QueryPath::Rollup, &cache);
    assert_eq!(raw.result, rolled.result, "both paths give one answer");
    let started = Instant::now();
    verify::verify(&rolled, &Trust::keys(KeyPins::Unpinned)).expect("verifies");
    let verifying = started.elapsed();
    println!(
        "| {n} | {cells} | {:.1} | {:.1} ({:.0} rows/s) | {:.1} ({} chunks) | {:.1} ({} cell \
         chunks) | {:.2} |",
        sealing_time.as_secs_f64(),
        sealing_proofs.as_secs_f64(),
        n as f64 / sealing_proofs.as_secs_f64(),
        raw_time.as_secs_f64(),
        raw.chunk_proofs.len(),
        rolled_time.as_secs_f64(),
        rolled.chunk_proofs.len(),
        verifying.as_secs_f64()
    );

    let mut group = c.benchmark_group("rollups");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(1));
    group.bench_function("answer from the roll-up", |b| {
        b.iter(|| answer(QueryPath::Rollup, &cache))
    });
    group.bench_function("verify the roll-up answer", |b| {
        b.iter(|| verify::verify(&rolled, &Trust::keys(KeyPins::Unpinned)).expect("verifies"))
    });
    group.finish();
}

criterion_group!(benches, rollups);
criterion_main!(benches);
