//! Verified SQL on a tiny consumption dataset (8-row chunks): lowering, proving, the
//! bundle, and the offline verifier on what the node answers. Tampered bundles are the
//! verifier crate's tests (`verifier/tests/verify.rs`), over bundles a node made.

use std::path::Path;

mod common;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use zkfabric::{
    node::keys::KeyCache,
    node::proofs::ProofCache,
    node::prove::{self, Progress, Request},
    node::sql,
    shared::records,
    verifier::bundle::Bundle,
    verifier::query::{Aggregand, Limits, ProvableQuery, Test},
    verifier::schema::Schema,
    verifier::verify::{self, KeyPins, PinnedKey, Trust},
};

/// The built-in consumption schema with 8-row chunks, so that setup is instant, answered
/// exactly (threshold-only): these tests compare answers with an independent engine.
/// Noisy answers are `tests/privacy.rs`'.
fn tiny() -> Schema {
    Schema::builtin("consumption")
        .unwrap()
        .with_chunk_rows(8)
        .unwrap()
        .threshold_only()
        .unwrap()
}

/// A proving node and the rows it holds.
struct Node {
    base: common::ProvingNode,
    columns: Vec<Vec<u64>>,
}

impl std::ops::Deref for Node {
    type Target = common::ProvingNode;
    fn deref(&self) -> &common::ProvingNode {
        &self.base
    }
}

impl std::ops::DerefMut for Node {
    fn deref_mut(&mut self) -> &mut common::ProvingNode {
        &mut self.base
    }
}

/// Rows with every column drawn independently (the generator's rows come a household at a
/// time, which makes small samples uniform), one hour apart.
fn random_rows(schema: &Schema, rows: usize) -> Vec<Vec<u64>> {
    let mut rng = ChaCha20Rng::seed_from_u64(rows as u64);
    let mut draw = |column: &zkfabric::verifier::schema::Column, row: usize| -> u64 {
        match column.name.as_str() {
            "time" => 1_767_225_600 + 3600 * row as u64,
            "age" => rng.gen_range(10..90),
            _ => rng.gen_range(0..=column.max_code().min(4_999)),
        }
    };
    let mut columns = vec![Vec::new(); schema.declared().len()];
    for row in 0..rows {
        for (c, column) in schema.declared().iter().enumerate() {
            columns[c].push(draw(column, row));
        }
    }
    columns
}

/// A node holding `rows` random rows, sealed in one epoch.
fn node(rows: usize) -> Node {
    let schema = tiny();
    let columns = random_rows(&schema, rows);
    node_of(&schema, columns)
}

/// A node holding `columns` of `schema`'s dataset, sealed in one epoch.
fn node_of(schema: &Schema, columns: Vec<Vec<u64>>) -> Node {
    Node {
        base: common::ProvingNode::new(schema, &columns),
        columns,
    }
}

/// Seals eight more random rows (those after the first `rows`) into a new epoch.
fn seal_eight_more(node: &mut Node, rows: usize) {
    let schema = tiny();
    let more: Vec<Vec<u64>> = random_rows(&schema, rows + 8)
        .into_iter()
        .map(|c| c[rows..].to_vec())
        .collect();
    let file = node.dir.path().join("more.parquet");
    records::write_file(
        &file,
        records::arrow_schema(&schema),
        [records::to_batch(&schema, &more, 0..8)],
    )
    .unwrap();
    node.store.ingest("consumption", &[file], false).unwrap();
    node.store.seal("consumption").unwrap();
}

fn limits() -> Limits {
    Limits {
        in_list: 4,
        max_groups: 64,
        combine_inputs: 3,
        min_group_size: 3,
    }
}

fn request(sql: &str, purpose: &str) -> Request {
    Request {
        sql: sql.into(),
        purpose: purpose.into(),
        epoch: None,
        limits: limits(),
        setup: true,
        cost: None,
        nonce: None,
        privacy: Default::default(),
        path: Default::default(),
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(f)
}

fn answer(node: &Node, sql: &str, purpose: &str) -> Bundle {
    answer_with(node, &node.proofs, sql, purpose).0
}

/// The answer with the proofs kept in `proofs`, and how many chunk proofs it reused.
fn answer_with(node: &Node, proofs: &ProofCache, sql: &str, purpose: &str) -> (Bundle, usize) {
    let reused = std::sync::atomic::AtomicUsize::new(0);
    let bundle = block_on(prove::answer(
        &node.store,
        &node.keys,
        proofs,
        &request(sql, purpose),
        |p| {
            if let Progress::ChunkProven { reused: true } = p {
                reused.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        },
    ))
    .unwrap();
    (bundle, reused.into_inner())
}

/// The answer under `limits` (wider than the tests' default), or a panic naming `sql`.
fn answer_under(node: &Node, limits: Limits, sql: &str, purpose: &str) -> Bundle {
    block_on(prove::answer(
        &node.store,
        &node.keys,
        &node.proofs,
        &Request {
            limits,
            ..request(sql, purpose)
        },
        |_| (),
    ))
    .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

fn lower(sql: &str) -> Result<ProvableQuery, sql::QueryError> {
    block_on(sql::lower_without_data(&tiny(), sql, "energy-research"))
}

fn column(name: &str) -> usize {
    tiny().column(name).unwrap().0
}

#[test]
fn a_grouped_sum_is_proven_and_matches_the_rows() {
    // 96 rows: 12 chunks, so K = 3 needs two levels of subtotals (4, then 2) below the root.
    let node = node(96);
    let bundle = answer(
        &node,
        "SELECT district, COUNT(*) AS n, SUM(kwh), AVG(kwh) FROM consumption \
         WHERE hour BETWEEN 6 AND 20 GROUP BY district",
        "energy-research",
    );
    assert_eq!(bundle.chunk_proofs.len(), 12);
    assert_eq!(bundle.combine_proofs.len(), 4 + 2 + 1);
    let report = verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    assert_eq!(report.chunks, 12);
    assert_eq!(report.proofs, 12 + 7);

    // The answer is what the rows say, with groups below k = 3 suppressed.
    let c = &node.columns;
    let (district, hour, consent, kwh) = (
        column("district"),
        column("hour"),
        column("consent"),
        column("kwh"),
    );
    let rows = bundle.result.as_ref().unwrap().rows.clone();
    assert_eq!(rows.len(), 12, "one row per district label");
    let (mut released, mut suppressed) = (0, 0);
    for row in &rows {
        let selected: Vec<usize> = (0..96)
            .filter(|&r| {
                c[district][r] == row.key
                    && (6..=20).contains(&c[hour][r])
                    && c[consent][r] >> 2 & 1 == 1
            })
            .collect();
        if selected.len() < 3 {
            suppressed += 1;
            assert!(row.suppressed, "{row:?}");
            assert_eq!((row.count, row.sums.len()), (0, 0));
        } else {
            released += 1;
            assert!(!row.suppressed);
            assert_eq!(row.count, selected.len() as u64);
            let sum: u64 = selected.iter().map(|&r| c[kwh][r]).sum();
            assert_eq!(row.sums, [sum.to_string()]);
        }
        let label = tiny().column("district").unwrap().1.labels[row.key as usize].clone();
        assert_eq!(row.labels, [label]);
    }
    assert!(
        released > 0 && suppressed > 0,
        "{released} released, {suppressed} suppressed"
    );
}

#[test]
fn predicates_are_answered_without_counts() {
    let node = node(40);
    let ages = &node.columns[column("age")];
    let consent = &node.columns[column("consent")];
    // public-health is bit 0 of the consent column.
    let counted: Vec<u64> = (0..40)
        .filter(|&r| consent[r] & 1 == 1)
        .map(|r| ages[r])
        .collect();
    let (young, old) = (
        *counted.iter().min().unwrap(),
        *counted.iter().max().unwrap(),
    );
    let mut answers = Vec::new();
    for (sql, truth) in [
        (
            format!("SELECT bool_and(age >= {young}) FROM consumption"),
            true,
        ),
        (
            format!("SELECT bool_and(age > {young}) FROM consumption"),
            false,
        ),
        (
            format!("SELECT bool_or(age >= {old}) FROM consumption"),
            true,
        ),
        (
            format!("SELECT bool_or(age > {old}) FROM consumption"),
            false,
        ),
        (
            format!("SELECT bool_and(age <= {old}) FROM consumption"),
            true,
        ),
        (
            format!("SELECT bool_or(age = {young}) FROM consumption"),
            true,
        ),
    ] {
        let bundle = answer(&node, &sql, "public-health");
        verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
        let row = &bundle.result.as_ref().unwrap().rows[0];
        assert_eq!(
            (row.holds, row.suppressed, row.count),
            (truth, false, 0),
            "{sql}"
        );
        answers.push(row.holds);
    }
    assert!(answers.contains(&true) && answers.contains(&false));
}

/// The keys of `bundles`, pinned by fingerprint and shape as `setup` prints them.
fn pins(bundles: &[&Bundle]) -> KeyPins {
    KeyPins::Pinned(
        bundles
            .iter()
            .flat_map(|b| &b.verifying_keys)
            .map(|k| PinnedKey {
                fingerprint: k.fingerprint.clone(),
                shape: k.shape.clone(),
            })
            .collect(),
    )
}

/// Pinned keys and the node's key: what a careful verifier passes.
fn pinned(node: &Node, bundles: &[&Bundle]) -> Trust {
    Trust {
        node_key: Some(node.store.node_key()),
        ..Trust::keys(pins(bundles))
    }
}

#[test]
fn every_chunk_is_proven_whatever_range_the_query_names() {
    let node = node(48);
    let time = &node.columns[column("time")];
    // Rows are in time order: this window lies inside chunk 2's hours. Every chunk is
    // proven all the same: nothing unproven (a time window) excuses a chunk.
    let (lo, hi) = (time[17], time[18]);
    let sql = format!("SELECT COUNT(*) FROM consumption WHERE time >= {lo} AND time <= {hi}");
    let bundle = answer(&node, &sql, "public-health");
    let proven: Vec<u64> = bundle.chunk_proofs.iter().map(|p| p.chunk).collect();
    assert_eq!(proven, (0..6).collect::<Vec<_>>());
    let trust = pinned(&node, &[&bundle]);
    verify::verify(&bundle, &trust).unwrap();
}

#[test]
fn the_sql_text_must_mean_the_proven_query() {
    let q = lower("SELECT district, COUNT(*), SUM(kwh) FROM consumption WHERE household_size IN ('1', '2') GROUP BY district").unwrap();
    let other = lower("SELECT district, COUNT(*), SUM(kwh) FROM consumption WHERE household_size IN ('1', '3') GROUP BY district").unwrap();
    assert_ne!(q, other);
    let renamed = lower("SELECT district, COUNT(*) AS c, SUM(kwh) FROM consumption WHERE household_size IN ('1', '2') GROUP BY district").unwrap();
    assert_ne!(q, renamed, "output names are part of the query");
}

#[test]
fn equivalent_sql_lowers_to_one_canonical_query() {
    let between = lower("SELECT COUNT(*) FROM consumption WHERE hour BETWEEN 7 AND 9").unwrap();
    for sql in [
        "SELECT COUNT(*) FROM consumption WHERE hour >= 7 AND hour <= 9",
        "SELECT COUNT(*) FROM consumption WHERE 7 <= hour AND hour < 10",
        "SELECT COUNT(*) FROM consumption WHERE hour > 6 AND hour BETWEEN 0 AND 9",
    ] {
        assert_eq!(lower(sql).unwrap().filters, between.filters, "{sql}");
    }
    assert_eq!(between.filters[0].test, Test::Range { lo: 7, hi: 9 });
    let labels =
        lower("SELECT COUNT(*) FROM consumption WHERE district IN ('Daan', 'Xinyi')").unwrap();
    let ors =
        lower("SELECT COUNT(*) FROM consumption WHERE district = 'Daan' OR district = 'Xinyi'")
            .unwrap();
    assert_eq!(labels.filters, ors.filters);
    assert_eq!(labels.filters[0].test, Test::In(vec![4, 6]));
    // Household-size labels look like numbers: a quoted label is the label.
    let size = lower("SELECT COUNT(*) FROM consumption WHERE household_size = '1'").unwrap();
    assert_eq!(size.filters[0].test, Test::Range { lo: 0, hi: 0 });
    // Casts that keep every value are the column itself.
    let widened =
        lower("SELECT COUNT(*) FROM consumption WHERE CAST(hour AS BIGINT) BETWEEN 7 AND 9");
    assert_eq!(widened.unwrap().filters, between.filters);
    // `<>`, NOT IN, NOT and OR on one column come to the set of codes they allow.
    let not_daan = lower("SELECT COUNT(*) FROM consumption WHERE district <> 'Daan'").unwrap();
    for sql in [
        "SELECT COUNT(*) FROM consumption WHERE NOT (district = 'Daan')",
        "SELECT COUNT(*) FROM consumption WHERE district NOT IN ('Daan')",
        "SELECT COUNT(*) FROM consumption WHERE district < 'Daan' OR district > 'Daan'",
    ] {
        assert_eq!(lower(sql).unwrap().filters, not_daan.filters, "{sql}");
    }
    assert_eq!(
        not_daan.filters[0].test,
        Test::Ranges(vec![(0, 3), (5, 11)])
    );
    let night = lower("SELECT COUNT(*) FROM consumption WHERE hour < 6 OR hour > 22").unwrap();
    for sql in [
        "SELECT COUNT(*) FROM consumption WHERE hour NOT BETWEEN 6 AND 22",
        "SELECT COUNT(*) FROM consumption WHERE NOT (hour >= 6 AND hour <= 22)",
        "SELECT COUNT(*) FROM consumption WHERE (hour < 3 OR hour > 22) OR hour IN (3, 4, 5)",
    ] {
        assert_eq!(lower(sql).unwrap().filters, night.filters, "{sql}");
    }
    assert_eq!(night.filters[0].test, Test::Ranges(vec![(0, 5), (23, 23)]));
    // A few scattered codes are a list; a condition that allows every code, no filter.
    let scattered =
        lower("SELECT COUNT(*) FROM consumption WHERE hour = 1 OR hour = 3 OR hour = 5").unwrap();
    assert_eq!(scattered.filters[0].test, Test::In(vec![1, 3, 5]));
    // An IN filter has the next power of two of slots: 3 codes take 4, 9 take 16; a node
    // takes lists up to its in_list_items (64 at most).
    use zkfabric::circuits::aggregate::FilterShape;
    let slots = |sql: &str, in_list: usize| {
        let shape = lower(sql)
            .unwrap()
            .circuit(
                &tiny(),
                &Limits {
                    in_list,
                    ..limits()
                },
                None,
            )
            .map(|c| c.chunk_shape.filters[0]);
        shape.map_err(|e| e.to_string())
    };
    let nine = "SELECT COUNT(*) FROM consumption WHERE hour IN (1, 3, 5, 7, 9, 11, 13, 15, 17)";
    assert_eq!(
        slots(nine, 64),
        Ok(FilterShape::In {
            column: column("hour"),
            len: 16
        })
    );
    assert!(slots(nine, 8)
        .unwrap_err()
        .contains("has 9 values; at most 8"));
    let always = lower("SELECT COUNT(*) FROM consumption WHERE hour < 9 OR hour >= 9").unwrap();
    assert!(always.filters.is_empty());
    let avg = lower("SELECT AVG(kwh) FROM consumption").unwrap();
    assert_eq!(avg.aggregand, Aggregand::Sum(vec!["kwh".into()]));
    // Several measures: each once, in order of first mention; AVG shares SUM's.
    let several =
        lower("SELECT SUM(water), AVG(kwh), SUM(kwh), COUNT(*) FROM consumption").unwrap();
    assert_eq!(
        several.aggregand,
        Aggregand::Sum(vec!["water".into(), "kwh".into()])
    );
}

#[test]
fn unsupported_sql_is_refused_naming_the_construct() {
    for (sql, construct) in [
        ("SELECT * FROM consumption", "raw rows"),
        ("SELECT district FROM consumption", "raw rows"),
        (
            "SELECT COUNT(*) FROM consumption WHERE hour = 7 OR district = 'Daan'",
            "OR",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE (hour = 7 OR hour = 9) OR kwh + 1 > 3",
            "arithmetic",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE kwh NOT IN (1, 3, 5, 7, 9)",
            "a union of at most 4",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE hour + 1 > 3",
            "arithmetic",
        ),
        ("SELECT SUM(kwh + water) FROM consumption", "arithmetic"),
        (
            "SELECT COUNT(*) FROM consumption a JOIN consumption b ON a.hour = b.hour",
            "join",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE hour IN (SELECT hour FROM consumption)",
            "subquery",
        ),
        (
            "SELECT COUNT(*) FROM consumption GROUP BY district, hour, household_size, age",
            "GROUP BY of 4 columns (at most 3)",
        ),
        (
            "SELECT COUNT(*) FROM consumption GROUP BY kwh",
            "GROUP BY `kwh`",
        ),
        (
            "SELECT SUM(kwh), SUM(water), SUM(spend), AVG(age), SUM(time) FROM consumption",
            "AVG(age) of a attribute column",
        ),
        (
            "SELECT bool_or(age > 60), SUM(kwh) FROM consumption",
            "a predicate beside COUNT, SUM or AVG",
        ),
        (
            "SELECT MAX(kwh) FROM consumption",
            "MAX(...): it releases one person's value",
        ),
        (
            "SELECT median(kwh) FROM consumption",
            "MEDIAN(...): it releases one person's value",
        ),
        (
            "SELECT COUNT(DISTINCT district) FROM consumption",
            "DISTINCT",
        ),
        (
            "SELECT bool_and(age BETWEEN 18 AND 60) FROM consumption",
            "one comparison",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE district = 'Atlantis'",
            "no label \"Atlantis\"",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE consent = 1",
            "--purpose",
        ),
        ("DELETE FROM consumption", "DELETE"),
        // Casts that change values are refused by name, not proven as the bare column.
        (
            "SELECT COUNT(*) FROM consumption WHERE CAST(kwh AS TINYINT) > 5",
            "the cast of `kwh` to Int8",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE CAST(time AS SMALLINT) >= 0",
            "the cast of `time` to Int16",
        ),
        (
            "SELECT SUM(CAST(kwh AS TINYINT)) FROM consumption",
            "the cast of `kwh` to Int8",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE CAST(hour AS VARCHAR) = '5'",
            "the cast of `hour` to Utf8",
        ),
        // A labelled column takes its labels: the number 3 is not the label '4'.
        (
            "SELECT COUNT(*) FROM consumption WHERE household_size = 3",
            "compare it with its labels ('1', '2', '3', '4', '5+'), not the number 3",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE district IN (4, 6)",
            "`district` is labelled",
        ),
    ] {
        let err = lower(sql).unwrap_err().to_string();
        assert!(err.contains(construct), "{sql}: {err}");
    }
    let err = lower("SELECT COUNT(*) FROM consumption WHERE hour + 1 > 3")
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("a provable query is"),
        "says what is supported: {err}"
    );
}

#[test]
fn a_changed_chunk_file_is_an_internal_error_not_a_proof() {
    let node = node(16);
    let dir = node.dir.path().join("data/consumption/chunks");
    let schema = tiny();
    let path = dir.join("0.parquet");
    let mut columns = records::read_stored_file(&schema, &path).unwrap();
    columns[column("kwh")][0] += 1;
    let batch = records::to_stored_batch(&schema, &columns, Some(0));
    records::write_file(Path::new(&path), batch.schema(), [batch]).unwrap();
    let err = block_on(prove::answer(
        &node.store,
        &node.keys,
        &node.proofs,
        &request("SELECT COUNT(*) FROM consumption", "public-health"),
        |_| (),
    ))
    .unwrap_err();
    assert!(
        err.to_string()
            .contains("no longer opens its published commitment"),
        "{err}"
    );
}

/// Per group key, COUNT and SUMs from plain DataFusion over the epoch's table of
/// `dataset`: `sql`'s first column is the key (as the circuit packs it), its second the
/// count, the rest the sums.
fn plain(node: &Node, dataset: &str, sql: &str) -> std::collections::HashMap<u64, (u64, Vec<u64>)> {
    use datafusion::arrow::{
        array::AsArray,
        compute::cast,
        datatypes::{DataType, UInt64Type},
    };
    block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        zkfabric::node::tables::register_epoch(&ctx, &node.store, dataset, None).unwrap();
        let batches = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        let mut out = std::collections::HashMap::new();
        for b in batches {
            let columns: Vec<_> = (0..b.num_columns())
                .map(|i| cast(b.column(i), &DataType::UInt64).unwrap())
                .collect();
            for r in 0..b.num_rows() {
                let v = |i: usize| columns[i].as_primitive::<UInt64Type>().value(r);
                out.insert(v(0), (v(1), (2..b.num_columns()).map(v).collect()));
            }
        }
        out
    })
}

/// Checks a bundle's rows against `expected` (per key, plain DataFusion's count and sums
/// over the consented rows): a released group equals it, a suppressed one has fewer than
/// k = 3 rows there, and something is released.
fn assert_rows_match(
    sql: &str,
    rows: &[zkfabric_proto::v1::ResultRow],
    expected: &std::collections::HashMap<u64, (u64, Vec<u64>)>,
) {
    let mut released = 0;
    for row in rows {
        let (count, sums) = expected.get(&row.key).cloned().unwrap_or_default();
        if row.suppressed {
            assert!(
                count < 3,
                "{sql}: group {} of {count} rows suppressed",
                row.key
            );
            continue;
        }
        released += 1;
        let sums: Vec<String> = sums.iter().map(u64::to_string).collect();
        assert_eq!((row.count, row.sums.clone()), (count, sums), "{sql}");
    }
    assert!(released > 0, "{sql}: something is released");
}

#[test]
fn verified_answers_equal_plain_datafusion_over_the_consented_rows() {
    let node = node(96);
    // energy-research is consent bit 2.
    for (sql, direct) in [
        (
            "SELECT district, COUNT(*), SUM(kwh) FROM consumption \
             WHERE hour BETWEEN 6 AND 20 AND district IN ('Daan', 'Xinyi', 'Datong') GROUP BY district",
            "SELECT district, COUNT(*), SUM(kwh) FROM consumption \
             WHERE hour BETWEEN 6 AND 20 AND district IN (4, 6, 1) AND (consent & 4) <> 0 GROUP BY district",
        ),
        (
            "SELECT household_size, COUNT(*), SUM(water) FROM consumption \
             WHERE age >= 30 GROUP BY household_size",
            "SELECT household_size, COUNT(*), SUM(water) FROM consumption \
             WHERE age >= 30 AND (consent & 4) <> 0 GROUP BY household_size",
        ),
        (
            "SELECT COUNT(*), SUM(spend) FROM consumption WHERE time < 1767400000",
            "SELECT 0, COUNT(*), SUM(spend) FROM consumption \
             WHERE time < 1767400000 AND (consent & 4) <> 0",
        ),
        // `<>`, NOT IN and ORed conditions on one column.
        (
            "SELECT household_size, COUNT(*), SUM(kwh) FROM consumption \
             WHERE district <> 'Daan' AND (hour < 6 OR hour > 12) GROUP BY household_size",
            "SELECT household_size, COUNT(*), SUM(kwh) FROM consumption \
             WHERE district <> 4 AND (hour < 6 OR hour > 12) AND (consent & 4) <> 0 \
             GROUP BY household_size",
        ),
        (
            "SELECT COUNT(*), SUM(water) FROM consumption \
             WHERE household_size NOT IN ('1', '5+') AND NOT (age BETWEEN 30 AND 40)",
            "SELECT 0, COUNT(*), SUM(water) FROM consumption \
             WHERE household_size NOT IN (0, 4) AND NOT (age BETWEEN 30 AND 40) \
             AND (consent & 4) <> 0",
        ),
    ] {
        let bundle = answer(&node, sql, "energy-research");
        verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
        let expected = plain(&node, "consumption", direct);
        assert_rows_match(sql, &bundle.result.as_ref().unwrap().rows, &expected);
    }
}

#[test]
fn chunk_proofs_are_reused_across_queries_and_restarts_and_checked_first() {
    let mut node = node(24);
    let sql = "SELECT district, SUM(kwh) FROM consumption WHERE hour BETWEEN 6 AND 20 \
               GROUP BY district";
    let verified = |bundle: &Bundle| {
        verify::verify(bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    };
    let (first, reused) = answer_with(&node, &node.proofs, sql, "public-health");
    assert_eq!((first.chunk_proofs.len(), reused), (3, 0));
    assert_eq!(node.proofs.len(), 3);
    // The same query again: every chunk proof comes from the cache, and the answer holds.
    let (again, reused) = answer_with(&node, &node.proofs, sql, "public-health");
    assert_eq!(reused, 3);
    verified(&again);
    assert_eq!(again.result, first.result);
    // Other parameters (here the purpose) are other proofs.
    let (_, reused) = answer_with(&node, &node.proofs, sql, "energy-research");
    assert_eq!(reused, 0);

    // A new epoch with one more chunk: the challenge hashes every chunk commitment and
    // the new totals, so every chunk is proven again at the new challenge.
    seal_eight_more(&mut node, 24);
    let (later, reused) = answer_with(&node, &node.proofs, sql, "public-health");
    assert_eq!((later.chunk_proofs.len(), reused), (4, 0));
    verified(&later);

    // The cache survives a restart of the node.
    let data = node.dir.path().join("data");
    let reopened = ProofCache::open(&data, 64).unwrap();
    let (_, reused) = answer_with(&node, &reopened, sql, "public-health");
    assert_eq!(reused, 4);

    // A damaged entry (another chunk's proof) is noticed, proven again, and replaced.
    let db = rusqlite::Connection::open(data.join("proofs.sqlite")).unwrap();
    let changed = db
        .execute(
            "UPDATE proofs SET proof = (SELECT proof FROM proofs ORDER BY used LIMIT 1)",
            [],
        )
        .unwrap();
    assert!(changed >= 4);
    let (healed, reused) = answer_with(&node, &reopened, sql, "public-health");
    assert!(reused <= 1, "{reused} damaged proofs reused");
    verified(&healed);
    let (_, reused) = answer_with(&node, &reopened, sql, "public-health");
    assert_eq!(reused, 4);

    // The cache is bounded: the least recently used proofs go first, also when a node
    // restarts with a smaller capacity.
    let small = ProofCache::open(&data, 2).unwrap();
    answer_with(&node, &small, sql, "public-health");
    assert_eq!(small.len(), 2);
    // Turned off, it keeps nothing.
    let off = ProofCache::open(&data, 0).unwrap();
    assert_eq!(answer_with(&node, &off, sql, "public-health").1, 0);
    assert!(off.is_empty());
}

#[test]
fn a_key_file_other_than_the_published_key_is_refused() {
    let node = node(8);
    let sql = "SELECT COUNT(*) FROM consumption";
    answer(&node, sql, "public-health");
    // Another key's published part beside this key: the node must not prove with it.
    let keys = node.dir.path().join("data/keys");
    for entry in std::fs::read_dir(&keys).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "vk") {
            let text = std::fs::read_to_string(&path).unwrap();
            let mut info: serde_json::Value = serde_json::from_str(&text).unwrap();
            info["fingerprint"] = "sha256:00".into();
            std::fs::write(&path, info.to_string()).unwrap();
        }
    }
    let restarted = KeyCache::new(&node.dir.path().join("data"));
    let err = block_on(prove::answer(
        &node.store,
        &restarted,
        &node.proofs,
        &request(sql, "public-health"),
        |_| (),
    ))
    .unwrap_err();
    assert!(
        err.to_string().contains("not the published sha256:00"),
        "{err}"
    );
}

#[test]
fn the_sql_text_is_bounded_and_canonical() {
    let node = node(8);
    let bundle = answer(&node, "SELECT COUNT(*) FROM consumption", "public-health");
    // SQL is bounded and canonical: a comment is not canonical, 64 KiB is the most.
    let commented = "SELECT COUNT(*) FROM consumption -- 0xdeadbeef";
    assert_ne!(sql::canonical(commented).unwrap(), commented);
    assert_eq!(bundle.sql, sql::canonical(&bundle.sql).unwrap());
    let long = format!(
        "SELECT COUNT(*) FROM consumption WHERE hour IN ({})",
        vec!["1"; 40_000].join(", ")
    );
    let err = lower(&long).unwrap_err().to_string();
    assert!(err.contains("at most 65536"), "{err}");
}

#[test]
fn a_range_on_a_second_time_column_counts_every_chunk() {
    // Trips with a start and a finish time: start rises through the rows, finish falls,
    // so chunks' start windows say nothing about finish. Every chunk is proven, and the
    // count over finish is exact.
    let schema = Schema::parse(
        "trips.toml",
        r#"
name = "trips"
id = 9
chunk_rows = 8

[[columns]]
name = "start"
kind = "time"
width = 32

[[columns]]
name = "finish"
kind = "time"
width = 32

[[columns]]
name = "consent"
kind = "consent"
purposes = ["research"]

[[columns]]
name = "distance"
kind = "measure"
width = 16

[privacy]
mode = "threshold-only"
"#,
    )
    .unwrap();
    let rows = 16;
    let mut columns = vec![Vec::new(); schema.declared().len()];
    for row in 0..rows {
        for (c, column) in schema.declared().iter().enumerate() {
            columns[c].push(match column.name.as_str() {
                "start" => 100 * row as u64,
                "finish" => 100 * (rows - row) as u64 + 50,
                "consent" => 1,
                _ => 7,
            });
        }
    }
    let node = node_of(&schema, columns);
    let bundle = answer(
        &node,
        "SELECT COUNT(*) FROM trips WHERE finish >= 1000",
        "research",
    );
    verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    let finish = &node.columns[schema.column("finish").unwrap().0];
    let expected = finish.iter().filter(|f| **f >= 1000).count() as u64;
    assert_eq!(expected, 7);
    assert_eq!(bundle.chunk_proofs.len(), 2);
    assert_eq!(bundle.result.as_ref().unwrap().rows[0].count, expected);
}

#[test]
fn grouping_by_two_columns_releases_every_pair_of_codes_in_order() {
    let node = node(24);
    let sql = "SELECT household_size AS size, district, COUNT(*) FROM consumption \
               GROUP BY household_size, district";
    let bundle = answer(&node, sql, "energy-research");
    verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    let schema = tiny();
    let labels = |name: &str| schema.column(name).unwrap().1.labels.clone();
    let (sizes, districts) = (labels("household_size"), labels("district"));
    // Every pair, empty ones suppressed, the first column varying slowest; the key packs
    // the size above district's 4 bits, so keys ascend as the pairs do.
    let rows = &bundle.result.as_ref().unwrap().rows;
    assert_eq!(rows.len(), sizes.len() * districts.len());
    for (i, row) in rows.iter().enumerate() {
        let (size, district) = (i / districts.len(), i % districts.len());
        assert_eq!(row.key, (size as u64) << 4 | district as u64);
        assert_eq!(
            row.labels,
            [sizes[size].clone(), districts[district].clone()]
        );
    }
    let query = bundle.query.as_ref().unwrap();
    let columns: Vec<&str> = query.group_by.iter().map(|g| g.column.as_str()).collect();
    assert_eq!(columns, ["household_size", "district"]);
    // The statement names both columns; a verifier told of one only refuses it.
    let mut one = bundle.clone();
    one.query.as_mut().unwrap().group_by.pop();
    assert!(verify::verify(&one, &Trust::keys(KeyPins::Unpinned)).is_err());
    let mut swapped = bundle.clone();
    swapped.query.as_mut().unwrap().group_by.reverse();
    assert!(verify::verify(&swapped, &Trust::keys(KeyPins::Unpinned)).is_err());
    // More pairs than the node's G: refused naming the limit.
    let err = block_on(prove::answer(
        &node.store,
        &node.keys,
        &node.proofs,
        &request(
            "SELECT COUNT(*) FROM consumption GROUP BY district, hour",
            "energy-research",
        ),
        |_| (),
    ))
    .unwrap_err()
    .to_string();
    assert!(err.contains("at most 64 groups"), "{err}");
}

#[test]
fn having_order_by_and_limit_post_process_the_released_table() {
    let q = lower(
        "SELECT district, COUNT(*) AS n, SUM(kwh) FROM consumption GROUP BY district \
         HAVING COUNT(*) >= 5 ORDER BY n DESC NULLS LAST, district LIMIT 3",
    )
    .unwrap();
    use zkfabric::verifier::query::{Comparison, Having, OrderKey};
    assert_eq!(
        q.post.having,
        [Having {
            output: 1,
            comparison: Comparison::GtEq,
            value: 5
        }]
    );
    assert_eq!(
        q.post.order_by,
        [
            OrderKey {
                output: 1,
                descending: true,
                nulls_first: false
            },
            OrderKey {
                output: 0,
                descending: false,
                nulls_first: false
            }
        ]
    );
    assert_eq!(q.post.limit, Some(3));
    for (sql, construct) in [
        (
            "SELECT district, COUNT(*) FROM consumption GROUP BY district LIMIT 3 OFFSET 2",
            "OFFSET",
        ),
        (
            "SELECT district, COUNT(*) FROM consumption GROUP BY district HAVING SUM(kwh) > 5",
            "which SELECT does not show",
        ),
        (
            "SELECT district, COUNT(*) AS n FROM consumption GROUP BY district ORDER BY n + 1",
            "ORDER BY",
        ),
    ] {
        let err = lower(sql).unwrap_err().to_string();
        assert!(err.contains(construct), "{sql}: {err}");
    }

    // Proven, then shown: the released groups HAVING keeps, largest first, three of
    // them, as DataFusion shows them over the consented rows.
    let node = node(96);
    let sql = "SELECT district, COUNT(*) AS n, SUM(kwh) FROM consumption GROUP BY district \
               HAVING COUNT(*) >= 5 ORDER BY n DESC NULLS LAST, district LIMIT 3";
    let bundle = answer(&node, sql, "energy-research");
    let report = verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    let rows = &bundle.result.as_ref().unwrap().rows;
    let shown = zkfabric::verifier::view::view(&tiny(), &report.query, rows);
    let expected = plain(
        &node,
        "consumption",
        "SELECT district, COUNT(*), SUM(kwh) FROM consumption WHERE (consent & 4) <> 0 \
         GROUP BY district HAVING COUNT(*) >= 5",
    );
    let mut counts: Vec<u64> = expected.values().map(|(count, _)| *count).collect();
    counts.sort_unstable_by(|a, b| b.cmp(a));
    counts.truncate(3);
    assert_eq!(
        shown.iter().map(|r| r.count).collect::<Vec<_>>(),
        counts,
        "{shown:?}"
    );
    for row in &shown {
        assert!(!row.suppressed);
        assert_eq!(
            expected[&row.key],
            (row.count, vec![row.sums[0].parse().unwrap()]),
            "{row:?}"
        );
    }
    // Ties sort by district's label, as ORDER BY's second key says.
    for pair in shown.windows(2) {
        if pair[0].count == pair[1].count {
            assert!(pair[0].labels < pair[1].labels);
        }
    }
}

#[test]
fn several_sums_and_averages_are_proven_together() {
    let node = node(96);
    let sql = "SELECT district, SUM(kwh) AS kwh, AVG(water), SUM(water), COUNT(*) \
               FROM consumption WHERE hour <> 3 GROUP BY district";
    let bundle = answer(&node, sql, "energy-research");
    let report = verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    assert_eq!(
        report.query.aggregand,
        Aggregand::Sum(vec!["kwh".into(), "water".into()])
    );
    let c = &node.columns;
    let (district, hour, consent, kwh, water) = (
        column("district"),
        column("hour"),
        column("consent"),
        column("kwh"),
        column("water"),
    );
    let mut released = 0;
    for row in &bundle.result.as_ref().unwrap().rows {
        let selected: Vec<usize> = (0..96)
            .filter(|&r| {
                c[district][r] == row.key && c[hour][r] != 3 && c[consent][r] >> 2 & 1 == 1
            })
            .collect();
        if row.suppressed {
            assert!(selected.len() < 3);
            continue;
        }
        released += 1;
        let total = |col: usize| selected.iter().map(|&r| c[col][r]).sum::<u64>().to_string();
        assert_eq!(row.count, selected.len() as u64);
        assert_eq!(row.sums, [total(kwh), total(water)]);
    }
    assert!(released > 0);
    // A sum dropped from the table, or the two swapped: refused.
    let mut dropped = bundle.clone();
    for row in &mut dropped.result.as_mut().unwrap().rows {
        row.sums.truncate(1);
    }
    assert!(verify::verify(&dropped, &Trust::keys(KeyPins::Unpinned)).is_err());
    let mut swapped = bundle.clone();
    for row in &mut swapped.result.as_mut().unwrap().rows {
        row.sums.reverse();
    }
    assert!(verify::verify(&swapped, &Trust::keys(KeyPins::Unpinned)).is_err());
}
#[test]
fn the_six_questions_once_refused_are_answered_and_verify() {
    // Households in two districts at two hours, trips among three zones, so that
    // groups reach k = 3 (the other slots are empty, and suppressed).
    let clustered = |schema: &Schema, spread: [(&str, usize, u64); 2]| {
        let mut rows = random_rows(schema, 48);
        for (column, every, codes) in spread {
            let c = schema.column(column).unwrap().0;
            for (r, v) in rows[c].iter_mut().enumerate() {
                *v = (r / every) as u64 % codes;
            }
        }
        node_of(schema, rows)
    };
    let consumption = clustered(&tiny(), [("district", 1, 2), ("hour", 2, 2)]);
    let movement_schema = Schema::builtin("movement")
        .unwrap()
        .with_chunk_rows(8)
        .unwrap()
        .threshold_only()
        .unwrap();
    let movement = clustered(&movement_schema, [("origin", 1, 3), ("destination", 3, 3)]);
    let wide = Limits {
        max_groups: 512,
        ..limits()
    };
    // (node, schema, purpose bit, question, the same question for plain DataFusion).
    let questions = [
        (
            &movement,
            &movement_schema,
            "transport-research",
            "SELECT origin, destination, COUNT(*) FROM movement GROUP BY origin, destination",
            "SELECT origin * 16 + destination, COUNT(*) FROM movement \
             WHERE (consent & 4) <> 0 GROUP BY origin * 16 + destination",
        ),
        (
            &consumption,
            &tiny(),
            "energy-research",
            "SELECT district, hour, COUNT(*), SUM(kwh) FROM consumption GROUP BY district, hour",
            "SELECT district * 32 + hour, COUNT(*), SUM(kwh) FROM consumption \
             WHERE (consent & 4) <> 0 GROUP BY district * 32 + hour",
        ),
        (
            &consumption,
            &tiny(),
            "energy-research",
            "SELECT SUM(kwh), SUM(water) FROM consumption",
            "SELECT 0, COUNT(*), SUM(kwh), SUM(water) FROM consumption \
             WHERE (consent & 4) <> 0",
        ),
        (
            &consumption,
            &tiny(),
            "energy-research",
            "SELECT district, SUM(kwh) AS total FROM consumption GROUP BY district \
             ORDER BY total DESC",
            "SELECT district, COUNT(*), SUM(kwh) FROM consumption \
             WHERE (consent & 4) <> 0 GROUP BY district",
        ),
        (
            &consumption,
            &tiny(),
            "energy-research",
            "SELECT COUNT(*) FROM consumption WHERE district <> 'Daan'",
            "SELECT 0, COUNT(*) FROM consumption WHERE district <> 4 AND (consent & 4) <> 0",
        ),
        (
            &consumption,
            &tiny(),
            "energy-research",
            "SELECT COUNT(*) FROM consumption WHERE hour < 6 OR hour > 22",
            "SELECT 0, COUNT(*) FROM consumption \
             WHERE (hour < 6 OR hour > 22) AND (consent & 4) <> 0",
        ),
    ];
    for (node, schema, purpose, sql, direct) in questions {
        let bundle = answer_under(node, wide, sql, purpose);
        let report = verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let expected = plain(node, &schema.name, direct);
        let rows = &bundle.result.as_ref().unwrap().rows;
        assert_rows_match(sql, rows, &expected);
        // ORDER BY total DESC: the shown rows are the released ones, largest first.
        if sql.contains("ORDER BY") {
            let shown = zkfabric::verifier::view::view(schema, &report.query, rows);
            let totals: Vec<u128> = shown
                .iter()
                .filter(|r| !r.suppressed)
                .map(|r| r.sums[0].parse().unwrap())
                .collect();
            assert!(totals.windows(2).all(|w| w[0] >= w[1]), "{totals:?}");
            if rows.iter().any(|r| r.suppressed) {
                assert!(
                    shown[0].suppressed,
                    "DESC puts nulls (suppressed groups) first"
                );
            }
        }
    }
}

#[test]
fn arithmetic_between_aggregates_is_shown_as_datafusion_computes_it() {
    use zkfabric::verifier::{
        query::{Arithmetic, ArithmeticOp, OutputKind},
        view::{value, view, Value},
    };
    let sum = |m| Box::new(Arithmetic::Aggregate(Box::new(OutputKind::Sum(m))));
    let count = Box::new(Arithmetic::Aggregate(Box::new(OutputKind::Count)));
    let q = lower(
        "SELECT district, SUM(kwh) / COUNT(*) AS per_row, SUM(water) + 2 * SUM(kwh) \
         FROM consumption GROUP BY district ORDER BY per_row DESC",
    )
    .unwrap();
    assert_eq!(
        q.outputs[1].kind,
        OutputKind::Arithmetic(Arithmetic::Binary {
            op: ArithmeticOp::Divide,
            left: sum(0),
            right: count,
        })
    );
    assert_eq!(q.outputs[1].name, "per_row");
    assert_eq!(
        q.aggregand,
        Aggregand::Sum(vec!["kwh".into(), "water".into()])
    );
    assert_eq!(q.post.order_by[0].output, 1);
    for (sql, construct) in [
        (
            "SELECT hour + 1, COUNT(*) FROM consumption GROUP BY hour",
            "arithmetic on the grouping column `hour`",
        ),
        (
            "SELECT SUM(kwh) % COUNT(*) FROM consumption",
            "`%` between aggregates",
        ),
        ("SELECT SUM(kwh) / 2.5 FROM consumption", "integers only"),
        (
            "SELECT abs(SUM(kwh)) FROM consumption",
            "functions on aggregates",
        ),
    ] {
        let err = lower(sql).unwrap_err().to_string();
        assert!(err.contains(construct), "{sql}: {err}");
    }

    // Proven, verified, then computed over the released values as the table shows them
    // (kWh, not the stored kWh x 1000): what DataFusion computes over the consented rows.
    let node = node(96);
    let sql = "SELECT district, SUM(kwh) / COUNT(*) AS per_row, SUM(water) + 2 * SUM(kwh) \
               FROM consumption GROUP BY district ORDER BY per_row DESC";
    let bundle = answer(&node, sql, "energy-research");
    let report = verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    let schema = tiny();
    let rows = &bundle.result.as_ref().unwrap().rows;
    let shown = view(&schema, &report.query, rows);
    let expected = plain(
        &node,
        "consumption",
        "SELECT district, CAST(ROUND(10000 * CAST(SUM(kwh) AS DOUBLE) / 1000 / COUNT(*)) \
         AS BIGINT), CAST(ROUND(10000 * (CAST(SUM(water) AS DOUBLE) + 2 * CAST(SUM(kwh) AS \
         DOUBLE) / 1000)) AS BIGINT) FROM consumption WHERE (consent & 4) <> 0 GROUP BY district",
    );
    let real = |row, output| match value(&schema, &report.query, row, output) {
        Some(Value::Real(v)) => (v * 10000.0).round() as i64,
        other => panic!("{other:?}"),
    };
    let mut shown_released = 0;
    for row in &shown {
        if row.suppressed {
            assert_eq!(value(&schema, &report.query, row, 1), None);
            continue;
        }
        shown_released += 1;
        let (per_row, total) = (&expected[&row.key].0, &expected[&row.key].1[0]);
        assert!((real(row, 1) - *per_row as i64).abs() <= 1, "{row:?}");
        assert!((real(row, 2) - *total as i64).abs() <= 1, "{row:?}");
    }
    assert!(shown_released > 0);
    // Largest ratio first; suppressed groups (nulls) last.
    let ratios: Vec<i64> = shown
        .iter()
        .filter(|r| !r.suppressed)
        .map(|r| real(r, 1))
        .collect();
    assert!(ratios.windows(2).all(|w| w[0] >= w[1]), "{ratios:?}");
    // The CSV shows the ratio in kWh a row, four decimals.
    let csv = zkfabric::verifier::table::render(
        &schema,
        &report.query,
        &bundle,
        zkfabric::verifier::table::Format::Csv,
    );
    let first = shown.iter().find(|r| !r.suppressed).unwrap();
    let line = format!("{},{:.4}", first.labels[0], real(first, 1) as f64 / 10000.0);
    assert!(csv.contains(&line), "{line} in {csv}");
}

#[test]
fn time_buckets_group_as_date_trunc_and_date_bin_do_in_datafusion() {
    use zkfabric::verifier::query::{Grouping, TimeBucket};
    // 96 rows an hour apart from 2026-01-01T00:00:00 UTC (a Thursday): four days.
    const START: u64 = 1_767_225_600;
    let q = lower(
        "SELECT date_trunc('day', to_timestamp(time)) AS day, COUNT(*) FROM consumption \
         WHERE time >= 1767225600 AND time < 1767571200 GROUP BY day",
    )
    .unwrap();
    assert_eq!(
        q.group_by,
        vec![Grouping {
            column: "time".into(),
            bucket: Some(TimeBucket::DAY)
        }]
    );
    assert_eq!(q.outputs[0].name, "day");
    // The same range as instants, as a DataFusion user writes it.
    for range in [
        "to_timestamp(time) >= '2026-01-01' AND to_timestamp(time) < TIMESTAMP '2026-01-05'",
        "to_timestamp(time) BETWEEN '2026-01-01T00:00:00' AND '2026-01-04T23:59:59'",
        "from_unixtime(CAST(time AS BIGINT)) >= '2026-01-01' AND to_timestamp_seconds(time) <= \
         '2026-01-04 23:59:59'",
    ] {
        let instants = lower(&format!(
            "SELECT date_trunc('day', to_timestamp(time)) AS day, COUNT(*) FROM consumption \
             WHERE {range} GROUP BY day"
        ))
        .unwrap();
        assert_eq!(instants, q, "{range}");
    }
    let err = lower(
        "SELECT COUNT(*) FROM consumption WHERE to_timestamp(time) >= '2026-01-01T00:00:00.5'",
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("is not supported"), "{err}");
    for (sql, construct) in [
        (
            "SELECT date_trunc('month', to_timestamp(time)), COUNT(*) FROM consumption \
             GROUP BY 1",
            "months differ in length",
        ),
        (
            "SELECT date_trunc('second', to_timestamp(time)), COUNT(*) FROM consumption \
             GROUP BY 1",
            "date_trunc('second', ...) in GROUP BY",
        ),
        (
            "SELECT date_bin(INTERVAL '1 hour', to_timestamp(time), \
             TIMESTAMP '2026-01-01T00:30:00'), COUNT(*) FROM consumption GROUP BY 1",
            "date_bin with an origin",
        ),
        (
            "SELECT date_bin(INTERVAL '1 month', to_timestamp(time)), COUNT(*) \
             FROM consumption GROUP BY 1",
            "an interval of whole seconds",
        ),
        (
            "SELECT time, COUNT(*) FROM consumption GROUP BY time",
            "date_trunc('hour', to_timestamp(time))",
        ),
        (
            "SELECT date_trunc('hour', to_timestamp(kwh)), COUNT(*) FROM consumption \
             GROUP BY 1",
            "a measure column; bucket a time column",
        ),
        (
            "SELECT date_trunc('hour', to_timestamp_millis(time)), COUNT(*) \
             FROM consumption GROUP BY 1",
            "the time column's seconds",
        ),
    ] {
        let err = lower(sql).unwrap_err().to_string();
        assert!(err.contains(construct), "{sql}: {err}");
    }
    // Without a range on time, the buckets span every second the column can hold.
    let node = node(96);
    let err = block_on(prove::answer(
        &node.store,
        &node.keys,
        &node.proofs,
        &request(
            "SELECT date_trunc('hour', to_timestamp(time)), COUNT(*) FROM consumption \
             GROUP BY 1",
            "energy-research",
        ),
        |_| (),
    ))
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("time buckets the WHERE clause's range"),
        "{err}"
    );

    // (question, its key and sums for plain DataFusion, the first bucket's label).
    let wide = Limits {
        max_groups: 512,
        ..limits()
    };
    for (sql, key, sums, first) in [
        (
            "SELECT date_trunc('day', to_timestamp(time)) AS day, COUNT(*), SUM(kwh) \
             FROM consumption WHERE time >= 1767225600 AND time < 1767571200 \
             GROUP BY day ORDER BY day",
            "(CAST(time AS BIGINT) - 1767225600) / 86400",
            ", SUM(kwh)",
            "2026-01-01T00:00:00",
        ),
        // Weeks start on Mondays: 2025-12-29 is the first, and the range ends in the
        // next, empty one.
        (
            "SELECT date_trunc('week', to_timestamp(time)), COUNT(*) FROM consumption \
             WHERE time BETWEEN 1767225600 AND 1767700000 GROUP BY 1",
            "(CAST(time AS BIGINT) - 1766966400) / 604800",
            "",
            "2025-12-29T00:00:00",
        ),
        // Half-day bins from a range that starts mid-bin, by household size.
        (
            "SELECT date_bin(INTERVAL '12 hours', to_timestamp(time)) AS slot, household_size, \
             COUNT(*), SUM(water) FROM consumption WHERE time BETWEEN 1767236400 AND 1767571199 \
             GROUP BY slot, household_size",
            "(CAST(time AS BIGINT) - 1767225600) / 43200 * 8 + household_size",
            ", SUM(water)",
            "2026-01-01T00:00:00",
        ),
    ] {
        let bundle = answer_under(&node, wide, sql, "energy-research");
        verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        // A bundle that claims other buckets (another length, other boundaries, so
        // another origin) or another range of time (another origin) verifies no more.
        type Edit = fn(&mut zkfabric_proto::v1::ProvableQuery);
        let edits: [(&str, Edit); 3] = [
            ("bucket length", |q| {
                q.group_by[0].bucket.as_mut().unwrap().seconds *= 2
            }),
            ("bucket boundaries", |q| {
                let b = q.group_by[0].bucket.as_mut().unwrap();
                b.offset = (b.offset + 1800) % b.seconds
            }),
            ("time range", |q| {
                let f = q.filters.iter_mut().find(|f| f.column == "time").unwrap();
                match f.test.as_mut().unwrap() {
                    zkfabric_proto::v1::filter::Test::Range(r) => r.lo -= 86_400,
                    _ => unreachable!("a range"),
                }
            }),
        ];
        for (what, edit) in edits {
            let mut tampered = bundle.clone();
            edit(tampered.query.as_mut().unwrap());
            assert!(
                verify::verify(&tampered, &Trust::keys(KeyPins::Unpinned)).is_err(),
                "{sql}: {what} changed"
            );
        }
        let expected = plain(
            &node,
            "consumption",
            &format!(
                "SELECT {key}, COUNT(*){sums} FROM consumption WHERE time >= {START} \
                 AND (consent & 4) <> 0 AND {} GROUP BY 1",
                sql.split_once("WHERE ")
                    .unwrap()
                    .1
                    .split_once(" GROUP")
                    .unwrap()
                    .0
            ),
        );
        let rows = &bundle.result.as_ref().unwrap().rows;
        assert_eq!(rows[0].labels[0], first, "{sql}");
        assert_rows_match(sql, rows, &expected);
        // The buckets are DataFusion's own: its date_trunc or date_bin of each row, as
        // nanoseconds since 1970, counts the same rows under the same starts.
        let bucket = sql["SELECT ".len()..].split_once(" AS ").map_or_else(
            || sql["SELECT ".len()..].split_once(", COUNT").unwrap().0,
            |(b, _)| b,
        );
        let theirs = plain(
            &node,
            "consumption",
            &format!(
                "SELECT CAST({bucket} AS BIGINT), COUNT(*) FROM consumption \
                 WHERE (consent & 4) <> 0 AND {} GROUP BY 1",
                sql.split_once("WHERE ")
                    .unwrap()
                    .1
                    .split_once(" GROUP")
                    .unwrap()
                    .0
            ),
        );
        if !sql.contains("household_size") {
            for row in rows.iter().filter(|r| !r.suppressed) {
                let start =
                    chrono::NaiveDateTime::parse_from_str(&row.labels[0], "%Y-%m-%dT%H:%M:%S")
                        .unwrap()
                        .and_utc()
                        .timestamp_nanos_opt()
                        .unwrap() as u64;
                assert_eq!(theirs.get(&start).map(|t| t.0), Some(row.count), "{sql}");
            }
        }
    }

    // Days of movement and signal too: two days of hourly rows each.
    for (dataset, purpose, bit, measure) in [
        ("movement", "transport-research", 4, "distance"),
        ("signal", "urban-planning", 2, "devices"),
    ] {
        let schema = Schema::builtin(dataset)
            .unwrap()
            .with_chunk_rows(8)
            .unwrap()
            .threshold_only()
            .unwrap();
        let node = node_of(&schema, random_rows(&schema, 48));
        let range = "time BETWEEN 1767225600 AND 1767398399";
        let sql = format!(
            "SELECT date_trunc('day', to_timestamp(time)) AS day, COUNT(*), SUM({measure}) \
             FROM {dataset} WHERE {range} GROUP BY day"
        );
        let bundle = block_on(prove::answer(
            &node.store,
            &node.keys,
            &node.proofs,
            &request(&sql, purpose),
            |_| (),
        ))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
        verify::verify(&bundle, &Trust::keys(KeyPins::Unpinned))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let expected = plain(
            &node,
            dataset,
            &format!(
                "SELECT (CAST(time AS BIGINT) - {START}) / 86400, COUNT(*), SUM({measure}) \
                 FROM {dataset} WHERE (consent & {bit}) <> 0 AND {range} GROUP BY 1"
            ),
        );
        let rows = &bundle.result.as_ref().unwrap().rows;
        assert_eq!(rows.len(), 2, "{sql}");
        assert!(rows.iter().all(|r| !r.suppressed), "{sql}: {rows:?}");
        assert_rows_match(&sql, rows, &expected);
    }
}
