//! The offline verifier against honest bundles (made by a node: `tests/fixtures/`) and
//! the changes a dishonest node or a forger could make to them: every changed field, a
//! narrowed coverage, a relabelled shape, another question, an extra key, a stale or
//! forked epoch. Each must be refused, naming what failed.

use ed25519_dalek::Signer;
use prost::Message;
use zkfabric_circuits::snark;
use zkfabric_proto::v1 as pb;
use zkfabric_verifier::{
    bundle::Bundle,
    verify::{verify, Expected, KeyPins, ManifestHead, Trust, VerifyError},
};

mod common;
use common::{bundle, chain, node_key, pinned, pinning_dishonest, resigned};

#[test]
fn the_fixtures_verify_under_the_keys_and_node_key_pinned() {
    for name in [
        "grouped.zkf",
        "water.zkf",
        "kwh.zkf",
        "count.zkf",
        "count.zkf.json",
    ] {
        let report = verify(&bundle(name), &pinned()).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(report.keys_pinned);
        assert_eq!(report.chunks, 12, "{name}");
        assert_eq!(report.node_key, hex::encode(node_key().to_bytes()));
    }
    // Two subtotal levels (12 partials, 3 per combine: 4, then 2, then the root).
    let report = verify(&bundle("grouped.zkf"), &pinned()).unwrap();
    assert_eq!(report.proofs, 12 + 4 + 2 + 1);
    assert_eq!(report.statements.last().unwrap().name, "root");
}

#[test]
fn a_bundle_signed_by_another_node_is_refused() {
    let other = pinning_dishonest(pinned());
    let err = verify(&bundle("count.zkf"), &other).unwrap_err();
    assert!(matches!(err, VerifyError::Manifest(_)), "{err}");
}

/// Every field of an honest bundle, changed, makes verification fail.
#[test]
fn every_changed_field_of_a_bundle_is_rejected() {
    let honest = bundle("grouped.zkf");
    let pinned = pinned();
    verify(&honest, &pinned).unwrap();
    let rows = &honest.result.as_ref().unwrap().rows;
    let released = rows
        .iter()
        .position(|r| !r.suppressed)
        .expect("a released district");
    let suppressed = rows
        .iter()
        .position(|r| r.suppressed)
        .expect("a suppressed district");

    type Edit = Box<dyn Fn(&mut Bundle)>;
    let edits: Vec<(&str, Edit)> = vec![
        ("format", Box::new(|b| b.format = 1)),
        (
            "privacy mode",
            Box::new(|b| b.privacy.as_mut().unwrap().mode = "dp".into()),
        ),
        ("dataset", Box::new(|b| b.dataset = "movement".into())),
        ("epoch", Box::new(|b| b.epoch += 1)),
        (
            "manifest bytes",
            Box::new(|b| {
                let m = b.manifest.as_mut().unwrap();
                let text = String::from_utf8(m.manifest.clone()).unwrap();
                m.manifest = text.replacen("\"rows\":8", "\"rows\":7", 1).into_bytes();
            }),
        ),
        (
            "manifest signature",
            Box::new(|b| b.manifest.as_mut().unwrap().signature[0] ^= 1),
        ),
        (
            "node key",
            Box::new(|b| b.manifest.as_mut().unwrap().node_key[0] ^= 1),
        ),
        (
            "schema",
            Box::new(|b| b.schema = b.schema.replace("width = 24", "width = 23")),
        ),
        (
            "purpose",
            Box::new(|b| b.query.as_mut().unwrap().purpose = "energy-research".into()),
        ),
        (
            "filter",
            Box::new(|b| {
                let q = b.query.as_mut().unwrap();
                q.filters[0].test = Some(pb::filter::Test::InList(pb::InList {
                    values: vec![3, 4, 5],
                    slots: 4,
                }));
            }),
        ),
        (
            "IN list padded past the next power of two",
            Box::new(|b| {
                let q = b.query.as_mut().unwrap();
                q.filters[0].test = Some(pb::filter::Test::InList(pb::InList {
                    values: vec![3, 4, 5],
                    slots: 8,
                }));
            }),
        ),
        (
            "group by",
            Box::new(|b| {
                b.query.as_mut().unwrap().group_by = vec![pb::Grouping {
                    column: "hour".into(),
                    bucket: None,
                }]
            }),
        ),
        (
            "group by time buckets",
            Box::new(|b| {
                b.query.as_mut().unwrap().group_by = vec![pb::Grouping {
                    column: "time".into(),
                    bucket: Some(pb::TimeBucket {
                        seconds: 3600,
                        offset: 0,
                    }),
                }]
            }),
        ),
        (
            "minimum group size",
            Box::new(|b| b.query.as_mut().unwrap().min_group_size = 2),
        ),
        (
            "combine fan-in beyond any key",
            Box::new(|b| b.query.as_mut().unwrap().combine_inputs = 1 << 30),
        ),
        (
            "combine fan-in",
            Box::new(|b| b.query.as_mut().unwrap().combine_inputs = 4),
        ),
        (
            "result count",
            Box::new(move |b| b.result.as_mut().unwrap().rows[released].count += 1),
        ),
        (
            "result sum",
            Box::new(move |b| {
                let row = &mut b.result.as_mut().unwrap().rows[released];
                row.sums[0] = (row.sums[0].parse::<u64>().unwrap() + 1).to_string();
            }),
        ),
        (
            "result label",
            Box::new(move |b| {
                b.result.as_mut().unwrap().rows[released].labels = vec!["Xinyi".into()]
            }),
        ),
        (
            "result suppressed",
            Box::new(move |b| {
                let row = &mut b.result.as_mut().unwrap().rows[released];
                row.suppressed = true;
                row.count = 0;
                row.sums.clear();
            }),
        ),
        (
            "suppressed group released",
            Box::new(move |b| {
                let row = &mut b.result.as_mut().unwrap().rows[suppressed];
                row.suppressed = false;
                row.count = 1;
                row.sums = vec!["1".into()];
            }),
        ),
        (
            "result row dropped",
            Box::new(|b| {
                b.result.as_mut().unwrap().rows.pop();
            }),
        ),
        ("chunk index", Box::new(|b| b.chunk_proofs[0].chunk = 1)),
        (
            "chunk proofs swapped",
            Box::new(|b| {
                let first = b.chunk_proofs[0].proof.clone();
                b.chunk_proofs[0].proof = b.chunk_proofs[1].proof.clone();
                b.chunk_proofs[1].proof = first;
            }),
        ),
        (
            "evaluation commitment",
            Box::new(|b| b.chunk_proofs[0].evaluation_commitment[0] ^= 1),
        ),
        (
            "totals commitment (so the challenge)",
            Box::new(|b| b.totals_commitment[0] ^= 1),
        ),
        ("chunk proof", Box::new(|b| b.chunk_proofs[0].proof[3] ^= 1)),
        (
            "subtotal",
            Box::new(|b| b.combine_proofs[0].subtotal[0] ^= 1),
        ),
        (
            "subtotal proof",
            Box::new(|b| b.combine_proofs[0].proof[3] ^= 1),
        ),
        (
            "root proof",
            Box::new(|b| b.combine_proofs.last_mut().unwrap().proof[3] ^= 1),
        ),
        (
            "verifying key",
            Box::new(|b| b.verifying_keys[0].key[5] ^= 1),
        ),
        (
            "verifying key fingerprint",
            Box::new(|b| b.verifying_keys[0].fingerprint.push('0')),
        ),
    ];
    for (what, edit) in &edits {
        let mut bundle = honest.clone();
        edit(&mut bundle);
        assert_ne!(bundle, honest, "{what}: the edit changes nothing");
        // Through the wire format, as a verifier receives it.
        let bundle = Bundle::decode(&bundle.encode_to_vec()[..]).unwrap();
        assert!(
            verify(&bundle, &pinned).is_err(),
            "{what}: a changed bundle verified"
        );
    }
}

#[test]
fn a_dishonest_node_cannot_narrow_or_stretch_coverage() {
    let bundle = bundle("count.zkf");
    let trust = pinning_dishonest(pinned());
    // The dishonest node's own signature over the honest manifest: it verifies.
    verify(&resigned(&bundle, |_| ()), &trust).unwrap();

    // The node leaves out the chunks it says the query cannot reach.
    let mut narrowed = resigned(&bundle, |_| ());
    narrowed.chunk_proofs.retain(|p| p.chunk == 2);
    let err = verify(&narrowed, &trust).unwrap_err();
    assert!(err.to_string().contains("coverage"), "{err}");

    // A manifest that lists chunk 2's commitment a second time (its rows would count
    // twice), with the proofs to match.
    let mut doubled = resigned(&bundle, |m| {
        let mut again = m.chunks[2].clone();
        again.index = 12;
        m.chunks.push(again);
    });
    doubled.chunk_proofs.push(pb::ChunkProof {
        chunk: 12,
        ..bundle.chunk_proofs[2].clone()
    });
    let err = verify(&doubled, &trust).unwrap_err();
    assert!(err.to_string().contains("listed twice"), "{err}");

    // Chunks listed out of order.
    let swapped = resigned(&bundle, |m| m.chunks.swap(3, 4));
    let err = verify(&swapped, &trust).unwrap_err();
    assert!(err.to_string().contains("indices must increase"), "{err}");

    // A chunk under another index (its proof moved along), or with another row count:
    // the commitment binds both (and the dataset id), so the proofs fail against the
    // statements the verifier recomputes.
    let mut moved = resigned(&bundle, |m| m.chunks[11].index = 19);
    moved.chunk_proofs[11].chunk = 19;
    let recounted = resigned(&bundle, |m| m.chunks[1].rows -= 1);
    let renumbered = resigned(&bundle, |m| m.dataset_id += 1);
    for (what, forged) in [
        ("index", moved),
        ("rows", recounted),
        ("dataset id", renumbered),
    ] {
        let err = verify(&forged, &trust).unwrap_err();
        assert!(
            matches!(err, VerifyError::Proofs(_) | VerifyError::Failed(_)),
            "{what}: {err}"
        );
    }
}

#[test]
fn a_bundle_relabelled_as_another_trusted_shape_is_rejected() {
    // Both queries' keys are trusted. A dishonest node proves SUM(water) and relabels
    // the bundle as SUM(kwh): same public-input layout, another meaning.
    let water = bundle("water.zkf");
    let kwh = bundle("kwh.zkf");
    let trust = pinned();
    verify(&water, &trust).unwrap();
    verify(&kwh, &trust).unwrap();
    let relabel = |keys_from: &Bundle| {
        let mut forged = water.clone();
        forged.sql = kwh.sql.clone();
        forged.query = kwh.query.clone();
        forged.verifying_keys = keys_from.verifying_keys.clone();
        if std::ptr::eq(keys_from, &water) {
            // The water keys, labelled with the kwh shapes.
            for (k, label) in forged.verifying_keys.iter_mut().zip(&kwh.verifying_keys) {
                k.shape = label.shape.clone();
            }
        }
        forged
    };
    // The water key under the kwh label: trusted, but for another shape.
    let err = verify(&relabel(&water), &trust).unwrap_err();
    assert!(
        err.to_string().contains("trusted for another shape only"),
        "{err}"
    );
    // The real kwh key: the water proofs do not verify against the kwh statements
    // (their shape digest differs, and so does the key).
    let err = verify(&relabel(&kwh), &trust).unwrap_err();
    assert!(matches!(err, VerifyError::Proofs(_)), "{err}");
}

#[test]
fn a_bundle_must_answer_what_the_researcher_asked() {
    let bundle = bundle("count.zkf");
    let asked = |expected: Expected| Trust {
        expected,
        ..pinned()
    };
    verify(
        &bundle,
        &asked(Expected {
            epoch: Some(1),
            purpose: Some("public-health".into()),
            min_group_size: Some(3),
            cost: None,
            head: None,
        }),
    )
    .unwrap();
    for (expected, field) in [
        (
            Expected {
                purpose: Some("energy-research".into()),
                ..Expected::default()
            },
            "purpose",
        ),
        (
            Expected {
                min_group_size: Some(10),
                ..Expected::default()
            },
            "min_group_size",
        ),
        (
            Expected {
                epoch: Some(2),
                ..Expected::default()
            },
            "epoch",
        ),
    ] {
        let err = verify(&bundle, &asked(expected)).unwrap_err();
        assert!(err.to_string().starts_with(field), "{field}: {err}");
    }
    // A bundle whose k is 0 is refused before anything else.
    let mut zero = bundle.clone();
    zero.query.as_mut().unwrap().min_group_size = 0;
    let err = verify(&zero, &Trust::keys(KeyPins::Unpinned)).unwrap_err();
    assert!(err.to_string().contains("k is at least 1"), "{err}");
}

#[test]
fn unpinned_keys_verify_only_when_asked_for_and_degenerate_keys_never() {
    let bundle = bundle("count.zkf");
    let report = verify(&bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    assert!(!report.keys_pinned);
    // A key without input bases is refused, not a panic.
    let mut hollow = bundle.clone();
    let mut vk = snark::verifying_key_from_bytes(&hollow.verifying_keys[0].key).unwrap();
    vk.gamma_abc_g1.clear();
    hollow.verifying_keys[0].key = snark::verifying_key_to_bytes(&vk);
    let err = verify(&hollow, &Trust::keys(KeyPins::Unpinned)).unwrap_err();
    assert!(err.to_string().contains("no input bases"), "{err}");
}

#[test]
fn a_bundle_carries_nothing_beside_what_is_verified() {
    let bundle = bundle("count.zkf");
    let trust = pinned();
    let honest = pinning_dishonest(pinned());
    // Manifest bytes the node signs as they are: an unknown field, or another layout of
    // the same manifest (a covert channel either way).
    let original = bundle.manifest.as_ref().unwrap().manifest.clone();
    let value: serde_json::Value = serde_json::from_slice(&original).unwrap();
    let mut with_note = value.clone();
    with_note["note"] = "anything at all".into();
    for bytes in [
        serde_json::to_vec(&with_note).unwrap(),
        serde_json::to_vec_pretty(&value).unwrap(),
    ] {
        let mut forged = resigned(&bundle, |_| ());
        let m = forged.manifest.as_mut().unwrap();
        m.signature = common::dishonest_node().sign(&bytes).to_bytes().to_vec();
        m.manifest = bytes;
        let err = verify(&forged, &honest).unwrap_err();
        assert!(err.to_string().contains("manifest.manifest"), "{err}");
    }
    // A key no proof needs, or one shape's key twice.
    let mut extra = bundle.clone();
    let mut unused = extra.verifying_keys[0].clone();
    unused.shape = "combine/v2 inputs=3 groups=7 output=release".into();
    extra.verifying_keys.push(unused);
    let err = verify(&extra, &trust).unwrap_err();
    assert!(
        err.to_string().contains("none of its proofs needs"),
        "{err}"
    );
    let mut twice = bundle.clone();
    twice.verifying_keys.push(twice.verifying_keys[0].clone());
    let err = verify(&twice, &trust).unwrap_err();
    assert!(err.to_string().contains("twice"), "{err}");
}

#[test]
fn a_stale_or_forked_epoch_is_told_apart_from_the_head() {
    // The fixtures' chain, epochs 1 and 2, signed again by the test's node (manifest
    // hashes cover the content, not the signature, so the links hold).
    let node = common::dishonest_node();
    let [first, second]: [_; 2] = chain()
        .into_iter()
        .map(|m| m.manifest.sign(&node))
        .collect::<Vec<_>>()
        .try_into()
        .unwrap();
    let bundle = resigned(&bundle("count.zkf"), |_| ());
    assert_eq!(
        bundle.manifest.as_ref().unwrap().manifest,
        first.manifest.canonical_bytes()
    );
    let head = |hash: String, later| Trust {
        expected: Expected {
            head: Some(ManifestHead { hash, later }),
            ..Expected::default()
        },
        ..pinning_dishonest(pinned())
    };
    let head_hash = second.manifest.hash();
    // Epoch 1 is one behind the head, through epoch 2's link to it.
    let report = verify(&bundle, &head(head_hash.clone(), vec![second.clone()])).unwrap();
    assert_eq!(report.epochs_behind, Some(1));
    // Its own manifest as the head: the latest.
    let report = verify(&bundle, &head(first.manifest.hash(), Vec::new())).unwrap();
    assert_eq!(report.epochs_behind, Some(0));
    // Without the manifests in between, the chain cannot be followed.
    let err = verify(&bundle, &head(head_hash.clone(), Vec::new())).unwrap_err();
    assert!(err.to_string().contains("lacks epoch 2"), "{err}");
    // A second, conflicting epoch-1 manifest, signed by the node: not on the chain.
    let forked = resigned(&bundle, |m| m.chunks.swap(0, 1));
    let err = verify(&forked, &head(head_hash.clone(), vec![second.clone()])).unwrap_err();
    assert!(err.to_string().contains("a fork"), "{err}");
    // A chain whose next manifest another key signed (a third party's "epoch 2").
    let stranger = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let impostor = second.manifest.clone().sign(&stranger);
    let err = verify(&bundle, &head(head_hash, vec![impostor])).unwrap_err();
    assert!(err.to_string().contains("another node key"), "{err}");
}
