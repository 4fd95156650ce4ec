//! What a verified answer costs per row on each built-in dataset, for the three kinds of
//! question researchers ask: a filtered SUM (one range and one IN filter), a GROUP BY over
//! a dimension, and a predicate answer.
//!
//! Each dataset gets one chunk of generated rows. For every question the bench prints the
//! chunk circuit's constraints per row, then criterion measures the whole answer (plan,
//! DataFusion partials, the chunk proof, the root combine, the bundle; keys in memory, no
//! proof cache) with rows per second as throughput.
//!
//! `cargo bench --bench datasets` (1,024-row chunks); `ZKFABRIC_BENCH_ROWS=256` for smaller
//! chunks; add `--workspace --profile dev` to reuse the test build.

use std::time::Instant;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use zkfabric::{
    clients::demo,
    node::config::Config,
    node::keys::KeyCache,
    node::proofs::ProofCache,
    node::prove::{self, Request},
    verifier::schema::Schema,
};

/// One question of one dataset.
struct Question {
    dataset: &'static str,
    kind: &'static str,
    sql: &'static str,
    purpose: &'static str,
}

const QUESTIONS: [Question; 9] = [
    Question {
        dataset: "consumption",
        kind: "filtered_sum",
        sql: "SELECT SUM(kwh) FROM consumption \
              WHERE hour BETWEEN 17 AND 21 AND household_size IN ('3', '4', '5+')",
        purpose: "energy-research",
    },
    Question {
        dataset: "consumption",
        kind: "group_by",
        sql: "SELECT district, COUNT(*), SUM(kwh) FROM consumption GROUP BY district",
        purpose: "energy-research",
    },
    Question {
        dataset: "consumption",
        kind: "predicate",
        sql: "SELECT bool_and(age >= 18) FROM consumption WHERE district = 'Daan'",
        purpose: "public-health",
    },
    Question {
        dataset: "signal",
        kind: "filtered_sum",
        sql: "SELECT SUM(devices) FROM signal \
              WHERE hour BETWEEN 7 AND 9 AND zone IN ('Daan', 'Xinyi', 'Wanhua')",
        purpose: "urban-planning",
    },
    Question {
        dataset: "signal",
        kind: "group_by",
        sql: "SELECT zone, COUNT(*), AVG(dwell) FROM signal GROUP BY zone",
        purpose: "urban-planning",
    },
    Question {
        dataset: "signal",
        kind: "predicate",
        sql: "SELECT bool_or(devices >= 5000) FROM signal WHERE zone = 'Xinyi'",
        purpose: "public-health",
    },
    Question {
        dataset: "movement",
        kind: "filtered_sum",
        sql: "SELECT SUM(distance) FROM movement \
              WHERE hour BETWEEN 7 AND 9 AND mode IN ('bike', 'bus', 'metro')",
        purpose: "transport-research",
    },
    Question {
        dataset: "movement",
        kind: "group_by",
        sql: "SELECT mode, COUNT(*), AVG(duration) FROM movement GROUP BY mode",
        purpose: "transport-research",
    },
    Question {
        dataset: "movement",
        kind: "predicate",
        sql: "SELECT bool_and(age >= 18) FROM movement WHERE mode = 'car'",
        purpose: "urban-planning",
    },
];

fn datasets(c: &mut Criterion) {
    let rows: usize = std::env::var("ZKFABRIC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1024);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let config = Config::default();
    let mut group = c.benchmark_group("datasets");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(rows as u64));
    for dataset in ["consumption", "signal", "movement"] {
        let tmp = tempfile::TempDir::new().expect("temporary directory");
        let schema = Schema::builtin(dataset)
            .expect("a built-in dataset")
            .with_chunk_rows(rows)
            .expect("a power of two")
            // Exact answers: these figures compare the chunk circuits across datasets, and
            // the predicates are threshold-only questions.
            .threshold_only()
            .expect("a valid schema");
        let store = demo::prepare_with(tmp.path(), &schema, rows, 2026).expect("rows");
        let data = tmp.path().join("data");
        let keys = KeyCache::new(&data);
        let uncached = ProofCache::open(&data, 0).expect("no cache");
        for q in QUESTIONS.iter().filter(|q| q.dataset == dataset) {
            let request = Request::new(&config, q.sql.into(), Some(q.purpose.into()), None, true);
            let answer = || {
                runtime
                    .block_on(prove::answer(&store, &keys, &uncached, &request, |_| ()))
                    .expect("answer")
            };
            let started = Instant::now();
            let bundle = answer();
            let with_setup = started.elapsed();
            let chunk_key = keys
                .info(&bundle.verifying_keys[0].shape)
                .expect("the chunk key was just made");
            println!(
                "{dataset}/{}: {:.1} constraints per row ({} for {rows} rows); first answer \
                 with key setup {:.1} s",
                q.kind,
                chunk_key.constraints as f64 / rows as f64,
                chunk_key.constraints,
                with_setup.as_secs_f64()
            );
            group.bench_function(format!("{dataset}/{}", q.kind), |b| b.iter(answer));
        }
    }
    group.finish();
}

criterion_group!(benches, datasets);
criterion_main!(benches);
