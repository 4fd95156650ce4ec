//! What group slots cost: constraints per row of the chunk circuit, and constraints of
//! the root combine, for a COUNT grouped by 1, 12, 144 and 1,440 group slots (no GROUP
//! BY; district; origin x destination; district x hour x household_size), as the node
//! plans them; the hourly time buckets of a week (168 slots: a division a row); and the
//! filtered SUM of the `datasets` bench, for comparison. With the random-evaluation argument a row pays two constraints per bit of
//! its group key, whatever the number of groups; the root pays per group, once per
//! answer.
//!
//! `cargo bench --bench groups` (1,024-row chunks; `ZKFABRIC_BENCH_ROWS` for another
//! size; `ZKFABRIC_BENCH_MAX_GROUPS=144` to skip the largest). Only constraints are
//! counted: nothing is set up or proven.

use criterion::{criterion_group, criterion_main, Criterion};
use zkfabric::{
    circuits::{aggregate::AggregateCircuit, combine::CombineCircuit, snark, snark::Circuit},
    node::sql,
    verifier::query::{Limits, MAX_GROUPS},
    verifier::schema::Schema,
};

/// (dataset, purpose, question).
const QUESTIONS: [(&str, &str, &str); 6] = [
    (
        "consumption",
        "energy-research",
        "SELECT COUNT(*) FROM consumption",
    ),
    (
        "consumption",
        "energy-research",
        "SELECT district, COUNT(*) FROM consumption GROUP BY district",
    ),
    (
        "movement",
        "transport-research",
        "SELECT origin, destination, COUNT(*) FROM movement GROUP BY origin, destination",
    ),
    (
        "consumption",
        "energy-research",
        "SELECT district, hour, household_size, COUNT(*) FROM consumption \
         GROUP BY district, hour, household_size",
    ),
    // Time buckets: the hours of one week, a range filter on time beside them.
    (
        "consumption",
        "energy-research",
        "SELECT date_trunc('hour', to_timestamp(time)), COUNT(*) FROM consumption \
         WHERE time >= 1767571200 AND time < 1768176000 GROUP BY 1",
    ),
    // The filtered SUM of the `datasets` bench: one range and one IN filter, no grouping.
    (
        "consumption",
        "energy-research",
        "SELECT SUM(kwh) FROM consumption \
         WHERE hour BETWEEN 17 AND 21 AND household_size IN ('3', '4', '5+')",
    ),
];

fn groups(_: &mut Criterion) {
    let env = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let rows = env("ZKFABRIC_BENCH_ROWS", 1024);
    let max_groups = env("ZKFABRIC_BENCH_MAX_GROUPS", MAX_GROUPS);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let limits = Limits {
        max_groups: MAX_GROUPS,
        ..Limits::default()
    };
    println!("chunk and root circuits, {rows}-row chunks (exact answers):");
    for (dataset, purpose, sql) in QUESTIONS {
        let schema = Schema::builtin(dataset)
            .expect("a built-in dataset")
            .with_chunk_rows(rows)
            .and_then(|s| s.threshold_only())
            .expect("a power of two");
        let query = runtime
            .block_on(sql::lower_without_data(&schema, sql, purpose))
            .expect("a provable query");
        let circuits = query.circuit(&schema, &limits, None).expect("shapes");
        let g = circuits.root_shape.groups();
        if g > max_groups {
            println!("  G = {g:>5}: skipped (ZKFABRIC_BENCH_MAX_GROUPS = {max_groups})");
            continue;
        }
        let blank = AggregateCircuit::blank(&circuits.chunk_shape).expect("a blank circuit");
        let chunk = snark::ConstraintMatrices::of(blank).expect("matrices");
        let blank = CombineCircuit::blank(&circuits.root_shape).expect("a blank root");
        let root = snark::ConstraintMatrices::of(blank).expect("matrices");
        println!(
            "  G = {g:>5}, key {:>2} bits: chunk {:>9} constraints, {:>6.1} per row; \
             root {:>7}  ({sql})",
            circuits.chunk_shape.key_width(),
            chunk.num_constraints,
            chunk.num_constraints as f64 / rows as f64,
            root.num_constraints,
        );
    }
}

criterion_group!(benches, groups);
criterion_main!(benches);
