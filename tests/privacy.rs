//! Differential privacy end to end: the differencing attack k-anonymity fell to, answers
//! repeated from the ledger, the budget running out, and bundles and ledgers tampered
//! with.

use std::{path::Path, process::Command};

mod common;

use prost::Message;
use tempfile::TempDir;
use zkfabric::{
    node::config::PrivacyConfig,
    node::prove::{ProveError, Request},
    node::store::StoreError,
    verifier::bundle::Bundle,
    verifier::ledger::check_chain,
    verifier::privacy::{fresh_nonce, Cost},
    verifier::query::Limits,
    verifier::schema::Schema,
    verifier::verify::{self, KeyPins, Trust},
};

/// Households in Daan: 31 aged 21 or less, one aged 22, 31 aged 23 or more.
const HOUSEHOLDS: u64 = 63;
/// The one aged 22.
const TARGET: u64 = 31;
/// Readings per household: the schema's bound on rows per privacy unit.
const READINGS: u64 = 4;

/// The built-in consumption schema (dp) with 64-row chunks and households of four
/// readings.
fn schema() -> Schema {
    let builtin = Schema::builtin("consumption")
        .unwrap()
        .with_chunk_rows(64)
        .unwrap();
    let households = format!("rows_per_unit = {READINGS}");
    Schema::parse(
        "households.toml",
        &builtin.source.replace("rows_per_unit = 168", &households),
    )
    .unwrap()
}

fn age(household: u64) -> u64 {
    match household {
        h if h < TARGET => 18 + h % 4,
        TARGET => 22,
        h => 23 + h % 40,
    }
}

/// Below the schema's clip bound of 1 kWh, so that the sums are exact.
fn kwh(household: u64, reading: u64) -> u64 {
    100 + 7 * household + reading
}

use common::ProvingNode as Node;

fn node() -> Node {
    let schema = schema();
    let mut columns = vec![Vec::new(); schema.declared().len()];
    for h in 0..HOUSEHOLDS {
        for r in 0..READINGS {
            for (c, column) in schema.declared().iter().enumerate() {
                columns[c].push(match column.name.as_str() {
                    "time" => 1_767_571_200 + 3600 * (READINGS * h + r),
                    "district" => 4, // Daan
                    "hour" => r,
                    "household_size" => h % 5,
                    "age" => age(h),
                    "consent" => 0b111,
                    "kwh" => kwh(h, r),
                    "household" => h,
                    _ => 10,
                });
            }
        }
    }
    Node::new(&schema, &columns)
}

fn request(sql: &str, nonce: Vec<u8>, budget_epsilon: f64) -> Request {
    Request {
        sql: sql.into(),
        purpose: "public-health".into(),
        epoch: None,
        limits: Limits {
            in_list: 2,
            max_groups: 16,
            combine_inputs: 8,
            min_group_size: 3,
        },
        setup: true,
        cost: Some(Cost::new(1.0, 1e-7).unwrap()),
        nonce: Some(nonce),
        privacy: PrivacyConfig {
            budget_epsilon,
            ..PrivacyConfig::default()
        },
        path: Default::default(),
    }
}

fn answer(node: &Node, request: &Request) -> Result<Bundle, ProveError> {
    node.answer(request)
}

/// The COUNT and SUM estimates of a one-group answer, after verifying it.
fn estimates(bundle: &Bundle) -> (i128, i128) {
    verify::verify(bundle, &Trust::keys(KeyPins::Unpinned)).unwrap();
    let row = &bundle.result.as_ref().unwrap().rows[0];
    assert!(!row.suppressed, "the answer over 31 households is released");
    let parse = |e: Option<&zkfabric_proto::v1::NoisyEstimate>| -> i128 {
        e.unwrap().estimate.parse().unwrap()
    };
    (
        parse(row.count_estimate.as_ref()),
        parse(row.sum_estimates.first()),
    )
}

const DAAN: &str = "SELECT COUNT(*), SUM(kwh) FROM consumption WHERE district = 'Daan'";

#[test]
fn three_overlapping_answers_no_longer_subtract_to_a_household() {
    // The attack k = 10 fell to: all of one district, less those aged 21 or less, less
    // those aged 23 or more, leaves the one household aged 22.
    let node = node();
    let young = format!("{DAAN} AND age <= 21");
    let old = format!("{DAAN} AND age >= 23");
    // Two epsilon a query: one per released value, so 104 coins whose 95% threshold
    // (61 steps) the 31 households on either side pass but for odds near 4e-6. At one
    // epsilon a query (354 coins, threshold 193 against 177 + 31) each side would be
    // suppressed one time in twenty, and the test would say nothing about the attack.
    let private = |sql: &str| Request {
        cost: Some(Cost::new(2.0, 1e-7).unwrap()),
        ..request(sql, fresh_nonce(), 10.0)
    };
    let [all, young, old] = [DAAN, young.as_str(), old.as_str()]
        .map(|sql| estimates(&answer(&node, &private(sql)).unwrap()));
    let exact = (
        READINGS as i128,
        (0..READINGS).map(|r| kwh(TARGET, r) as i128).sum::<i128>(),
    );
    let differenced = (all.0 - young.0 - old.0, all.1 - young.1 - old.1);
    // Each answer carries Binomial noise of about ten steps' spread (a step is one
    // household's four readings, or four clipped readings' kWh): the difference misses
    // the household's exact numbers (the count's noise cancels by chance about one time
    // in twenty; the sum's steps of 4,000 kWh leave no difference equal to the
    // household's 1,274), and lies within what three answers' noise explains.
    assert_ne!(differenced, exact, "the attack recovered the household");
    let plan_spread = |step: i128| 3 * 6 * 10 * step;
    assert!((differenced.0 - exact.0).abs() < plan_spread(READINGS as i128));
    assert!((differenced.1 - exact.1).abs() < plan_spread(READINGS as i128 * 1000));

    // The three answers' cost is in the dataset's ledger, which checks.
    let ledger = node.store.ledger("consumption").unwrap();
    assert_eq!(ledger.entries.len(), 3);
    assert_eq!((ledger.spent.epsilon, ledger.spent.delta), (6.0, 3e-7));
    let spent = check_chain("consumption", &ledger.entries, &node.store.node_key()).unwrap();
    assert_eq!(spent, (6.0, 3e-7));
}

#[test]
fn the_same_nonce_repeats_the_answer_free_and_the_budget_runs_out() {
    let node = node();
    let nonce = fresh_nonce();
    let first = answer(&node, &request(DAAN, nonce.clone(), 2.5)).unwrap();
    let again = answer(&node, &request(DAAN, nonce.clone(), 2.5)).unwrap();
    // Same noise, same charge, nothing more spent.
    assert_eq!(first.result, again.result);
    assert_eq!(first.privacy, again.privacy);
    assert_eq!(node.store.ledger("consumption").unwrap().entries.len(), 1);

    // A new nonce is a new charge; the third would pass the budget of 2.5 and is
    // refused, naming the budget, with nothing charged.
    let other = answer(&node, &request(DAAN, fresh_nonce(), 2.5)).unwrap();
    assert_ne!(
        first.privacy.as_ref().unwrap().charge,
        other.privacy.as_ref().unwrap().charge
    );
    let refused = answer(&node, &request(DAAN, fresh_nonce(), 2.5)).unwrap_err();
    assert!(
        matches!(
            refused,
            ProveError::Store(StoreError::BudgetExhausted { .. })
        ),
        "{refused}"
    );
    assert!(refused
        .to_string()
        .contains("privacy budget of `consumption` exhausted"));
    assert_eq!(node.store.ledger("consumption").unwrap().entries.len(), 2);
    // Repeating an answered query still works: it costs nothing.
    answer(&node, &request(DAAN, nonce, 2.5)).unwrap();
    // A query without a nonce is refused before anything is charged.
    let mut no_nonce = request(DAAN, fresh_nonce(), 10.0);
    no_nonce.nonce = None;
    assert!(matches!(
        answer(&node, &no_nonce),
        Err(ProveError::Privacy(_))
    ));
    assert_eq!(node.store.ledger("consumption").unwrap().entries.len(), 2);
}

#[test]
fn tampered_bundles_and_ledgers_are_refused() {
    let node = node();
    let bundle = answer(&node, &request(DAAN, fresh_nonce(), 10.0)).unwrap();
    let other = answer(
        &node,
        &request(&format!("{DAAN} AND age <= 21"), fresh_nonce(), 10.0),
    )
    .unwrap();
    let trust = Trust::keys(KeyPins::Unpinned);
    verify::verify(&bundle, &trust).unwrap();
    type Tamper = Box<dyn Fn(&mut Bundle)>;
    let tampered: Vec<(&str, Tamper)> = vec![
        (
            "another nonce",
            Box::new(|b| {
                b.privacy.as_mut().unwrap().nonce = fresh_nonce();
            }),
        ),
        (
            "no charge",
            Box::new(|b| b.privacy.as_mut().unwrap().charge = None),
        ),
        ("another answer's charge", {
            let charge = other.privacy.clone().unwrap().charge;
            Box::new(move |b| b.privacy.as_mut().unwrap().charge = charge.clone())
        }),
        (
            "another epsilon",
            Box::new(|b| b.privacy.as_mut().unwrap().epsilon = 2.0),
        ),
        (
            "another delta",
            Box::new(|b| b.privacy.as_mut().unwrap().delta = 1e-6),
        ),
        (
            "fewer coins",
            Box::new(|b| b.privacy.as_mut().unwrap().coins -= 2),
        ),
        (
            "another count step",
            Box::new(|b| b.privacy.as_mut().unwrap().count_step = 1),
        ),
        (
            "another sum step",
            Box::new(|b| b.privacy.as_mut().unwrap().sum_steps = vec!["1".into()]),
        ),
        (
            "a lower threshold",
            Box::new(|b| b.privacy.as_mut().unwrap().threshold = 0),
        ),
        (
            "threshold-only",
            Box::new(|b| {
                b.privacy = Some(zkfabric_proto::v1::Privacy {
                    mode: "threshold-only".into(),
                    ..Default::default()
                })
            }),
        ),
        (
            "a released count",
            Box::new(|b| b.result.as_mut().unwrap().rows[0].count += 1),
        ),
        (
            "a stated estimate",
            Box::new(|b| {
                let row = &mut b.result.as_mut().unwrap().rows[0];
                row.count_estimate.as_mut().unwrap().estimate = "4".into();
            }),
        ),
        (
            "a charge whose signature no longer holds",
            Box::new(|b| {
                let p = b.privacy.as_mut().unwrap();
                p.charge.as_mut().unwrap().spent_epsilon = 0.5;
            }),
        ),
    ];
    for (what, tamper) in tampered {
        let mut b = bundle.clone();
        tamper(&mut b);
        // What travels is bytes: decode what was encoded.
        let b = Bundle::decode(b.encode_to_vec().as_slice()).unwrap();
        assert!(verify::verify(&b, &trust).is_err(), "{what} verified");
    }

    // Given the public ledger, a verifier refuses an answer whose charge is missing from
    // it, and accepts one whose charge stands at its position.
    let ledger = node
        .store
        .ledger("consumption")
        .unwrap()
        .to_proto("consumption", PrivacyConfig::default().budget());
    let with = |ledger: zkfabric_proto::v1::Ledger| Trust {
        ledgers: Some(vec![ledger]),
        ..Trust::keys(KeyPins::Unpinned)
    };
    verify::verify(&bundle, &with(ledger.clone())).unwrap();
    let mut without = ledger.clone();
    without.entries.clear();
    let err = verify::verify(&bundle, &with(without))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("ledger entry 1, is missing from the ledger given"),
        "{err}"
    );
    let mut swapped = ledger;
    swapped.entries.swap(0, 1);
    assert!(verify::verify(&bundle, &with(swapped)).is_err());

    // A verifier that asked for another cost refuses the answer.
    let asked = Trust {
        expected: verify::Expected {
            cost: Some(Cost::new(0.5, 1e-7).unwrap()),
            ..Default::default()
        },
        ..Trust::keys(KeyPins::Unpinned)
    };
    let err = verify::verify(&bundle, &asked).unwrap_err().to_string();
    assert!(err.contains("spends epsilon 1"), "{err}");

    // The ledger: an entry changed, dropped or reordered breaks the chain.
    let key = node.store.node_key();
    let entries = node.store.ledger("consumption").unwrap().entries;
    check_chain("consumption", &entries, &key).unwrap();
    let mut changed = entries.clone();
    changed[1].epsilon = 0.1;
    let mut dropped = entries.clone();
    dropped.remove(0);
    let mut reordered = entries.clone();
    reordered.swap(0, 1);
    for (what, ledger) in [
        ("changed", changed),
        ("dropped", dropped),
        ("reordered", reordered),
    ] {
        assert!(check_chain("consumption", &ledger, &key).is_err(), "{what}");
    }
}

/// `zkfabric` on `data` with `config`, and `FAILPOINTS` set when given.
fn cli(data: &Path, config: &Path, failpoints: Option<&str>, args: &[&str]) -> (bool, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_zkfabric"));
    command
        .arg("--data-dir")
        .arg(data)
        .arg("--config")
        .arg(config)
        .args(args);
    if let Some(f) = failpoints {
        command.env("FAILPOINTS", f);
    }
    let out = command.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn the_ledger_from_the_command_line_survives_crashes_and_runs_out() {
    let tmp = TempDir::new().unwrap();
    let data = tmp.path().join("data");
    let config = tmp.path().join("node.toml");
    std::fs::write(
        &config,
        "[store]\nchunk_rows = 64\n\n[privacy]\nbudget_epsilon = 2.5\n\n\
         [query]\ndefault_purpose = \"public-health\"\ncombine_inputs = 8\n",
    )
    .unwrap();
    let rows = tmp.path().join("rows.csv");
    let run = |failpoints, args: &[&str]| cli(&data, &config, failpoints, args);
    let (done, out) = run(
        None,
        &[
            "generate",
            "consumption",
            "--rows",
            "256",
            "--out",
            rows.to_str().unwrap(),
        ],
    );
    assert!(done, "{out}");
    for args in [
        &["ingest", "consumption", rows.to_str().unwrap()][..],
        &["seal", "consumption"],
    ] {
        let (done, out) = run(None, args);
        assert!(done, "{out}");
    }
    let sql = "SELECT COUNT(*) FROM consumption";
    let ledger = |expected: &str| {
        let (done, out) = run(None, &["ledger", "consumption"]);
        assert!(done && out.contains(expected), "{out}");
    };

    // Explain tells the cost before anything is proven or charged.
    let (done, out) = run(None, &["query", sql, "--explain"]);
    assert!(
        done && out.contains("privacy      dp: costs epsilon 1 and delta 1e-7"),
        "{out}"
    );
    ledger("0 charge(s)");
    // The noisy root's shape follows from the cost: keys are made per cost.
    let shapes = |cost: &[&str]| {
        let (done, out) = run(None, &[&["keys", "shapes", sql][..], cost].concat());
        assert!(done, "{out}");
        out.lines()
            .find(|l| l.starts_with("root"))
            .unwrap()
            .to_string()
    };
    assert!(
        shapes(&[]).contains("output=noisy coins="),
        "{}",
        shapes(&[])
    );
    assert_ne!(shapes(&["--epsilon", "0.5"]), shapes(&[]));

    // A crash before the charge commits leaves none; one after leaves it, and the same
    // nonce then gets its answer at no further cost.
    let nonce = "11".repeat(32);
    let answer = tmp.path().join("a.zkf");
    let a = answer.to_str().unwrap();
    let (done, _) = run(
        Some("ledger-before-commit=panic"),
        &["query", sql, "--nonce", &nonce, "--out", a],
    );
    assert!(!done);
    ledger("0 charge(s)");
    let (done, _) = run(
        Some("ledger-committed=panic"),
        &["query", sql, "--nonce", &nonce, "--out", a],
    );
    assert!(!done);
    ledger("1 charge(s): spent epsilon 1 and delta 1e-7 of 2.5");
    let (done, out) = run(None, &["query", sql, "--nonce", &nonce, "--out", a]);
    assert!(done, "{out}");
    ledger("1 charge(s)");
    let (done, out) = run(None, &["verify", a, "--allow-unpinned-keys"]);
    assert!(done && out.contains("charged as ledger entry 1"), "{out}");

    // A new nonce is a new charge; then the budget of 2.5 is spent and the query is
    // refused, exit status and all.
    let (done, out) = run(None, &["query", sql, "--out", a]);
    assert!(done, "{out}");
    ledger("2 charge(s): spent epsilon 2 and delta 2e-7 of 2.5");
    let (done, out) = run(None, &["query", sql, "--out", a]);
    assert!(
        !done && out.contains("privacy budget of `consumption` exhausted"),
        "{out}"
    );
    ledger("2 charge(s)");
    // Asking for less than is left is still answered.
    let (done, out) = run(None, &["query", sql, "--epsilon", "0.5", "--out", a]);
    assert!(done, "{out}");
    ledger("3 charge(s): spent epsilon 2.5");
    let (done, out) = run(None, &["ledger", "--json"]);
    assert!(done && out.contains("\"spentEpsilon\": 2.5"), "{out}");
    // The verifier checks the last answer's charge against that ledger.
    let ledger = tmp.path().join("ledger.json");
    std::fs::write(&ledger, &out).unwrap();
    let l = ledger.to_str().unwrap();
    let (done, out) = run(None, &["verify", a, "--allow-unpinned-keys", "--ledger", l]);
    assert!(
        done && out.contains("the charge stands at its position in the ledger you gave"),
        "{out}"
    );
}

#[test]
fn a_noisy_root_beyond_what_the_node_can_prove_is_refused_before_any_key() {
    let node = node();
    // Hourly buckets of 16 hours: a household's rows reach up to rows_per_unit (4)
    // buckets, so each noisy count gets a quarter of epsilon and draws over a thousand
    // coins; 16 of them are more than a node limited to 10,000 coins proves.
    let hourly = "SELECT date_trunc('hour', to_timestamp(time)), COUNT(*) FROM consumption \
                  WHERE time BETWEEN 1767571200 AND 1767628799 GROUP BY 1";
    let mut request = request(hourly, fresh_nonce(), 10.0);
    request.privacy.max_root_coins = 10_000;
    let err = answer(&node, &request).unwrap_err().to_string();
    assert!(
        err.contains("16 groups x 1 values x")
            && err.contains("this node proves at most 10000 ([privacy] max_root_coins"),
        "{err}"
    );
    // Refused before anything was charged: the budget is whole.
    let ledger = node.store.ledger("consumption").unwrap();
    assert!(ledger.entries.is_empty(), "{:?}", ledger.entries);
}
