//! The data layer on generated consumption rows: generating them, ingesting a Parquet
//! file (validation, pending files, then sealing every full chunk: fresh salts, Poseidon
//! commitments, chunk files, the signed epoch), and hashing the commitments alone, so the
//! share of ingest-and-seal spent hashing shows.
//!
//! `cargo bench --bench data_layer` (one million rows; `ZKFABRIC_BENCH_ROWS=100000` for a
//! quicker run).

use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::OsRng;
use rayon::prelude::*;
use zkfabric::{
    circuits::commitment::Chunk, node::store::Store, shared::records, shared::synth,
    verifier::schema::Schema,
};

fn rows() -> usize {
    std::env::var("ZKFABRIC_BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Commits every full chunk of `columns` as sealing does, in parallel.
fn commit_all(schema: &Schema, columns: &[Vec<u64>]) -> usize {
    let layout = schema.layout().expect("built-in layout");
    let capacity = schema.chunk_rows;
    let full = columns[0].len() / capacity;
    (0..full).into_par_iter().for_each(|i| {
        let mut chunk: Vec<Vec<u64>> = columns
            .iter()
            .map(|c| c[i * capacity..(i + 1) * capacity].to_vec())
            .collect();
        chunk.push(vec![1; capacity]);
        let sealed =
            Chunk::seal(&layout, schema.id, i as u64, chunk, &mut OsRng).expect("valid chunk");
        std::hint::black_box(sealed.commitment(&layout));
    });
    full
}

fn ingest(schema: &Schema, file: &std::path::Path) -> Duration {
    let dir = tempfile::TempDir::new().expect("temporary directory");
    let mut store = Store::open(dir.path()).expect("store");
    store.register(schema).expect("register");
    let started = Instant::now();
    store
        .ingest(&schema.name, &[file.to_path_buf()], false)
        .expect("ingest");
    started.elapsed()
}

fn data_layer(c: &mut Criterion) {
    let schema = Schema::builtin("consumption").expect("built-in");
    let n = rows();
    let tmp = tempfile::TempDir::new().expect("temporary directory");
    let file = tmp.path().join("consumption.parquet");
    let columns = synth::generate(&schema, n, 1, |_| {}).expect("generate");
    records::write_file(
        &file,
        records::arrow_schema(&schema),
        [records::to_batch(&schema, &columns, 0..n)],
    )
    .expect("write");

    // One run of each, to print the share before criterion's repeated measurements.
    let seal = ingest(&schema, &file);
    let started = Instant::now();
    let chunks = commit_all(&schema, &columns);
    let hashing = started.elapsed();
    println!(
        "{n} consumption rows: ingest and seal {:.2} s ({:.0} rows/s, {chunks} chunks); \
         hashing commitments alone {:.2} s, {:.0}% of it",
        seal.as_secs_f64(),
        n as f64 / seal.as_secs_f64(),
        hashing.as_secs_f64(),
        100.0 * hashing.as_secs_f64() / seal.as_secs_f64()
    );

    let mut group = c.benchmark_group("data_layer");
    group
        .sample_size(10)
        .throughput(Throughput::Elements(n as u64));
    group.bench_function("generate", |b| {
        b.iter(|| synth::generate(&schema, n, 1, |_| {}).expect("generate"))
    });
    group.bench_function("ingest_and_seal", |b| {
        b.iter_custom(|iters| (0..iters).map(|_| ingest(&schema, &file)).sum())
    });
    group.bench_function("hash_commitments", |b| {
        b.iter(|| commit_all(&schema, &columns))
    });
    group.finish();
}

criterion_group!(benches, data_layer);
criterion_main!(benches);
