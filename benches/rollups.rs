//! Roll-ups against rows: the query over generated consumption readings, answered
//! from the raw chunks and from a roll-up's cells (district x hour x household size x
//! day, three measures), with what sealing the roll-up costs.
//!
//! Prints one table row: rows, cells, seconds to ingest and seal (cells included), to
//! prove the sealing, to answer from the rows and from the cells (proof cache off for the
//! rows; on for the cells, as a node has it after `seal --prove-rollups`, which keeps the
//! sealing's proof), and to verify the roll-up answer (sealing proofs included).
//!
//! `ZKFABRIC_BENCH_ROWS=16384 cargo bench --profile dev --workspace --bench rollups`
//! (default 16,384 rows; the table in benches/README.md lists the sizes measured).

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
    verifier::{
        schema::Schema,
        verify::{self, KeyPins, Trust},
    },
};

/// The query: evening load of larger households, by district.
const SQL: &str = "SELECT district, COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 17 \
                   AND 21 AND household_size IN ('3','4','5+') GROUP BY district";

fn rows() -> usize {
    std::env::var("ZKFABRIC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16_384)
}

fn rollups(c: &mut Criterion) {
    let n = rows();
    let tmp = tempfile::TempDir::new().expect("temporary directory");
    let data = tmp.path().join("data");
    // The built-in roll-up: district x hour x household size x day, summing kWh, water
    // and spend.
    let schema = Schema::builtin("consumption").expect("built in");
    let rollup = schema.rollups[0].name.clone();
    let columns = synth::generate(&schema, n, 2026, |_| {}).expect("generated");
    let file = tmp.path().join("readings.parquet");
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
        .ingest("consumption", &[file], false)
        .expect("ingested");
    store.seal("consumption").expect("sealed");
    let sealing_time = started.elapsed();
    let manifest = store.manifest("consumption", None).expect("manifest");
    let cells = manifest.manifest.rollups[0].cells();

    let keys = KeyCache::new(&data);
    let cache = ProofCache::open(&data, 1 << 20).expect("cache");
    let uncached = ProofCache::open(&data, 0).expect("no cache");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = Config::default();
    let request = |path| {
        let mut r = Request::new(
            &config,
            SQL.into(),
            Some("energy-research".into()),
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
