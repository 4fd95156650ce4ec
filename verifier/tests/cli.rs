//! `zkfabric-verify` as an auditor runs it: the fixture bundles verified with the trusted
//! keys, node key, question and manifest chain pinned; the report; and the refusals.

use std::process::{Command, Output};

mod common;
use common::{chain, fixture};

fn zkfabric_verify(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zkfabric-verify"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// The fixture path `name` as an argument.
fn path(name: &str) -> String {
    fixture(name).display().to_string()
}

#[test]
fn an_auditor_verifies_a_bundle_with_everything_pinned() {
    let node_key = std::fs::read_to_string(fixture("node-key")).unwrap();
    let head = chain().last().unwrap().manifest.hash();
    let out = zkfabric_verify(&[
        &path("grouped.zkf"),
        "--trusted-keys",
        &path("trusted-keys"),
        "--node-key",
        node_key.trim(),
        "--purpose",
        "public-health",
        "--min-group-size",
        "3",
        "--epoch",
        "1",
        "--manifest-head",
        &head,
        "--manifest-chain",
        &path("chain.json"),
    ]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(
        report.starts_with("verified     consumption epoch 1"),
        "{report}"
    );
    // The SQL text was not re-planned; the proven query is printed in words.
    assert!(
        report.contains("(not re-planned: this verifier has no SQL planner)"),
        "{report}"
    );
    assert!(
        report.contains(
            "the proofs are about the district of each group, the number of rows, the sum \
             of kwh over the rows consented to \"public-health\" with 3 <= hour <= 23, \
             grouped by district"
        ),
        "{report}"
    );
    assert!(
        report.contains("all 12 chunks of the epoch proven"),
        "{report}"
    );
    assert!(report.contains("19 verified"), "{report}");
    assert!(
        report.contains("1 epoch(s) behind the head you pinned"),
        "{report}"
    );
    assert!(
        report.contains("purpose public-health as asked; k = 3 as asked"),
        "{report}"
    );
    assert!(report.contains("Zhongzheng"), "{report}");
    assert!(report.contains("suppressed"), "{report}");
}

#[test]
fn the_json_form_verifies_and_unpinned_keys_say_unverified_first() {
    let out = zkfabric_verify(&[&path("count.zkf.json"), "--allow-unpinned-keys"]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    assert!(report.starts_with("UNVERIFIED"), "{report}");
    assert!(
        report.contains("not checked: pass it to compare"),
        "{report}"
    );
}

#[test]
fn what_the_verifier_cannot_check_or_was_not_given_is_refused() {
    // No keys pinned.
    let out = zkfabric_verify(&[&path("count.zkf")]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("no verifying keys are pinned"),
        "{}",
        stderr(&out)
    );
    // --sql needs the planner, which this binary leaves out.
    let out = zkfabric_verify(&[
        &path("count.zkf"),
        "--trusted-keys",
        &path("trusted-keys"),
        "--sql",
        "SELECT COUNT(*) FROM consumption",
    ]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("needs the SQL planner"),
        "{}",
        stderr(&out)
    );
    // Another node's key, another question: REJECTED, naming the check.
    for (flag, value, reason) in [
        ("--node-key", "11".repeat(32), "manifest"),
        ("--purpose", "energy-research".into(), "purpose"),
        (
            "--manifest-head",
            format!("sha256:{}", "0".repeat(64)),
            "manifest head",
        ),
    ] {
        let out = zkfabric_verify(&[
            &path("count.zkf"),
            "--trusted-keys",
            &path("trusted-keys"),
            flag,
            &value,
        ]);
        assert!(!out.status.success(), "{flag}");
        let err = stderr(&out);
        assert!(
            err.contains("count.zkf: REJECTED") && err.contains(reason),
            "{flag}: {err}"
        );
    }
}

#[test]
fn a_changed_bundle_is_rejected() {
    let tmp = tempfile::TempDir::new().unwrap();
    let text = std::fs::read_to_string(fixture("count.zkf.json")).unwrap();
    let mut json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let count = &mut json["result"]["rows"][0]["count"];
    *count = (count.as_str().unwrap().parse::<u64>().unwrap() + 1)
        .to_string()
        .into();
    let forged = tmp.path().join("forged.zkf.json");
    std::fs::write(&forged, json.to_string()).unwrap();
    let out = zkfabric_verify(&[
        forged.to_str().unwrap(),
        "--trusted-keys",
        &path("trusted-keys"),
    ]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("REJECTED"), "{}", stderr(&out));
    assert!(stdout(&out).is_empty(), "{}", stdout(&out));
}

#[test]
fn a_noisy_answer_states_its_privacy_and_its_cost_is_checked() {
    let node_key = std::fs::read_to_string(fixture("node-key")).unwrap();
    let verify = |extra: &[&str]| {
        let mut args = vec![
            path("noisy.zkf"),
            "--trusted-keys".into(),
            path("trusted-keys"),
            "--node-key".into(),
            node_key.trim().to_string(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        zkfabric_verify(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let out = verify(&["--epsilon", "1", "--delta", "1e-7"]);
    let report = stdout(&out);
    assert!(out.status.success(), "{report}{}", stderr(&out));
    // The mode comes first, with the cost and the ledger charge.
    let second = report.lines().nth(1).unwrap();
    assert!(
        second.starts_with("privacy      dp: every number is noisy (epsilon 1, delta 1e-7")
            && second.contains("charged as ledger entry 1"),
        "{report}"
    );
    assert!(
        report.contains("epsilon 1 and delta 1e-7 as asked"),
        "{report}"
    );
    // Each number is an estimate with an interval.
    assert!(report.contains("95% interval"), "{report}");

    // A researcher who asked to spend less refuses the answer.
    let out = verify(&["--epsilon", "0.5", "--delta", "1e-7"]);
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("the bundle spends epsilon 1 and delta 1e-7, not 0.5"),
        "{}",
        stderr(&out)
    );
    // A threshold-only answer says so.
    let exact = zkfabric_verify(&[&path("count.zkf"), "--trusted-keys", &path("trusted-keys")]);
    assert!(
        stdout(&exact).contains("privacy      threshold-only: exact answers"),
        "{}",
        stdout(&exact)
    );
}
