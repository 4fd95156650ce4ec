//! Roll-ups' sealing proofs end to end: the node proves that a sealing's cells are its
//! chunks' rows aggregated, a verifier checks it from the signed manifest alone, and every
//! way a dishonest node could present other cells (changed ones, proofs of another
//! sealing or epoch, a cell chunk left out, two sides that do not close) is refused.

mod common;

use common::ProvingNode as Node;
use std::{collections::HashMap, path::Path, sync::atomic::AtomicBool};

use tempfile::TempDir;
use zkfabric::{
    node::{
        config::Config,
        keys::KeyCache,
        proofs::ProofCache,
        prove::{LoadedSealing, ProveError, QueryPath, Request, Sealing, SealingProven},
        store::Store,
    },
    shared::{records, synth},
    verifier::{
        manifest::{fr_to_hex, Manifest},
        query::Limits,
        schema::Schema,
        verify::{self, verify_sealing, KeyPins, Report, Trust, VerifyError},
    },
};
use zkfabric_circuits::{aggregate::AggregateCircuit, commitment::Chunk, rollup, snark, Fr};
use zkfabric_proto::v1 as pb;

/// Consumption in chunks of 8 rows, rolled up by district and hour per day.
fn schema() -> Schema {
    let base = Schema::builtin("consumption")
        .unwrap()
        .with_chunk_rows(8)
        .unwrap();
    common::with_rollup(&base, "daily", &["district", "hour", "day(time)"], &["kwh"])
}

/// A store holding `rows` generated readings (full chunks sealed on ingest).
fn store_with(dir: &Path, rows: usize, seed: u64) -> Store {
    let schema = schema();
    let mut store = Store::open(&dir.join("data")).unwrap();
    store.register(&schema).unwrap();
    ingest(&mut store, dir, rows, seed);
    store
}

fn ingest(store: &mut Store, dir: &Path, rows: usize, seed: u64) {
    let schema = schema();
    let columns = synth::generate(&schema, rows, seed, |_| {}).unwrap();
    let path = dir.join(format!("rows-{seed}.parquet"));
    records::write_file(
        &path,
        records::arrow_schema(&schema),
        [records::to_batch(&schema, &columns, 0..rows)],
    )
    .unwrap();
    store.ingest("consumption", &[path], false).unwrap();
}

fn prove(store: &Store, dir: &Path, position: usize) -> (Manifest, SealingProven) {
    let signed = store.manifest("consumption", None).unwrap();
    let keys = KeyCache::new(&dir.join("data"));
    let proofs = ProofCache::open(&dir.join("data"), 1000).unwrap();
    let loaded = LoadedSealing::load(store, &signed, "daily", position).unwrap();
    let proven = Sealing {
        keys: &keys,
        proofs: &proofs,
        setup: true,
        fan_in: 3,
        cancel: &AtomicBool::new(false),
    }
    .prove(&loaded, |_| {})
    .unwrap();
    (signed.manifest, proven)
}

/// Verifies with the keys the proof came with, pinned by shape.
fn check(
    manifest: &Manifest,
    proven: &SealingProven,
    proof: &pb::SealingProof,
) -> Result<usize, VerifyError> {
    let keys: HashMap<String, snark::VerifyingKey> = proven
        .verifying_keys
        .iter()
        .map(|k| {
            (
                k.shape.clone(),
                snark::verifying_key_from_bytes(&k.key).unwrap(),
            )
        })
        .collect();
    verify_sealing(&schema(), manifest, proof, |shape| {
        keys.get(shape)
            .cloned()
            .ok_or_else(|| VerifyError::Failed(format!("no key for {shape}")))
    })
}

#[test]
fn a_sealing_is_proven_and_verified_from_the_manifest_and_tampering_is_refused() {
    let tmp = TempDir::new().unwrap();
    // 40 rows: five chunks, one sealing; their cells fill several cell chunks.
    let store = store_with(tmp.path(), 40, 3);
    let (manifest, proven) = prove(&store, tmp.path(), 0);
    let proof = &proven.proof;
    assert_eq!(proof.rows.len(), 5);
    assert!(proof.cells.len() >= 2, "{} cell chunks", proof.cells.len());
    assert!(!proof.row_subtotals.is_empty() && !proof.cell_subtotals.is_empty());
    let checked = check(&manifest, &proven, proof).unwrap();
    assert_eq!(
        checked,
        proof.rows.len()
            + proof.cells.len()
            + proof.row_subtotals.len()
            + proof.cell_subtotals.len()
    );

    // Proving again takes every chunk proof from the cache and verifies alike.
    let (_, again) = prove(&store, tmp.path(), 0);
    assert_eq!(again.proof.rows, proof.rows);
    check(&manifest, &proven, &again.proof).unwrap();

    let refused = |what: &str, edit: &dyn Fn(&mut pb::SealingProof, &mut Manifest)| {
        let (mut p, mut m) = (proof.clone(), manifest.clone());
        edit(&mut p, &mut m);
        assert!(check(&m, &proven, &p).is_err(), "{what} was accepted");
    };
    refused("two chunk proofs swapped", &|p, _| p.rows.swap(0, 1));
    refused("a chunk proof's share commitment changed", &|p, _| {
        p.rows[1].evaluation_commitment = p.rows[2].evaluation_commitment.clone()
    });
    refused("a cell chunk left out of the manifest", &|_, m| {
        m.rollups[0].sealings[0].cells.pop();
    });
    refused("a cell chunk and its proof left out", &|p, m| {
        m.rollups[0].sealings[0].cells.pop();
        p.cells.pop();
    });
    refused("a cell chunk's published row count changed", &|_, m| {
        m.rollups[0].sealings[0].cells[0].rows -= 1;
    });
    refused("the rows' last subtotal replaced by the cells'", &|p, _| {
        let last = p.cell_subtotals.last().unwrap().clone();
        *p.row_subtotals.last_mut().unwrap() = last;
    });
    refused("a subtotal left out", &|p, _| {
        p.cell_subtotals.remove(0);
    });
    refused("another fan-in", &|p, _| p.fan_in = 2);
    refused("a sealing the manifest does not list", &|p, _| {
        p.sealing = 1
    });
    refused(
        "a rolled-up chunk's published commitment changed",
        &|_, m| m.chunks[0].commitment = m.chunks[1].commitment.clone(),
    );
}

#[test]
fn a_sealing_proof_holds_for_its_own_sealing_and_epoch_only() {
    let tmp = TempDir::new().unwrap();
    let mut store = store_with(tmp.path(), 16, 4);
    let (first_manifest, first) = prove(&store, tmp.path(), 0);
    // A second ingest publishes epoch 2 with a second sealing of other chunks.
    ingest(&mut store, tmp.path(), 16, 5);
    let (second_manifest, second) = prove(&store, tmp.path(), 1);
    check(&second_manifest, &second, &second.proof).unwrap();
    // The first sealing is listed in epoch 2 too, and its proof still holds there.
    check(&second_manifest, &first, &first.proof).unwrap();
    // Sealing 0's proof presented as sealing 1 (the challenge of another sealing).
    let mut reused = first.proof.clone();
    reused.sealing = 1;
    assert!(check(&second_manifest, &first, &reused).is_err());
    // Sealing 1's proof against epoch 1, which has no sealing 1.
    assert!(check(&first_manifest, &second, &second.proof).is_err());
}

#[test]
fn cells_other_than_the_rows_aggregation_cannot_close_the_sealing() {
    // A dishonest node commits cells with one count raised, lists them in its manifest
    // and proves both sides honestly at the challenge those commitments give: every
    // chunk proof verifies, and the two sides' last commitments differ, so the sealing
    // is refused.
    let tmp = TempDir::new().unwrap();
    let store = store_with(tmp.path(), 8, 6);
    let (manifest, honest) = prove(&store, tmp.path(), 0);
    let schema = schema();
    let declared = &schema.rollups[0];
    let shapes = schema.rollup_shapes(declared, 8).unwrap();
    let rows_query = shapes.rows_query(schema.rollup_clips(declared));
    let chunk = store.chunk("consumption", 0).unwrap();
    let mut cells = store.cell_chunk("consumption", "daily", 0).unwrap();
    cells.columns[shapes.count_column(0)][0] += 1;
    let lying = Chunk::seal(
        shapes.cell_layout(),
        cells.dataset_id,
        0,
        cells.columns.clone(),
        &mut rand::rngs::OsRng,
    )
    .unwrap();
    let mut m = manifest.clone();
    let sealing = &mut m.rollups[0].sealings[0];
    assert_eq!(sealing.cells.len(), 1);
    sealing.cells[0].commitment = fr_to_hex(&lying.commitment(shapes.cell_layout()));
    let row_commitment = chunk.commitment(&shapes.rows.layout);
    let challenge = rollup::challenge(
        &shapes,
        &rows_query,
        &[row_commitment],
        &[lying.commitment(shapes.cell_layout())],
    );
    let keys = KeyCache::new(&tmp.path().join("data"));
    let prove_chunk = |shape, query, chunk: Chunk| {
        let pk = keys
            .get::<AggregateCircuit>(shape, &shape.description(), true, |_| {})
            .unwrap();
        let blind = Fr::from(77u8);
        let circuit = AggregateCircuit::new(shape.clone(), query, chunk, challenge, blind).unwrap();
        let commitment = circuit.instance.evaluation_commitment;
        let proof = snark::prove(&pk, circuit, &mut rand::rngs::OsRng).unwrap();
        pb::ChunkProof {
            chunk: 0,
            evaluation_commitment: zkfabric::verifier::bundle::fr_to_bytes(&commitment),
            proof: snark::proof_to_bytes(&proof),
        }
    };
    let proof = pb::SealingProof {
        rollup: "daily".into(),
        sealing: 0,
        fan_in: 3,
        rows: vec![prove_chunk(&shapes.rows, rows_query.clone(), chunk)],
        cells: vec![prove_chunk(&shapes.cells, shapes.cells_query(), lying)],
        row_subtotals: Vec::new(),
        cell_subtotals: Vec::new(),
    };
    let err = check(&m, &honest, &proof).unwrap_err().to_string();
    assert!(
        err.contains("the cells are not the aggregation of the rows"),
        "{err}"
    );
}

/// Consumption answered exactly, in chunks of 8 rows, rolled up daily by district and
/// hour with kWh and water: what the query path is compared on.
fn exact() -> Schema {
    let base = Schema::builtin("consumption")
        .unwrap()
        .with_chunk_rows(8)
        .unwrap()
        .threshold_only()
        .unwrap();
    common::with_rollup(
        &base,
        "daily",
        &["district", "hour", "day(time)"],
        &["kwh", "water"],
    )
}

/// `rows` rows with every column drawn independently, an hour apart from 2026-01-01.
fn random_rows(schema: &Schema, rows: usize, seed: u64) -> Vec<Vec<u64>> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut columns = vec![Vec::new(); schema.declared().len()];
    for row in 0..rows {
        for (c, column) in schema.declared().iter().enumerate() {
            columns[c].push(match column.name.as_str() {
                "time" => 1_767_225_600 + 3600 * row as u64,
                "age" => rng.gen_range(10..90),
                _ => rng.gen_range(0..=column.max_code().min(4_999)),
            });
        }
    }
    columns
}

/// A node of `exact()` holding `rows` random rows, sealed in one epoch.
fn exact_node(rows: usize) -> Node {
    Node::new(&exact(), &random_rows(&exact(), rows, 7))
}

fn ask(node: &Node, sql: &str, path: QueryPath) -> Result<pb::Bundle, ProveError> {
    node.answer(&Request {
        limits: Limits {
            in_list: 4,
            max_groups: 64,
            combine_inputs: 3,
            min_group_size: 2,
        },
        path,
        ..Request::new(
            &Config::default(),
            sql.into(),
            Some("energy-research".into()),
            None,
            true,
        )
    })
}

fn verified(bundle: &pb::Bundle) -> Result<Report, VerifyError> {
    verify::verify(bundle, &Trust::keys(KeyPins::Unpinned))
}

#[test]
fn answers_from_a_rollup_equal_answers_from_the_rows_and_verify() {
    // 64 rows over three days: eight chunks in one sealing.
    let node = exact_node(64);
    let manifest = node.store.manifest("consumption", None).unwrap().manifest;
    assert!(manifest.rollups[0].cells() < 64);
    for sql in [
        "SELECT district, COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 17 AND 21 \
         GROUP BY district",
        "SELECT COUNT(*), SUM(water), AVG(kwh) FROM consumption",
        "SELECT date_trunc('day', to_timestamp(time)) AS day, COUNT(*), SUM(kwh) \
         FROM consumption WHERE to_timestamp(time) >= '2026-01-01T00:00:00' AND \
         to_timestamp(time) < '2026-01-03T00:00:00' GROUP BY 1",
        "SELECT hour, COUNT(*) FROM consumption WHERE district IN ('Daan', 'Xinyi') \
         AND hour < 12 GROUP BY hour",
    ] {
        let raw = ask(&node, sql, QueryPath::Raw).unwrap_or_else(|e| panic!("{sql}: {e}"));
        let rolled = ask(&node, sql, QueryPath::Rollup).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(raw.rollup, "");
        assert_eq!(rolled.rollup, "daily", "{sql}");
        assert_eq!(rolled.result, raw.result, "{sql}");
        assert_eq!(rolled.sealing_proofs.len(), 1);
        verified(&raw).unwrap();
        let report = verified(&rolled).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(report.rollup, Some(("daily".to_string(), 1)));
        // Proven now, and a few rows share a key (fewer cells than rows): auto takes it.
        let auto = ask(&node, sql, QueryPath::Auto).unwrap();
        assert_eq!((auto.rollup.as_str(), &auto.result), ("daily", &raw.result));
    }
}

#[test]
fn auto_reads_a_rollup_once_its_sealings_are_proven_and_kept() {
    // 64 rows of one day in two keys (district, hour): eight chunks, one sealing of two
    // cells.
    let schema = exact();
    let mut rows = random_rows(&schema, 64, 9);
    let column = |name: &str| {
        schema
            .declared()
            .iter()
            .position(|c| c.name == name)
            .unwrap()
    };
    let (district, hour, time) = (column("district"), column("hour"), column("time"));
    for row in 0..64u64 {
        let at = row as usize;
        rows[district][at] = row % 2;
        rows[hour][at] = 17 + row % 2;
        rows[time][at] = 1_767_225_600 + 60 * row;
    }
    let node = Node::new(&schema, &rows);
    let sql = "SELECT district, COUNT(*), SUM(kwh) FROM consumption GROUP BY district";
    // Not proven yet: proving the sealing costs more than reading the rows.
    let before = ask(&node, sql, QueryPath::Auto).unwrap();
    assert_eq!(before.rollup, "");
    assert!(before.sealing_proofs.is_empty());
    // An answer asked from the roll-up proves the sealing and keeps its proof ...
    let rolled = ask(&node, sql, QueryPath::Rollup).unwrap();
    assert_eq!(rolled.rollup, "daily");
    // ... which every later answer from it carries as it is, auto's included.
    let auto = ask(&node, sql, QueryPath::Auto).unwrap();
    assert_eq!(auto.rollup, "daily");
    assert_eq!(auto.sealing_proofs, rolled.sealing_proofs);
    assert_eq!(auto.result, before.result);
    verified(&auto).unwrap();
    // A kept proof that no longer verifies is set aside and proven again: here one
    // whose subtotals are dropped.
    let db = rusqlite::Connection::open(node.dir.path().join("data/proofs.sqlite")).unwrap();
    let (key, bytes): (Vec<u8>, Vec<u8>) = db
        .query_row("SELECT key, proof FROM sealing_proofs", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let mut damaged = <pb::SealingProof as prost::Message>::decode(&bytes[..]).unwrap();
    damaged.row_subtotals.clear();
    db.execute(
        "UPDATE sealing_proofs SET proof = ?1 WHERE key = ?2",
        rusqlite::params![prost::Message::encode_to_vec(&damaged), key],
    )
    .unwrap();
    let again = ask(&node, sql, QueryPath::Auto).unwrap();
    assert_eq!(again.rollup, "daily");
    verified(&again).unwrap();
}

#[test]
fn a_query_the_rollup_does_not_cover_is_answered_from_the_rows_or_refused_by_name() {
    let node = exact_node(16);
    for (sql, why) in [
        (
            "SELECT household_size, COUNT(*) FROM consumption GROUP BY household_size",
            "`household_size` is not in its key",
        ),
        (
            "SELECT COUNT(*), SUM(spend) FROM consumption",
            "`spend` is not among its measures",
        ),
        (
            "SELECT COUNT(*) FROM consumption WHERE to_timestamp(time) >= '2026-01-01T06:00:00'",
            "does not take whole buckets",
        ),
        (
            "SELECT bool_and(age >= 18) FROM consumption",
            "a counted condition (bool_and, bool_or) reads rows",
        ),
    ] {
        let auto = ask(&node, sql, QueryPath::Auto).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(auto.rollup, "", "{sql}");
        verified(&auto).unwrap();
        let err = ask(&node, sql, QueryPath::Rollup).unwrap_err().to_string();
        assert!(
            err.contains("no roll-up answers this query") && err.contains(why),
            "{sql}: {err}"
        );
    }
}

#[test]
fn a_tampered_answer_from_a_rollup_is_refused() {
    let mut node = exact_node(24);
    let sql = "SELECT district, COUNT(*), SUM(kwh) FROM consumption GROUP BY district";
    let bundle = ask(&node, sql, QueryPath::Rollup).unwrap();
    verified(&bundle).unwrap();
    let refused = |what: &str, edit: &dyn Fn(&mut pb::Bundle)| {
        let mut b = bundle.clone();
        edit(&mut b);
        assert!(verified(&b).is_err(), "{what} was accepted");
    };
    refused("the sealing proof left out", &|b| {
        b.sealing_proofs.clear();
    });
    refused("the answer claimed from the rows", &|b| b.rollup.clear());
    refused(
        "the answer claimed from the rows, without sealing proofs",
        &|b| {
            b.rollup.clear();
            b.sealing_proofs.clear();
        },
    );
    refused("another roll-up named", &|b| b.rollup = "hourly".into());
    refused("a cell chunk's proof left out", &|b| {
        b.chunk_proofs.pop();
    });
    refused("a cell chunk's share swapped with another's", &|b| {
        let first = b.chunk_proofs[0].evaluation_commitment.clone();
        b.chunk_proofs[0].evaluation_commitment = b.chunk_proofs[1].evaluation_commitment.clone();
        b.chunk_proofs[1].evaluation_commitment = first;
    });
    refused("a rolled-up chunk's proof in the sealing changed", &|b| {
        let other = b.sealing_proofs[0].rows[1].proof.clone();
        b.sealing_proofs[0].rows[0].proof = other;
    });
    // The sealing proof of another epoch: a second ingest adds a sealing, and the new
    // epoch's answer needs both.
    let more = random_rows(&exact(), 32, 8);
    let path = node.dir.path().join("more.parquet");
    records::write_file(
        &path,
        records::arrow_schema(&exact()),
        [records::to_batch(
            &exact(),
            &more.iter().map(|c| c[24..].to_vec()).collect::<Vec<_>>(),
            0..8,
        )],
    )
    .unwrap();
    node.store.ingest("consumption", &[path], false).unwrap();
    let later = ask(&node, sql, QueryPath::Rollup).unwrap();
    assert_eq!(later.sealing_proofs.len(), 2);
    verified(&later).unwrap();
    let mut stale = later.clone();
    stale.sealing_proofs.truncate(1);
    assert!(
        verified(&stale).is_err(),
        "an answer leaving the new sealing out"
    );
    let mut mixed = bundle.clone();
    mixed.sealing_proofs = later.sealing_proofs.clone();
    assert!(
        verified(&mixed).is_err(),
        "epoch 2's sealing proofs in epoch 1's answer"
    );
}
