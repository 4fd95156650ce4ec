//! The command line as a new user runs it: generate, ingest, seal, catalog; a refused
//! file; and a process killed while it ingests and seals.

use std::{
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    thread,
    time::Duration,
};

use tempfile::TempDir;
use zkfabric::{node::store::Store, verifier::manifest::fr_to_hex, verifier::schema::Schema};

mod common;
use common::ok;

fn zkfabric(data: &Path, args: &[&str]) -> Output {
    common::zkfabric_with("--data-dir", data, args)
}

#[test]
fn generate_ingest_seal_and_show_a_signed_manifest() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("consumption.parquet");
    let f = file.to_str().unwrap();
    generate(&file, 3000, 4);
    let out = ok(zkfabric(&data, &["ingest", "consumption", f]));
    assert!(out.contains("ingested 3000 rows"), "{out}");
    assert!(out.contains("sealed 2 full chunk(s)"), "{out}");
    let out = ok(zkfabric(&data, &["seal", "consumption"]));
    assert!(out.contains("sealed 952 rows into 1 chunk(s)"), "{out}");
    let out = ok(zkfabric(&data, &["catalog"]));
    assert!(out.contains("consumption"), "{out}");
    let out = ok(zkfabric(&data, &["catalog", "show", "consumption"]));
    assert!(out.contains("total        3 chunks, 3000 rows"), "{out}");
    assert!(out.contains("signature    valid"), "{out}");
    let out = ok(zkfabric(
        &data,
        &["catalog", "show", "consumption", "--epoch", "1"],
    ));
    assert!(out.contains("total        2 chunks, 2048 rows"), "{out}");

    // The same seed gives the same file.
    let again = tmp.path().join("again.parquet");
    generate(&again, 3000, 4);
    assert_eq!(
        std::fs::read(&file).unwrap(),
        std::fs::read(&again).unwrap()
    );
}

#[test]
fn a_value_out_of_range_is_refused_and_the_store_is_unchanged() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let file = tmp.path().join("readings.csv");
    let f = file.to_str().unwrap();
    ok(zkfabric(
        &data,
        &["generate", "consumption", "--rows", "40", "--out", f],
    ));
    ok(zkfabric(&data, &["ingest", "consumption", f]));
    let before = ok(zkfabric(&data, &["catalog"]));
    let text = std::fs::read_to_string(&file).unwrap();
    let header: Vec<&str> = text.lines().next().unwrap().split(',').collect();
    let hour = header.iter().position(|h| *h == "hour").unwrap();
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .map(|(i, line)| {
            let mut fields: Vec<&str> = line.split(',').collect();
            if i == 9 {
                fields[hour] = "32";
            }
            fields.join(",")
        })
        .collect();
    std::fs::write(&file, lines.join("\n")).unwrap();
    let out = zkfabric(&data, &["ingest", "consumption", f]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("readings.csv: row 9, column `hour`: 32 does not fit 5 bits"),
        "{err}"
    );
    assert_eq!(ok(zkfabric(&data, &["catalog"])), before);
    let out = zkfabric(&data, &["ingest", "weather", f]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown dataset `weather`"));
}

/// Whatever point a process stopped at, the store is consistent: every manifest
/// verifies and chains, every chunk's commitment recomputes from its file and salts, no
/// file is left that the catalog does not reference, and the ingested file's rows are
/// either all there or not at all. Returns the rows stored (sealed and pending).
fn assert_consistent(data: &Path, total: u64) -> u64 {
    let store = Store::open(data).unwrap();
    let layout = Schema::builtin("consumption").unwrap().layout().unwrap();
    let summary = store.datasets().unwrap();
    let rows = summary.first().map_or(0, |d| d.rows + d.pending);
    assert!(
        rows == 0 || rows == total,
        "{rows} of {total} rows: an ingest is all or nothing"
    );
    let epochs = if summary.is_empty() {
        Vec::new()
    } else {
        store.epochs("consumption").unwrap()
    };
    let mut previous = None;
    let mut sealed = 0;
    for epoch in epochs {
        let signed = store.manifest("consumption", Some(epoch)).unwrap();
        signed.verify(Some(&store.node_key())).unwrap();
        assert_eq!(signed.manifest.previous, previous);
        previous = Some(signed.manifest.hash());
        sealed = signed.manifest.chunks.iter().map(|c| c.rows).sum();
        for entry in &signed.manifest.chunks {
            let chunk = store.chunk("consumption", entry.index).unwrap();
            assert_eq!(fr_to_hex(&chunk.commitment(&layout)), entry.commitment);
        }
    }
    // The latest epoch covers every sealed row: no chunk is visible outside an epoch.
    assert_eq!(sealed, summary.first().map_or(0, |d| d.rows));
    // Opening the store removed files no committed transaction references.
    let count = |sub: &str| {
        std::fs::read_dir(data.join("consumption").join(sub)).map_or(0, |d| d.count() as u64)
    };
    assert_eq!(count("chunks"), summary.first().map_or(0, |d| d.chunks));
    let catalog = rusqlite::Connection::open(data.join("catalog.sqlite")).unwrap();
    let pending_files: u64 = catalog
        .query_row("SELECT COUNT(*) FROM pending", [], |r| r.get(0))
        .unwrap();
    assert_eq!(count("pending"), pending_files);
    rows
}

/// After a restart, sealing completes whatever was acknowledged.
fn restart_and_seal(data: &Path, total: u64) {
    let registered = data.join("catalog.sqlite").exists()
        && !Store::open(data).unwrap().datasets().unwrap().is_empty();
    if registered {
        ok(zkfabric(data, &["seal", "consumption"]));
        let rows = assert_consistent(data, total);
        let store = Store::open(data).unwrap();
        if rows > 0 {
            assert_eq!(store.pending_rows("consumption").unwrap(), 0);
        }
    }
}

/// `zkfabric generate consumption` into `out`.
fn generate(out: &Path, rows: u64, seed: u64) {
    ok(zkfabric(
        Path::new("unused"),
        &[
            "generate",
            "consumption",
            "--rows",
            &rows.to_string(),
            "--seed",
            &seed.to_string(),
            "--out",
            out.to_str().unwrap(),
        ],
    ));
}

fn generated_csv(tmp: &Path, rows: u64) -> String {
    let file = tmp.join("big.csv");
    generate(&file, rows, 1);
    file.to_str().unwrap().to_string()
}

#[test]
fn a_crash_at_every_step_of_ingest_and_seal_leaves_a_consistent_store() {
    let tmp = TempDir::new().unwrap();
    // 2,500 rows: ingest stores them, then seals two full chunks and keeps 452 pending.
    let rows = 2_500u64;
    let f = generated_csv(tmp.path(), rows);
    for (point, stored) in [
        ("ingest-files-written", false),
        ("ingest-before-commit", false),
        ("ingest-committed", true),
        ("seal-chunk-written", true),
        ("seal-chunks-written", true),
        ("seal-before-commit", true),
        ("seal-committed", true),
    ] {
        let data = tmp.path().join(point);
        let out = Command::new(env!("CARGO_BIN_EXE_zkfabric"))
            .arg("--data-dir")
            .arg(&data)
            .args(["ingest", "consumption", &f])
            .env("FAILPOINTS", format!("{point}=panic"))
            .output()
            .unwrap();
        assert!(!out.status.success(), "{point} was not reached");
        let expected = if stored { rows } else { 0 };
        assert_eq!(assert_consistent(&data, rows), expected, "crash at {point}");
        let sealed = Store::open(&data)
            .unwrap()
            .datasets()
            .unwrap()
            .first()
            .map_or(0, |d| d.rows);
        // Only a crash after the seal's commit leaves its chunks published.
        let published = if point == "seal-committed" { 2048 } else { 0 };
        assert_eq!(sealed, published, "crash at {point}");
        restart_and_seal(&data, rows);
    }
}

#[test]
fn an_ingest_killed_after_its_commit_and_run_again_never_doubles_rows() {
    // The operator's sequence: an ingest killed after it committed (nothing said so),
    // killed again, then run a third time. The dataset holds the file's rows once.
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let rows = 600u64;
    let f = generated_csv(tmp.path(), rows);
    // Threshold-only, so that a file ingested twice on purpose is not refused for taking
    // its households beyond their privacy units' bound (as a dp dataset would).
    let schema = tiny_schema(tmp.path());
    let run = |args: &[&str], failpoint: Option<&str>| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_zkfabric"));
        command.arg("--data-dir").arg(&data).args(args);
        command.arg("--schema").arg(&schema);
        if let Some(point) = failpoint {
            command.env("FAILPOINTS", format!("{point}=panic"));
        }
        command.output().unwrap()
    };
    let stored = || {
        let store = Store::open(&data).unwrap();
        let summary = store.datasets().unwrap();
        summary.first().map_or(0, |d| d.rows + d.pending)
    };
    for _ in 0..2 {
        let out = run(&["ingest", "consumption", &f], Some("ingest-committed"));
        assert!(!out.status.success());
        assert_eq!(stored(), rows);
    }
    let out = run(&["ingest", "consumption", &f], None);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("was already ingested into consumption as batch 1")
            && err.contains("--allow-duplicate"),
        "{err}"
    );
    assert_eq!(stored(), rows, "exactly the file's rows, once");

    // The catalog lists the batch with its file's SHA-256.
    let sha256 = zkfabric::node::store::sha256_hex(&std::fs::read(&f).unwrap());
    let shown = ok(zkfabric(&data, &["catalog", "show", "consumption"]));
    assert!(shown.contains(&sha256) && shown.contains(&f), "{shown}");

    // Two files of the same bytes in one ingest: refused, nothing stored.
    let (other, twin) = (tmp.path().join("other.csv"), tmp.path().join("twin.csv"));
    generate(&other, 100, 2);
    std::fs::copy(&other, &twin).unwrap();
    let out = run(
        &[
            "ingest",
            "consumption",
            other.to_str().unwrap(),
            twin.to_str().unwrap(),
        ],
        None,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("has the same bytes as"), "{err}");
    assert_eq!(stored(), rows);
    // A copy under another name is the same file.
    let copy = tmp.path().join("copy.csv");
    std::fs::copy(&f, &copy).unwrap();
    let out = run(&["ingest", "consumption", copy.to_str().unwrap()], None);
    assert!(!out.status.success());
    assert_eq!(stored(), rows);

    // Asked for, a byte-identical file is ingested again and recorded as such.
    let out = ok(run(
        &[
            "ingest",
            "consumption",
            copy.to_str().unwrap(),
            "--allow-duplicate",
        ],
        None,
    ));
    assert!(out.contains("committed as batch 2"), "{out}");
    assert_eq!(stored(), 2 * rows);
    let shown = ok(zkfabric(&data, &["catalog", "show", "consumption"]));
    assert!(shown.contains("batch 1)"), "{shown}");
}

#[test]
fn a_process_killed_at_random_times_leaves_a_consistent_store() {
    let tmp = TempDir::new().unwrap();
    let rows = 12_000u64;
    let f = generated_csv(tmp.path(), rows);
    for (attempt, delay_ms) in [5u64, 30, 80, 150, 300, 600, 1200].into_iter().enumerate() {
        let data = tmp.path().join(format!("data{attempt}"));
        let mut child = Command::new(env!("CARGO_BIN_EXE_zkfabric"))
            .arg("--data-dir")
            .arg(&data)
            .args(["ingest", "consumption", &f])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        child.wait().unwrap();
        assert_consistent(&data, rows);
        restart_and_seal(&data, rows);
    }
}

/// A consumption schema with 8-row chunks, so that setup and proving are instant,
/// answered exactly (threshold-only) so that tampering with a released count is seen.
fn tiny_schema(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("tiny.toml");
    let source = Schema::builtin("consumption")
        .unwrap()
        .threshold_only()
        .unwrap()
        .source
        .replace("chunk_rows = 1024", "chunk_rows = 8");
    std::fs::write(&path, source).unwrap();
    path
}

#[test]
fn query_verify_and_tampering_from_the_command_line() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let schema = tiny_schema(tmp.path());
    let csv = generated_csv(tmp.path(), 500);
    ok(zkfabric(
        &data,
        &[
            "ingest",
            "consumption",
            &csv,
            "--schema",
            schema.to_str().unwrap(),
        ],
    ));
    ok(zkfabric(&data, &["seal", "consumption"]));
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        "[query]\ndefault_purpose = \"energy-research\"\nmin_group_size = 5\ncombine_inputs = 16\nin_list_items = 4\n",
    )
    .unwrap();
    let config = config.to_str().unwrap();
    let sql = "SELECT district, COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 7 AND 22 GROUP BY district";

    // Keys first, with their fingerprints in a trusted-keys file.
    let fingerprints = ok(zkfabric(&data, &["--config", config, "setup", sql]));
    let trusted = tmp.path().join("trusted.txt");
    std::fs::write(&trusted, &fingerprints).unwrap();
    assert_eq!(
        fingerprints
            .lines()
            .filter(|l| l.starts_with("sha256:"))
            .count(),
        3
    );

    let explained = ok(zkfabric(
        &data,
        &["--config", config, "query", sql, "--explain"],
    ));
    assert!(
        explained.contains("63 of 63 touched")
            && !explained.contains("key missing")
            && explained.contains(" constraints, about "),
        "{explained}"
    );
    let answer = tmp.path().join("answer.zkf");
    let a = answer.to_str().unwrap();
    let out = ok(zkfabric(
        &data,
        &["--config", config, "query", sql, "--out", a, "--json"],
    ));
    assert!(
        out.contains("district") && out.contains("proved 63 chunk(s)"),
        "{out}"
    );
    assert!(!out.contains("warning"), "the keys were set up: {out}");
    assert!(tmp.path().join("answer.zkf.json").exists());

    // The same answer (from the proof cache) for researchers' tools: CSV alone on
    // standard output, JSON in a file; kWh, not the stored kWh x 1000; suppressed cells
    // empty.
    let again = tmp.path().join("again.zkf");
    let answer_as = |more: &[&str]| {
        let mut args = vec!["--config", config, "query", sql];
        args.extend(["--out", again.to_str().unwrap()]);
        args.extend(more);
        ok(zkfabric(&data, &args))
    };
    let csv = answer_as(&["--format", "csv"]);
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("district,count(*),sum(consumption.kwh)"),
        "{csv}"
    );
    let records: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(records.len(), 12, "one record per district: {csv}");
    let table = tmp.path().join("answer.json");
    let shown = answer_as(&["--format", "json", "--out-table", table.to_str().unwrap()]);
    assert!(shown.contains("sum(consumption.kwh) (kWh)"), "{shown}");
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&table).unwrap()).unwrap();
    assert_eq!(json["units"]["sum(consumption.kwh)"], "kWh");
    let rows = json["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 12);
    let bundle = zkfabric::verifier::bundle::read(&again).unwrap();
    let stored = &bundle.result.as_ref().unwrap().rows;
    let mut released = 0;
    for ((record, row), stored) in records.iter().zip(rows).zip(stored) {
        assert_eq!(record[0], row["district"].as_str().unwrap());
        match record[1] {
            "" => assert!(row["count(*)"].is_null() && record[2].is_empty()),
            count => {
                released += 1;
                assert_eq!(count, row["count(*)"].to_string());
                let kwh: f64 = record[2].parse().unwrap();
                assert_eq!(kwh, row["sum(consumption.kwh)"].as_f64().unwrap());
                // The bundle keeps the stored Wh; the table shows kWh.
                assert_eq!((kwh * 1000.0).round().to_string(), stored.sums[0]);
            }
        }
    }
    assert!(released > 0, "{csv}");
    // And as a chart: one panel per number, a bar per district, suppressed ones marked.
    let chart = tmp.path().join("answer.svg");
    let shown = answer_as(&["--chart", chart.to_str().unwrap()]);
    assert!(shown.contains("chart        "), "{shown}");
    let svg = std::fs::read_to_string(&chart).unwrap();
    assert!(svg.starts_with("<svg") && svg.contains("sum(consumption.kwh) (kWh)"));
    for district in ["Zhongzheng", "Daan", "Wenshan"] {
        assert!(svg.contains(district), "{district} is labelled");
    }
    let suppressed = stored.iter().filter(|r| r.suppressed).count();
    assert_eq!(svg.matches(">\nsuppressed\n<").count(), 2 * suppressed);

    let catalog = ok(zkfabric(&data, &["catalog"]));
    let node_key = catalog
        .lines()
        .next()
        .unwrap()
        .trim_start_matches("node key ")
        .to_string();
    let t = trusted.to_str().unwrap();
    // The verifier needs no data directory.
    let nowhere = tmp.path().join("nowhere");
    let verified = ok(zkfabric(
        &nowhere,
        &["verify", a, "--trusted-keys", t, "--node-key", &node_key],
    ));
    assert!(verified.contains("keys         pinned by"), "{verified}");
    assert!(!nowhere.exists(), "verify touched no data directory");
    // A verifier exports the verified answer as the node printed it: CSV alone on
    // standard output (the report on standard error), only once every check held.
    let again_path = again.to_str().unwrap();
    let out = zkfabric(
        &nowhere,
        &["verify", again_path, "--trusted-keys", t, "--format", "csv"],
    );
    let exported = ok(out.clone());
    assert_eq!(exported, csv, "the same CSV as `query --format csv`");
    // And the same chart as `query --chart` drew of it.
    let redrawn = tmp.path().join("verified.svg");
    ok(zkfabric(
        &nowhere,
        &[
            "verify",
            again_path,
            "--trusted-keys",
            t,
            "--chart",
            redrawn.to_str().unwrap(),
        ],
    ));
    assert_eq!(std::fs::read_to_string(&redrawn).unwrap(), svg);
    assert!(String::from_utf8_lossy(&out.stderr).contains("verified     consumption"));
    let mut forged = zkfabric::verifier::bundle::read(&again).unwrap();
    forged.result.as_mut().unwrap().rows[0].count += 1;
    forged.result.as_mut().unwrap().rows[0].suppressed = false;
    let forged_path = tmp.path().join("forged.zkf");
    zkfabric::verifier::bundle::write(&forged, &forged_path, false).unwrap();
    let out = zkfabric(
        &nowhere,
        &[
            "verify",
            forged_path.to_str().unwrap(),
            "--trusted-keys",
            t,
            "--format",
            "csv",
        ],
    );
    assert!(
        !out.status.success() && out.stdout.is_empty(),
        "nothing exported"
    );
    ok(zkfabric(
        &nowhere,
        &[
            "verify",
            tmp.path().join("answer.zkf.json").to_str().unwrap(),
            "--trusted-keys",
            t,
            "--sql",
            sql,
            "--purpose",
            "energy-research",
            "--min-group-size",
            "5",
            "--epoch",
            "2",
        ],
    ));
    // The head of the manifest chain, pinned from `catalog show`, checked offline
    // against the chain `catalog chain` wrote.
    let shown = ok(zkfabric(&data, &["catalog", "show", "consumption"]));
    let head = shown
        .lines()
        .find_map(|l| l.strip_prefix("manifest     "))
        .unwrap()
        .to_string();
    let chain = tmp.path().join("chain.json");
    let c = chain.to_str().unwrap();
    let wrote = ok(zkfabric(
        &data,
        &["catalog", "chain", "consumption", "--out", c],
    ));
    assert!(wrote.contains(&head), "{wrote}");
    let fresh = ok(zkfabric(
        &nowhere,
        &[
            "verify",
            a,
            "--trusted-keys",
            t,
            "--manifest-head",
            &head,
            "--manifest-chain",
            c,
        ],
    ));
    assert!(fresh.contains("the latest"), "{fresh}");
    let other_head = format!("sha256:{}", "0".repeat(64));
    let out = zkfabric(
        &nowhere,
        &[
            "verify",
            a,
            "--trusted-keys",
            t,
            "--manifest-head",
            &other_head,
            "--manifest-chain",
            c,
        ],
    );
    assert!(
        !out.status.success(),
        "a bundle off the pinned chain verified"
    );
    // Without pinned keys, verify refuses unless told to use the bundle's own keys, and
    // then says first that the answer is unverified.
    let out = zkfabric(&nowhere, &["verify", a]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("no verifying keys are pinned"));
    let unpinned = ok(zkfabric(&nowhere, &["verify", a, "--allow-unpinned-keys"]));
    assert!(unpinned.starts_with("UNVERIFIED"), "{unpinned}");
    // What the researcher asked must be what the bundle answers.
    for (flag, value, message) in [
        (
            "--sql",
            "SELECT COUNT(*) FROM consumption",
            "--sql does not mean",
        ),
        ("--purpose", "public-health", "purpose:"),
        ("--min-group-size", "10", "min_group_size:"),
        ("--epoch", "1", "epoch:"),
    ] {
        let out = zkfabric(&nowhere, &["verify", a, "--trusted-keys", t, flag, value]);
        assert!(!out.status.success(), "{flag}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            err.contains("REJECTED") && err.contains(message),
            "{flag}: {err}"
        );
    }

    // A bundle with its SQL changed, or a proof flipped, or another node's key: refused.
    let json = std::fs::read_to_string(tmp.path().join("answer.zkf.json")).unwrap();
    for (what, edited) in [
        ("sql", json.replace("BETWEEN 7 AND 22", "BETWEEN 7 AND 21")),
        (
            "sql comment",
            json.replace("GROUP BY district", "GROUP BY district -- 0xdeadbeef"),
        ),
        (
            "result",
            json.replacen("\"count\": \"", "\"count\": \"1", 1),
        ),
    ] {
        assert_ne!(edited, json, "{what}");
        let path = tmp.path().join(format!("{what}.json"));
        std::fs::write(&path, edited).unwrap();
        let out = zkfabric(
            &nowhere,
            &["verify", path.to_str().unwrap(), "--trusted-keys", t],
        );
        assert!(!out.status.success(), "{what}: a tampered bundle verified");
        assert!(String::from_utf8_lossy(&out.stderr).contains("REJECTED"));
    }
    let other_key = "11".repeat(32);
    let out = zkfabric(
        &nowhere,
        &["verify", a, "--trusted-keys", t, "--node-key", &other_key],
    );
    assert!(!out.status.success());
    // Trusted-keys files name each key's shape: a fingerprint alone is refused, and a
    // key trusted for another shape is not trusted for this one.
    let lines: Vec<&str> = fingerprints
        .lines()
        .filter(|l| l.starts_with("sha256:"))
        .collect();
    let bare = tmp.path().join("bare.txt");
    std::fs::write(&bare, lines[0].split(' ').next().unwrap()).unwrap();
    let out = zkfabric(
        &nowhere,
        &["verify", a, "--trusted-keys", bare.to_str().unwrap()],
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("without the shape it is trusted for"));
    let (fp0, shape0) = lines[0].split_once(' ').unwrap();
    let (fp1, shape1) = lines[1].split_once(' ').unwrap();
    let swapped = tmp.path().join("swapped.txt");
    std::fs::write(
        &swapped,
        format!("{fp0} {shape1}\n{fp1} {shape0}\n{}\n", lines[2]),
    )
    .unwrap();
    let out = zkfabric(
        &nowhere,
        &["verify", a, "--trusted-keys", swapped.to_str().unwrap()],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("trusted for another shape only"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Refused SQL names the construct; nothing is proven.
    let out = zkfabric(
        &data,
        &["--config", config, "query", "SELECT * FROM consumption"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("raw rows are never returned"));
    let out = zkfabric(&data, &["query", "SELECT COUNT(*) FROM consumption"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("--purpose"));
}

/// Under `tmp`: consumption in 64-row chunks rolled up daily by district summing kWh
/// (the schema file), and 300 generated readings (the CSV file).
fn daily_rollup(tmp: &Path) -> (PathBuf, String) {
    let schema = tmp.join("rolled.toml");
    let base = Schema::builtin("consumption")
        .unwrap()
        .with_chunk_rows(64)
        .unwrap();
    let rolled = common::with_rollup(&base, "daily", &["district", "day(time)"], &["kwh"]);
    std::fs::write(&schema, rolled.source).unwrap();
    (schema, generated_csv(tmp, 300))
}

#[test]
fn a_crash_while_rolling_up_leaves_the_store_as_before_the_seal() {
    // A daily roll-up in 64-row chunks: ingesting 300 rows seals four chunks and rolls
    // them up. A crash after the cell files are written, or before the commit, leaves
    // the rows pending, no sealing and no cell file; after the commit, all of it.
    let tmp = TempDir::new().unwrap();
    let (schema, csv) = daily_rollup(tmp.path());
    for (point, committed) in [
        ("seal-cells-written", false),
        ("seal-before-commit", false),
        ("seal-committed", true),
    ] {
        let data = tmp.path().join(point);
        let run = |args: &[&str], failpoint: Option<&str>| {
            let mut command = Command::new(env!("CARGO_BIN_EXE_zkfabric"));
            command.arg("--data-dir").arg(&data).args(args);
            if args[0] == "ingest" {
                command.arg("--schema").arg(&schema);
            }
            if let Some(point) = failpoint {
                command.env("FAILPOINTS", format!("{point}=panic"));
            }
            command.output().unwrap()
        };
        let out = run(&["ingest", "consumption", &csv], Some(point));
        assert!(!out.status.success(), "{point} was not reached");
        let cells_dir = data.join("consumption/rollups/daily");
        let cell_files = || {
            std::fs::read_dir(&cells_dir)
                .map(|d| d.count())
                .unwrap_or(0)
        };
        {
            let store = Store::open(&data).unwrap();
            let summary = &store.datasets().unwrap()[0];
            assert_eq!(
                (summary.rows, summary.pending),
                if committed { (256, 44) } else { (0, 300) },
                "{point}"
            );
            if !committed {
                assert_eq!(
                    cell_files(),
                    0,
                    "{point}: cell files of no sealing were removed"
                );
                assert!(store.epochs("consumption").unwrap().is_empty());
            }
        }
        let out = run(&["seal", "consumption"], None);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let said = String::from_utf8_lossy(&out.stdout);
        assert!(said.contains("(roll-up daily)"), "{said}");
        let store = Store::open(&data).unwrap();
        let manifest = store.manifest("consumption", None).unwrap().manifest;
        assert_eq!(manifest.check_rollups(), Ok(()));
        let listed: usize = manifest.rollups[0]
            .sealings
            .iter()
            .map(|s| s.cells.len())
            .sum();
        assert_eq!(cell_files(), listed, "{point}");
        assert_eq!(manifest.chunks.iter().map(|c| c.rows).sum::<u64>(), 300);
    }
}

#[test]
fn seal_proves_rollups_when_asked_and_auto_then_answers_from_the_cells() {
    // A daily roll-up by district in 64-row chunks over 300 generated readings: fewer
    // cells than rows. Ingest seals four chunks and leaves their sealing unproven, so
    // auto reads the rows and says why.
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let (schema, csv) = daily_rollup(tmp.path());
    let s = schema.to_str().unwrap();
    let out = ok(zkfabric(
        &data,
        &["ingest", "consumption", &csv, "--schema", s],
    ));
    assert!(
        out.contains("(roll-up daily)")
            && out.contains("1 sealing(s) not proven yet")
            && out.contains("--prove-rollups"),
        "{out}"
    );
    let sql = "SELECT district, COUNT(*) FROM consumption GROUP BY district";
    let explain = |data: &Path| {
        ok(zkfabric(
            data,
            &["query", sql, "--purpose", "energy-research", "--explain"],
        ))
    };
    let said = explain(&data);
    assert!(
        said.contains("from the rows: roll-up `daily` covers the query but its sealings are not all proven yet"),
        "{said}"
    );
    // Sealing the last 44 rows with --prove-rollups proves both sealings; then auto
    // answers from the cells, and the answer verifies.
    let out = ok(zkfabric(&data, &["seal", "consumption", "--prove-rollups"]));
    assert!(
        out.contains("proved roll-up daily sealing 0")
            && out.contains("proved roll-up daily sealing 1"),
        "{out}"
    );
    let said = explain(&data);
    assert!(said.contains("from roll-up `daily`"), "{said}");
    let bundle = tmp.path().join("daily.zkf");
    let answer = ok(zkfabric(
        &data,
        &[
            "query",
            sql,
            "--purpose",
            "energy-research",
            "--out",
            bundle.to_str().unwrap(),
        ],
    ));
    assert!(
        answer.contains("of roll-up daily (with its 2 sealing proof(s))"),
        "{answer}"
    );
    let verified = ok(zkfabric(
        &tmp.path().join("nowhere"),
        &["verify", bundle.to_str().unwrap(), "--allow-unpinned-keys"],
    ));
    assert!(verified.contains("daily"), "{verified}");
    // Nothing is left to prove.
    let out = ok(zkfabric(&data, &["seal", "consumption", "--prove-rollups"]));
    assert!(!out.contains("proved roll-up"), "{out}");
}
