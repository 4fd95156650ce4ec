//! The data layer: ingest, seal, manifests, and what a refused file leaves behind.

use std::{fs, path::Path, path::PathBuf};

mod common;

use tempfile::TempDir;
use zkfabric::{
    node::store::{Admission, Eligible, Store, StoreError},
    shared::records,
    shared::synth,
    verifier::manifest::fr_to_hex,
    verifier::schema::Schema,
};

fn consumption() -> Schema {
    Schema::builtin("consumption").unwrap()
}

/// Writes `rows` generated consumption rows to `dir/name`.
fn generated(dir: &Path, name: &str, rows: usize, seed: u64) -> (PathBuf, Vec<Vec<u64>>) {
    let schema = consumption();
    let columns = synth::generate(&schema, rows, seed, |_| {}).unwrap();
    let path = dir.join(name);
    records::write_file(
        &path,
        records::arrow_schema(&schema),
        [records::to_batch(&schema, &columns, 0..rows)],
    )
    .unwrap();
    (path, columns)
}

/// `file` (CSV) without its `household` column, as a donor's file is (the node sets the
/// unit), written to `out`.
fn without_unit(file: &Path, out: &Path) -> PathBuf {
    let text = fs::read_to_string(file).unwrap();
    let header = text.lines().next().unwrap();
    let unit = header.split(',').position(|h| h == "household").unwrap();
    let rows: Vec<String> = text
        .lines()
        .map(|l| {
            let mut fields: Vec<&str> = l.split(',').collect();
            fields.remove(unit);
            fields.join(",")
        })
        .collect();
    fs::write(out, rows.join("\n") + "\n").unwrap();
    out.to_path_buf()
}

fn open(dir: &Path) -> Store {
    let mut store = Store::open(&dir.join("data")).unwrap();
    store.register(&consumption()).unwrap();
    store
}

fn files_under(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["pending", "chunks"] {
        if let Ok(entries) = fs::read_dir(dir.join("data/consumption").join(sub)) {
            out.extend(
                entries.map(|e| format!("{sub}/{}", e.unwrap().file_name().to_string_lossy())),
            );
        }
    }
    out.sort();
    out
}

#[test]
fn every_format_round_trips_through_ingest_and_seal() {
    let tmp = TempDir::new().unwrap();
    let mut store = open(tmp.path());
    let mut expected: Vec<Vec<u64>> = vec![Vec::new(); consumption().declared().len()];
    for (i, ext) in ["csv", "parquet", "arrow"].iter().enumerate() {
        let (path, columns) = generated(tmp.path(), &format!("part.{ext}"), 700, i as u64);
        for (all, part) in expected.iter_mut().zip(columns) {
            all.extend(part);
        }
        store.ingest("consumption", &[path], false).unwrap();
    }
    // 2100 rows: two full chunks were sealed on the way, 52 rows wait.
    assert_eq!(store.pending_rows("consumption").unwrap(), 2100 - 2048);
    let sealed = store.seal("consumption").unwrap().unwrap();
    assert_eq!((sealed.chunks, sealed.rows), (1, 52));
    let manifest = store.manifest("consumption", None).unwrap();
    assert!(manifest.verify(Some(&store.node_key())).is_ok());
    assert_eq!(manifest.manifest.chunks.len(), 3);
    // Every chunk holds the ingested rows in order and its commitment recomputes.
    let layout = consumption().layout().unwrap();
    for entry in &manifest.manifest.chunks {
        let chunk = store.chunk("consumption", entry.index).unwrap();
        assert_eq!(fr_to_hex(&chunk.commitment(&layout)), entry.commitment);
        let start = entry.index as usize * 1024;
        for (c, values) in expected.iter().enumerate() {
            assert_eq!(
                &chunk.columns[c][..entry.rows as usize],
                &values[start..start + entry.rows as usize]
            );
        }
    }
}

#[test]
fn epochs_chain_and_never_change() {
    let tmp = TempDir::new().unwrap();
    let mut store = open(tmp.path());
    let (a, _) = generated(tmp.path(), "a.csv", 100, 1);
    store.ingest("consumption", &[a], false).unwrap();
    store.seal("consumption").unwrap();
    let first = store.manifest("consumption", Some(1)).unwrap();
    let (b, _) = generated(tmp.path(), "b.csv", 100, 2);
    store.ingest("consumption", &[b], false).unwrap();
    store.seal("consumption").unwrap();
    let second = store.manifest("consumption", None).unwrap();
    assert_eq!(second.manifest.epoch, 2);
    assert_eq!(second.manifest.previous, Some(first.manifest.hash()));
    assert_eq!(second.manifest.chunks[0], first.manifest.chunks[0]);
    assert_eq!(store.manifest("consumption", Some(1)).unwrap(), first);
    assert!(matches!(
        store.manifest("consumption", Some(3)),
        Err(StoreError::UnknownEpoch { .. })
    ));
    assert!(
        store.seal("consumption").unwrap().is_none(),
        "nothing pending"
    );
}

#[test]
fn a_bad_file_is_refused_by_row_and_column_and_stores_nothing() {
    let tmp = TempDir::new().unwrap();
    let mut store = open(tmp.path());
    let (good, _) = generated(tmp.path(), "good.csv", 50, 1);
    store
        .ingest("consumption", std::slice::from_ref(&good), false)
        .unwrap();
    let before = (store.datasets().unwrap(), files_under(tmp.path()));

    let (bad, _) = generated(tmp.path(), "bad.csv", 50, 2);
    let text = fs::read_to_string(&bad).unwrap();
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    // Row 17: an age of 200 does not fit 7 bits.
    let header: Vec<String> = lines[0].split(',').map(String::from).collect();
    let age = header.iter().position(|h| *h == "age").unwrap();
    let mut fields: Vec<String> = lines[17].split(',').map(String::from).collect();
    fields[age] = "200".into();
    lines[17] = fields.join(",");
    fs::write(&bad, lines.join("\n") + "\n").unwrap();

    let err = store
        .ingest("consumption", &[good.clone(), bad.clone()], false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.csv: row 17, column `age`: 200 does not fit 7 bits"),
        "{err}"
    );
    assert_eq!(
        (store.datasets().unwrap(), files_under(tmp.path())),
        before,
        "nothing stored"
    );

    for (edit, message) in [
        (
            ("district", "Atlantis"),
            "\"Atlantis\" is neither a label nor a code",
        ),
        (("kwh", "-5"), "\"-5\" is not an unsigned integer"),
        (("consent", "marketing"), "unknown purpose \"marketing\""),
        (("hour", ""), "empty value"),
    ] {
        let column = header.iter().position(|h| *h == edit.0).unwrap();
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        let mut fields: Vec<String> = lines[3].split(',').map(String::from).collect();
        fields[column] = edit.1.into();
        lines[3] = fields.join(",");
        fs::write(&bad, lines.join("\n") + "\n").unwrap();
        let err = store
            .ingest("consumption", std::slice::from_ref(&bad), false)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!("row 3, column `{}`: {message}", edit.0)),
            "{err}"
        );
    }
    fs::write(&bad, text.replace("household_size", "household_count")).unwrap();
    let err = store
        .ingest("consumption", std::slice::from_ref(&bad), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("column `household_count` is not in dataset consumption"),
        "{err}"
    );

    // The privacy unit: a household's 50 rows again (the same file twice) take it past
    // nothing yet, but 150 more of the same household pass its bound of 168 rows; and a
    // household whose district changes between its rows is refused too.
    let (same, _) = generated(tmp.path(), "same.csv", 50, 1);
    let mut many: Vec<String> = vec![lines[0].clone()];
    for _ in 0..3 {
        for line in &fs::read_to_string(&same)
            .unwrap()
            .lines()
            .collect::<Vec<_>>()[1..]
        {
            many.push(line.to_string());
        }
    }
    fs::write(&bad, many.join("\n") + "\n").unwrap();
    let err = store
        .ingest("consumption", std::slice::from_ref(&bad), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would have 200 rows (50 stored before); the schema allows 168 rows per unit"),
        "{err}"
    );
    let district = header.iter().position(|h| *h == "district").unwrap();
    let mut moved: Vec<String> = text.lines().map(String::from).collect();
    let mut fields: Vec<String> = moved[5].split(',').map(String::from).collect();
    let other = if fields[district] == "Daan" {
        "Xinyi"
    } else {
        "Daan"
    };
    fields[district] = other.into();
    moved[5] = fields.join(",");
    fs::write(&bad, moved.join("\n") + "\n").unwrap();
    let err = store
        .ingest("consumption", std::slice::from_ref(&bad), false)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("bad.csv row 5: household") && err.contains("has district"),
        "{err}"
    );

    assert_eq!(
        (store.datasets().unwrap(), files_under(tmp.path())),
        before,
        "still nothing stored"
    );
}

#[test]
fn a_changed_schema_is_refused() {
    let tmp = TempDir::new().unwrap();
    let mut store = open(tmp.path());
    let changed = Schema::parse(
        "c.toml",
        &consumption()
            .source
            .replace("chunk_rows = 1024", "chunk_rows = 512"),
    )
    .unwrap();
    assert!(matches!(
        store.register(&changed),
        Err(StoreError::SchemaChanged(_))
    ));
}

#[test]
fn chunks_committed_in_an_earlier_format_are_refused_by_name() {
    let tmp = TempDir::new().unwrap();
    let (file, _) = generated(tmp.path(), "rows.parquet", 100, 3);
    let mut store = open(tmp.path());
    store.ingest("consumption", &[file], false).unwrap();
    store.seal("consumption").unwrap();
    drop(store);
    let catalog = tmp.path().join("data/catalog.sqlite");
    // A catalog from before the format was recorded (wide columns one value per element).
    rusqlite::Connection::open(&catalog)
        .unwrap()
        .pragma_update(None, "user_version", 0)
        .unwrap();
    let err = Store::open(&tmp.path().join("data")).err().unwrap();
    assert!(matches!(err, StoreError::Format { found: 1, .. }), "{err}");
    assert!(err.to_string().contains("new data directory"), "{err}");
    // An empty store of any age simply takes the current format.
    let empty = tmp.path().join("empty");
    drop(Store::open(&empty).unwrap());
    rusqlite::Connection::open(empty.join("catalog.sqlite"))
        .unwrap()
        .pragma_update(None, "user_version", 0)
        .unwrap();
    drop(Store::open(&empty).unwrap());
}

/// `SUM(kwh)` per chunk and district, natively, over the rows of the first `rows`.
fn native_sums(columns: &[Vec<u64>], rows: usize, chunk_rows: usize) -> Vec<(u64, u64, u64)> {
    let schema = consumption();
    let district = schema.column("district").unwrap().0;
    let kwh = schema.column("kwh").unwrap().0;
    let mut sums = std::collections::BTreeMap::new();
    let rows = columns[district].iter().zip(&columns[kwh]).take(rows);
    for (row, (district, kwh)) in rows.enumerate() {
        *sums
            .entry(((row / chunk_rows) as u64, *district))
            .or_insert(0) += kwh;
    }
    sums.into_iter().map(|((c, d), s)| (c, d, s)).collect()
}

#[tokio::test]
async fn an_epoch_is_a_datafusion_table_of_exactly_its_chunks() {
    use datafusion::arrow::array::{AsArray, RecordBatch};
    use datafusion::arrow::datatypes::UInt64Type;
    use datafusion::prelude::SessionContext;

    let tmp = TempDir::new().unwrap();
    let mut store = open(tmp.path());
    let (a, first) = generated(tmp.path(), "a.parquet", 1500, 1);
    store.ingest("consumption", &[a], false).unwrap();
    store.seal("consumption").unwrap();
    let (b, _) = generated(tmp.path(), "b.parquet", 700, 2);
    store.ingest("consumption", &[b], false).unwrap();
    store.seal("consumption").unwrap();

    let sql = "SELECT _chunk, district, SUM(kwh) FROM consumption \
               GROUP BY _chunk, district ORDER BY _chunk, district";
    let rows = |batches: Vec<RecordBatch>| -> Vec<(u64, u64, u64)> {
        let mut out = Vec::new();
        for b in batches {
            let col = |i: usize| b.column(i).as_primitive::<UInt64Type>().clone();
            let (c, d, s) = (col(0), col(1), col(2));
            out.extend((0..b.num_rows()).map(|r| (c.value(r), d.value(r), s.value(r))));
        }
        out
    };
    // Ingesting sealed the first full chunk (epoch 1), sealing the rest (epoch 2): epoch 2
    // holds the first file's 1500 rows in two chunks, whatever was sealed later.
    let ctx = SessionContext::new();
    let manifest =
        zkfabric::node::tables::register_epoch(&ctx, &store, "consumption", Some(2)).unwrap();
    assert_eq!(manifest.manifest.chunks.len(), 2);
    let epoch1 = rows(ctx.sql(sql).await.unwrap().collect().await.unwrap());
    assert_eq!(epoch1, native_sums(&first, 1500, 1024));

    // The latest epoch has a third chunk; `_row` numbers rows within each chunk.
    let ctx = SessionContext::new();
    zkfabric::node::tables::register_epoch(&ctx, &store, "consumption", None).unwrap();
    let counts = ctx
        .sql("SELECT _chunk, COUNT(*), MAX(_row) FROM consumption GROUP BY _chunk ORDER BY _chunk")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let per_chunk: Vec<(u64, i64, u64)> = counts
        .iter()
        .flat_map(|b| {
            let chunk = b.column(0).as_primitive::<UInt64Type>().clone();
            let count = b
                .column(1)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>()
                .clone();
            let max_row = b.column(2).as_primitive::<UInt64Type>().clone();
            (0..b.num_rows()).map(move |r| (chunk.value(r), count.value(r), max_row.value(r)))
        })
        .collect();
    assert_eq!(
        per_chunk,
        vec![(0, 1024, 1023), (1, 476, 475), (2, 700, 699)]
    );
    assert!(zkfabric::node::tables::register_epoch(&ctx, &store, "consumption", Some(9)).is_err());
}

#[test]
fn a_donor_is_one_unit_however_many_donations_it_makes() {
    let tmp = TempDir::new().unwrap();
    let mut store = open(tmp.path());
    // One household's readings without the unit column (the node sets it from the
    // credential's nullifier), 100 rows a donation.
    let (file, _) = generated(tmp.path(), "mine.csv", 100, 9);
    let mine = without_unit(&file, &tmp.path().join("donation.csv"));
    let donor = Admission {
        eligible: Some(Eligible {
            nullifier: "ab".repeat(32),
            proof_sha256: "01".repeat(32),
            limit: 5,
        }),
        organisation: None,
    };
    let another_proof = |n: u8| Admission {
        eligible: donor.eligible.clone().map(|e| Eligible {
            proof_sha256: format!("{n:02x}").repeat(32),
            ..e
        }),
        ..donor.clone()
    };
    let purposes = ["public-health".to_string()];
    store
        .donate("consumption", &mine, &purposes, &"00".repeat(32), &donor)
        .unwrap();
    // The same donor again: 200 rows would pass the bound of 168 for one household.
    let err = store
        .donate(
            "consumption",
            &mine,
            &purposes,
            &"00".repeat(32),
            &another_proof(2),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("would have 200 rows (100 stored before)"),
        "{err}"
    );
    // A credential donor cannot name its own unit to escape that.
    let err = store
        .donate(
            "consumption",
            &file,
            &purposes,
            &"00".repeat(32),
            &another_proof(3),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("column `household`: the node sets the privacy unit"),
        "{err}"
    );
    assert_eq!(store.pending_rows("consumption").unwrap(), 100);
}

/// A store of consumption in chunks of 64 rows, rolled up daily by district and
/// household size, and its schema.
fn rolled_up(dir: &Path) -> (Store, Schema) {
    let base = consumption().with_chunk_rows(64).unwrap();
    let schema = common::with_rollup(
        &base,
        "daily",
        &["district", "household_size", "day(time)"],
        &["kwh"],
    );
    let mut store = Store::open(&dir.join("data")).unwrap();
    store.register(&schema).unwrap();
    (store, schema)
}

/// Per (district, household size, day's first second), per purpose, the rows consented to
/// it and their kWh clipped at 1000 (the schema's bound), computed from the rows alone.
type Cells = std::collections::BTreeMap<(u64, u64, u64), Vec<u64>>;

fn expected_cells(schema: &Schema, columns: &[Vec<u64>]) -> Cells {
    let at = |name: &str| schema.column(name).unwrap().0;
    let [time, district, size, consent, kwh] =
        ["time", "district", "household_size", "consent", "kwh"].map(at);
    let mut cells = Cells::new();
    let rows = columns[time].iter().enumerate();
    for (row, &t) in rows {
        let cell = cells
            .entry((columns[district][row], columns[size][row], t - t % 86_400))
            .or_insert_with(|| vec![0; 6]);
        for purpose in 0..3 {
            if columns[consent][row] >> purpose & 1 == 1 {
                cell[2 * purpose] += 1;
                cell[2 * purpose + 1] += columns[kwh][row].min(1000);
            }
        }
    }
    cells
}

/// The cells of the latest epoch's roll-up, read back from the store: every cell chunk
/// of every sealing the manifest lists, its commitment checked against the manifest's.
fn stored_cells(store: &Store, schema: &Schema) -> Cells {
    let manifest = store.manifest(&schema.name, None).unwrap().manifest;
    assert_eq!(manifest.check_rollups(), Ok(()));
    let shapes = schema.rollup_shapes(&schema.rollups[0], 64).unwrap();
    let mut cells = Cells::new();
    for sealing in &manifest.rollups[0].sealings {
        for entry in &sealing.cells {
            let chunk = store
                .cell_chunk(&schema.name, "daily", entry.index)
                .unwrap();
            assert_eq!(
                fr_to_hex(&chunk.commitment(shapes.cell_layout())),
                entry.commitment
            );
            for row in 0..entry.rows as usize {
                let value = |c: usize| chunk.columns[c][row];
                let cell = cells
                    .entry((value(0), value(1), value(2)))
                    .or_insert_with(|| vec![0; 6]);
                for (total, column) in cell.iter_mut().zip(3..9) {
                    *total += value(column);
                }
            }
        }
    }
    cells.retain(|_, values| values.iter().any(|&v| v > 0));
    cells
}

#[test]
fn a_seal_rolls_its_new_chunks_up_into_committed_cells_of_each_purpose() {
    let tmp = TempDir::new().unwrap();
    let (mut store, schema) = rolled_up(tmp.path());
    let (file, columns) = generated(tmp.path(), "a.csv", 300, 4);
    // 256 rows are sealed on ingest (epoch 1, one sealing), 44 by the seal (epoch 2).
    let (_, sealed) = store.ingest("consumption", &[file], false).unwrap();
    let first = sealed.unwrap();
    assert_eq!(first.rollups.len(), 1);
    assert_eq!(
        (first.rollups[0].rollup.as_str(), first.rollups[0].chunks),
        ("daily", 4)
    );
    let second = store.seal("consumption").unwrap().unwrap();
    assert_eq!(second.rollups[0].chunks, 1);
    let manifest = store.manifest("consumption", None).unwrap().manifest;
    let sealings: Vec<&Vec<u64>> = manifest.rollups[0]
        .sealings
        .iter()
        .map(|s| &s.chunks)
        .collect();
    assert_eq!(sealings, [&vec![0, 1, 2, 3], &vec![4]]);
    let earlier = store.manifest("consumption", Some(1)).unwrap().manifest;
    assert_eq!(
        earlier.rollups[0].sealings,
        manifest.rollups[0].sealings[..1]
    );
    let mut expected = expected_cells(&schema, &columns);
    expected.retain(|_, values| values.iter().any(|&v| v > 0));
    assert_eq!(stored_cells(&store, &schema), expected);
    // The cells are the first sealing's and the second's: a key of both days' rows may
    // be in both, added up above.
    assert_eq!(
        first.rollups[0].cells + second.rollups[0].cells,
        manifest.rollups[0].cells()
    );
    // Cell files live beside the chunks, and nothing else is there.
    let files = fs::read_dir(tmp.path().join("data/consumption/rollups/daily"))
        .unwrap()
        .count() as u64;
    assert_eq!(
        files,
        manifest.rollups[0]
            .sealings
            .iter()
            .map(|s| s.cells.len() as u64)
            .sum::<u64>()
    );
}

#[test]
fn a_withdrawal_rolls_up_again_without_the_withdrawn_rows_and_erases_their_cells() {
    let tmp = TempDir::new().unwrap();
    let (mut store, schema) = rolled_up(tmp.path());
    // 100 ingested rows (chunk 0 sealed on ingest, 36 pending), then a donation of 100
    // rows by one anonymous donor: chunks 1 (mixed) and 2 sealed on donation, 3 by the
    // seal.
    let (ingested, columns) = generated(tmp.path(), "a.csv", 100, 5);
    store.ingest("consumption", &[ingested], false).unwrap();
    let (donated, _) = generated(tmp.path(), "b.csv", 100, 6);
    let mine = without_unit(&donated, &tmp.path().join("donation.csv"));
    let anonymous = Admission {
        eligible: None,
        organisation: None,
    };
    let secret = "00".repeat(32);
    let (donation, _) = store
        .donate(
            "consumption",
            &mine,
            &["public-health".into()],
            &secret,
            &anonymous,
        )
        .unwrap();
    store.seal("consumption").unwrap();
    let before = store.manifest("consumption", None).unwrap().manifest;
    let retired: Vec<u64> = before.rollups[0].sealings[1..]
        .iter()
        .flat_map(|s| &s.cells)
        .map(|c| c.index)
        .collect();
    let sealings: Vec<&Vec<u64>> = before.rollups[0]
        .sealings
        .iter()
        .map(|s| &s.chunks)
        .collect();
    assert_eq!(sealings, [&vec![0], &vec![1, 2], &vec![3]]);

    store
        .withdraw(
            &donation.id,
            &zkfabric::node::store::Withdrawal::Secret(secret.clone()),
        )
        .unwrap();
    let after = store.manifest("consumption", None).unwrap().manifest;
    // Chunk 1 was sealed again without the donation's rows as chunk 4; 2 and 3 held only
    // them. The sealings of 1 and 2 and of 3 are retired; a new one rolls 4 up.
    let sealings: Vec<&Vec<u64>> = after.rollups[0]
        .sealings
        .iter()
        .map(|s| &s.chunks)
        .collect();
    assert_eq!(sealings, [&vec![0], &vec![4]]);
    let mut expected = expected_cells(&schema, &columns);
    expected.retain(|_, values| values.iter().any(|&v| v > 0));
    assert_eq!(stored_cells(&store, &schema), expected);
    // The retired cells are erased, and refused by name.
    for index in retired {
        assert!(!tmp
            .path()
            .join(format!("data/consumption/rollups/daily/{index}.parquet"))
            .exists());
        let err = store.cell_chunk("consumption", "daily", index).unwrap_err();
        assert!(err.to_string().contains("was erased"), "{err}");
    }
}
