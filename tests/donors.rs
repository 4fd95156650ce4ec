//! Donors as they use the command line and a node: credentials issued and held,
//! eligibility proven for a donation, and every refusal (no proof, an unknown issuer, a
//! minor, a non-resident, rows whose age or district is not the credential's, a replayed
//! proof, a donor beyond the per-donor limit, a proof for other records or a later
//! cutoff, a file donated again), each storing nothing.

mod common;

use std::path::PathBuf;

use common::{ok, runtime, status, Server};
use tempfile::TempDir;
use tonic::Code;
use zkfabric::verifier::schema::Schema;
use zkfabric::{
    clients::remote::{verify_receipt, Remote},
    node::store::Store,
    shared::credentials,
};
use zkfabric_circuits::{
    eligibility::{age_at, EligibilityCircuit},
    snark::ProvingKey,
};
use zkfabric_proto::v1 as pb;

struct Donors {
    tmp: TempDir,
    config: PathBuf,
}

impl Donors {
    /// An issuer, a node configuration accepting it for `consumption` (adults of
    /// districts 4 and 6, one donation each), and a donation file.
    fn new() -> (Self, String) {
        let tmp = TempDir::new().unwrap();
        let config = tmp.path().join("node.toml");
        std::fs::write(&config, "").unwrap();
        let d = Self { tmp, config };
        let issuer = d.path("issuer.json");
        let out = ok(d.cli(&["credential", "keygen", "--issuer", "--out", &issuer]));
        let public = out.split_whitespace().last().unwrap().to_string();
        let org = d.path("org.json");
        let out = ok(d.cli(&["credential", "keygen", "--organisation", "--out", &org]));
        let organisation = out.split_whitespace().last().unwrap().to_string();
        std::fs::write(
            &d.config,
            format!(
                "[store]\nchunk_rows = 8\n\n[privacy]\nthreshold_only = [\"consumption\"]\n\n[server]\ndata_dir = {:?}\n\n[donors.consumption]\n\
                 issuers = [\"{public}\"]\norganisations = [\"{organisation}\"]\n\
                 districts = [4, 6]\nmin_age = 18\ndonations_per_donor = 1\n",
                d.tmp.path().join("data")
            ),
        )
        .unwrap();
        let csv = "time,district,hour,household_size,age,kwh,water,spend\n\
                   1767571200,Daan,0,2,40,120,5,0\n1767574800,Daan,1,2,40,95,0,0\n";
        std::fs::write(d.tmp.path().join("rows.csv"), csv).unwrap();
        (d, public)
    }

    fn path(&self, name: &str) -> String {
        self.tmp.path().join(name).to_str().unwrap().to_string()
    }

    fn cli(&self, args: &[&str]) -> std::process::Output {
        common::zkfabric_with("--config", &self.config, args)
    }

    /// A holder key and a credential from `issuer` for it.
    fn credential(
        &self,
        name: &str,
        issuer: &str,
        birth_date: &str,
        district: u64,
    ) -> (String, String) {
        let holder = self.path(&format!("{name}-holder.json"));
        let out = ok(self.cli(&["credential", "keygen", "--holder", "--out", &holder]));
        let commitment = out.split_whitespace().last().unwrap().to_string();
        let credential = self.path(&format!("{name}-credential.json"));
        ok(self.cli(&[
            "credential",
            "issue",
            "--issuer-key",
            &self.path(issuer),
            "--birth-date",
            birth_date,
            "--district",
            &district.to_string(),
            "--holder",
            &commitment,
            "--out",
            &credential,
        ]));
        (credential, holder)
    }

    /// A file of two readings (2026-01-05, 00:00 and 01:00 UTC, kwh 120 and 95) of a
    /// household in `district` whose donor was born on `birth_date` (YYYY-MM-DD), each
    /// row's age theirs at its time plus `age_error`.
    fn rows_of(&self, name: &str, birth_date: &str, district: &str, age_error: u64) -> String {
        let born: u32 = birth_date.replace('-', "").parse().unwrap();
        let mut csv = String::from("time,district,hour,household_size,age,kwh,water,spend\n");
        for (hour, time, kwh) in [(0, 1_767_571_200u64, 120), (1, 1_767_574_800, 95)] {
            let age = age_at(born, time).unwrap() + age_error;
            csv.push_str(&format!("{time},{district},{hour},2,{age},{kwh},5,0\n"));
        }
        let path = self.path(name);
        std::fs::write(&path, csv).unwrap();
        path
    }

    fn donate(
        &self,
        extra: &[&str],
        credential: Option<&(String, String)>,
    ) -> std::process::Output {
        self.donate_file(&self.path("rows.csv"), extra, credential)
    }

    fn donate_file(
        &self,
        rows: &str,
        extra: &[&str],
        credential: Option<&(String, String)>,
    ) -> std::process::Output {
        let mut args = vec![
            "donate",
            rows,
            "--dataset",
            "consumption",
            "--purposes",
            "energy-research,public-health",
        ];
        if let Some((c, h)) = credential {
            args.extend(["--credential", c.as_str(), "--holder-key", h.as_str()]);
        }
        args.extend(extra);
        self.cli(&args)
    }

    fn pending(&self) -> u64 {
        let store = Store::open(&self.tmp.path().join("data")).unwrap();
        store.datasets().unwrap().first().map_or(0, |d| d.pending)
    }
}

/// A birth date `years` years before today, YYYY-MM-DD.
fn born_years_ago(years: u32) -> String {
    let today = credentials::today();
    let cut = credentials::cutoff(today, years);
    format!("{}-{:02}-{:02}", cut / 10_000, cut / 100 % 100, cut % 100)
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).to_string()
}

#[test]
fn an_eligible_donor_donates_once_and_every_ineligible_donation_is_refused() {
    let (d, _) = Donors::new();
    let adult = d.credential("adult", "issuer.json", "1985-06-15", 4);
    let out = ok(d.donate(&[], Some(&adult)));
    assert!(
        out.contains("donated 2 rows to consumption") && out.contains("nullifier"),
        "{out}"
    );
    assert_eq!(d.pending(), 2);

    // The same donor again: one donation per donor.
    let again = d.donate(&[], Some(&adult));
    assert!(
        stderr(&again).contains("already made 1 donation"),
        "{}",
        stderr(&again)
    );
    // No credential, where the dataset requires one.
    let none = d.donate(&[], None);
    assert!(
        stderr(&none).contains("only with an eligibility proof"),
        "{}",
        stderr(&none)
    );
    // A seventeen-year-old cannot even make the proof.
    let minor = d.credential("minor", "issuer.json", &born_years_ago(17), 4);
    let rows = d.rows_of("minor.csv", &born_years_ago(17), "Daan", 0);
    let text = stderr(&d.donate_file(&rows, &[], Some(&minor)));
    assert!(text.contains("does not make its holder eligible"), "{text}");
    // Eighteen today is an adult.
    let today18 = d.credential("today18", "issuer.json", &born_years_ago(18), 6);
    let rows = d.rows_of("today18.csv", &born_years_ago(18), "Xinyi", 0);
    ok(d.donate_file(&rows, &[], Some(&today18)));
    // Rows that say another age or district than the credential cannot be proven: the
    // holder's command names the row and the column.
    let older = d.credential("older", "issuer.json", "1985-06-15", 4);
    let rows = d.rows_of("older.csv", "1985-06-15", "Daan", 1);
    let text = stderr(&d.donate_file(&rows, &[], Some(&older)));
    assert!(
        text.contains("row 0 of the file: age 41 is not the holder's age 40"),
        "{text}"
    );
    let rows = d.rows_of("moved.csv", "1985-06-15", "Xinyi", 0);
    let text = stderr(&d.donate_file(&rows, &[], Some(&older)));
    assert!(
        text.contains("row 0 of the file: district 6 is not the credential's district 4"),
        "{text}"
    );
    // A credential whose signature was tampered with.
    let tampered = d.credential("tampered", "issuer.json", "1970-01-01", 4);
    let mut file: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&tampered.0).unwrap()).unwrap();
    let s = file["s"].as_str().unwrap().to_string();
    file["s"] = format!("{}{}", if &s[..1] == "0" { "1" } else { "0" }, &s[1..]).into();
    std::fs::write(&tampered.0, file.to_string()).unwrap();
    let text = stderr(&d.donate(&[], Some(&tampered)));
    assert!(text.contains("signature does not verify"), "{text}");
    // A resident of another district.
    let elsewhere = d.credential("elsewhere", "issuer.json", "1970-01-01", 5);
    let text = stderr(&d.donate(&[], Some(&elsewhere)));
    assert!(text.contains("eligib"), "{text}");
    // An issuer the node does not accept.
    ok(d.cli(&[
        "credential",
        "keygen",
        "--issuer",
        "--out",
        &d.path("rogue.json"),
    ]));
    let rogue = d.credential("rogue", "rogue.json", "1970-01-01", 4);
    let text = stderr(&d.donate(&[], Some(&rogue)));
    assert!(text.contains("issuer is not accepted"), "{text}");
    // A company's bulk donation, signed with an accepted organisation key; another
    // organisation's is refused.
    let company = d.rows_of("company.csv", "1970-01-01", "Datong", 0);
    let org_key = ["--org-key", &d.path("org.json")];
    let out = ok(d.donate_file(&company, &org_key, None));
    assert!(out.contains("signed by organisation"), "{out}");
    // The same file again (a retry after a lost answer, say) is refused, naming the
    // receipt that holds its rows: a donation never doubles rows.
    let text = stderr(&d.donate_file(&company, &org_key, None));
    assert!(
        text.contains("were already donated to consumption: receipt"),
        "{text}"
    );
    let other = d.path("other-org.json");
    ok(d.cli(&["credential", "keygen", "--organisation", "--out", &other]));
    let text = stderr(&d.donate(&["--org-key", &other], None));
    assert!(text.contains("is not accepted"), "{text}");
    assert_eq!(
        d.pending(),
        6,
        "the eligible and accepted donations, nothing else"
    );
    // Sealed, the signed manifest says who vouches for which rows.
    ok(d.cli(&["seal", "consumption"]));
    let shown = ok(d.cli(&["catalog", "show", "consumption"]));
    assert_backing(&shown, 6, 4, 2);
}

/// Asserts that `text` (from `catalog show` or `verify`) says an epoch of `rows` rows
/// holds `credential` rows donated with a credential and `organisation` rows an
/// organisation signed, the rest ingested by the operator.
fn assert_backing(text: &str, rows: u64, credential: u64, organisation: u64) {
    let share = |n: u64| format!("{n} ({:.1}%)", 100.0 * n as f64 / rows as f64);
    let expected = format!(
        "of the epoch's {rows} rows, {} donated with a credential (their age and district \
         proven against it), {} signed by an organisation, {} ingested by the node's operator",
        share(credential),
        share(organisation),
        share(rows - credential - organisation)
    );
    assert!(text.contains(&expected), "{expected}\nnot in\n{text}");
}

#[test]
fn a_node_checks_eligibility_proofs_and_refuses_replays_and_tampering() {
    let (d, issuer) = Donors::new();
    let server = Server::start(&d.config, "");
    let url = server.url.clone();

    // The honest path from the command line: policy and proving key from the node.
    let adult = d.credential("adult", "issuer.json", "1985-06-15", 4);
    let out = ok(d.donate(&["--remote", &url], Some(&adult)));
    assert!(
        out.contains("donated 2 rows") && out.contains("nullifier"),
        "{out}"
    );

    // A second donor's proof made here, then sent as is, replayed and tampered with.
    let second = d.credential("second", "issuer.json", "1979-02-28", 4);
    let rogue_key = d.path("rogue.json");
    ok(d.cli(&["credential", "keygen", "--issuer", "--out", &rogue_key]));
    let rogue = d.credential("rogue", "rogue.json", "1979-02-28", 4);
    let rt = runtime();
    let remote: Remote = server.client(&rt, None);
    rt.block_on(async {
        let node_key = remote.node_key().await.unwrap();
        let policy = remote
            .catalog()
            .describe_dataset(pb::DescribeDatasetRequest {
                dataset: "consumption".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .donor_policy
            .expect("the dataset has a donor policy");
        assert_eq!(policy.issuers, vec![issuer]);
        assert_eq!(policy.cutoff, credentials::cutoff(credentials::today(), 18));
        let key = remote
            .catalog()
            .get_proving_key(pb::GetProvingKeyRequest {
                shape: policy.shape.clone(),
            })
            .await
            .unwrap()
            .into_inner();
        let schema = Schema::builtin("consumption")
            .unwrap()
            .with_chunk_rows(8)
            .unwrap()
            .threshold_only()
            .unwrap();
        let shape = credentials::shape(&schema);
        assert_eq!(policy.shape, shape.description());
        assert!(
            policy.shape.contains("rows=168 bound=age+district"),
            "{}",
            policy.shape
        );
        let pk = ProvingKey::from_bytes::<EligibilityCircuit>(&key.key, &shape).unwrap();
        // The rows of a donor born 1979-02-28 in Daan.
        let records = std::fs::read(d.rows_of("second.csv", "1979-02-28", "Daan", 0)).unwrap();
        let prove = |files: &(String, String), policy: &pb::DonorPolicy, records: &[u8]| {
            let holder = credentials::read_json(std::path::Path::new(&files.1)).unwrap();
            let credential = credentials::read_json(std::path::Path::new(&files.0)).unwrap();
            let (holding, issuer) =
                credentials::holding(&holder, &credential, "credential").unwrap();
            let purposes = ["energy-research".to_string()];
            let format = pb::RecordFormat::Csv;
            let rows = credentials::bound_rows_of(&schema, records, format, &purposes).unwrap();
            let proving = credentials::Proving {
                policy,
                pk: &pk,
                node_key: &node_key,
                dataset: "consumption",
                records,
                rows: &rows,
            };
            credentials::prove(&proving, holding, issuer).unwrap()
        };
        let request = |records: &[u8], proof: pb::EligibilityProof| pb::DonateRequest {
            dataset: "consumption".into(),
            format: pb::RecordFormat::Csv as i32,
            records: records.to_vec(),
            purposes: vec!["energy-research".into()],
            eligibility: Some(proof),
            organisation: None,
        };
        let proof = prove(&second, &policy, &records);

        // The proof bound to other records is refused: one value changed, or the rows'
        // ages a year off (the node reads the ages from the file, and the proof is of
        // others).
        for (from, to, why) in [
            (",120,", ",121,", "does not verify"),
            (",2,46,", ",2,47,", "age and district values"),
        ] {
            let other = String::from_utf8(records.clone())
                .unwrap()
                .replace(from, to);
            assert_ne!(other.as_bytes(), &records[..]);
            let (c, m) = status(
                remote
                    .donor()
                    .donate(request(other.as_bytes(), proof.clone()))
                    .await,
            );
            assert_eq!(c, Code::PermissionDenied, "{m}");
            assert!(m.contains(why), "{m}");
        }
        // A changed nullifier is refused too.
        let mut changed = proof.clone();
        changed.nullifier[31] ^= 1;
        let (c, m) = status(remote.donor().donate(request(&records, changed)).await);
        assert_eq!(c, Code::PermissionDenied, "{m}");

        // Honest: accepted, with the nullifier in the signed receipt.
        let response = remote
            .donor()
            .donate(request(&records, proof.clone()))
            .await
            .unwrap()
            .into_inner();
        let body = verify_receipt(response.receipt.as_ref().unwrap(), None).unwrap();
        assert_eq!(body.nullifier, hex::encode(&proof.nullifier));
        // Replayed: refused.
        let (c, m) = status(remote.donor().donate(request(&records, proof)).await);
        assert_eq!(c, Code::AlreadyExists, "{m}");
        assert!(m.contains("replayed"), "{m}");

        // A cutoff later than the node's (a 17-year-old's proof) is refused.
        let mut lenient = policy.clone();
        lenient.cutoff += 10_000;
        let third = d.credential("third", "issuer.json", "1979-02-28", 4);
        let (c, m) = status(
            remote
                .donor()
                .donate(request(&records, prove(&third, &lenient, &records)))
                .await,
        );
        assert_eq!(c, Code::PermissionDenied, "{m}");
        assert!(m.contains("later than today's"), "{m}");

        // An issuer the node does not accept.
        let mut trusting = policy.clone();
        let rogue_public =
            credentials::read_json::<credentials::IssuerKey>(std::path::Path::new(&rogue_key))
                .unwrap()
                .public;
        trusting.issuers.push(rogue_public);
        let (c, m) = status(
            remote
                .donor()
                .donate(request(&records, prove(&rogue, &trusting, &records)))
                .await,
        );
        assert_eq!(c, Code::PermissionDenied, "{m}");
        assert!(m.contains("not accepted"), "{m}");

        // An organisation's signature over other purposes than the request's.
        let org: credentials::OrganisationKey =
            credentials::read_json(std::path::Path::new(&d.path("org.json"))).unwrap();
        // An organisation's file names its people's units (a credential donor's is the
        // node's to set).
        let org_records: Vec<u8> = String::from_utf8(records.clone())
            .unwrap()
            .lines()
            .enumerate()
            .map(|(i, l)| match i {
                0 => format!("{l},household\n"),
                _ => format!("{l},{i}\n"),
            })
            .collect::<String>()
            .into_bytes();
        let records = org_records;
        let mut signed = request(&records, pb::EligibilityProof::default());
        signed.eligibility = None;
        signed.organisation = Some(
            org.sign("consumption", &records, &["public-health".to_string()])
                .unwrap(),
        );
        let (c, m) = status(remote.donor().donate(signed.clone()).await);
        assert_eq!(c, Code::PermissionDenied, "{m}");
        assert!(m.contains("does not cover"), "{m}");
        signed.organisation = Some(
            org.sign("consumption", &records, &["energy-research".to_string()])
                .unwrap(),
        );
        let response = remote
            .donor()
            .donate(signed.clone())
            .await
            .unwrap()
            .into_inner();
        let body = verify_receipt(response.receipt.as_ref().unwrap(), None).unwrap();
        assert_eq!(body.organisation, org.public);
        // Sent again: ALREADY_EXISTS naming the receipt that holds the rows.
        let (c, m) = status(remote.donor().donate(signed).await);
        assert_eq!(c, Code::AlreadyExists, "{m}");
        assert!(m.contains(&format!("receipt {}", body.id)), "{m}");

        // No proof at all.
        let mut bare = request(&records, pb::EligibilityProof::default());
        bare.eligibility = None;
        let (c, m) = status(remote.donor().donate(bare).await);
        assert_eq!(c, Code::InvalidArgument, "{m}");
        let pending = remote.datasets().await.unwrap()[0].pending;
        assert_eq!(pending, 6, "three donations stored, nothing else");
    });
}

/// The receipt id a `donate` printed.
fn receipt_id(out: &str) -> String {
    let after = out.split("receipt ").nth(1).expect("a receipt id");
    after.split_whitespace().next().unwrap().to_string()
}

/// `COUNT(*)` and `SUM(kwh)` a verified query on `epoch` answers, after verifying it.
/// A trusted-keys file of every key the node holds (`keys list`: fingerprint, origin,
/// constraints, shape), as a verifier who trusts this node's setup would write it.
fn trusted_keys(d: &Donors) -> String {
    let listed = ok(d.cli(&["keys", "list"]));
    let lines: String = listed
        .lines()
        .map(|l| {
            let fields: Vec<&str> = l.split('\t').collect();
            format!("{} {}\n", fields[0], fields[3])
        })
        .collect();
    let path = d.path("trusted-keys");
    std::fs::write(&path, lines).unwrap();
    path
}

fn verified_count(d: &Donors, epoch: u64, out: &str) -> (u64, u64) {
    let sql = "SELECT COUNT(*), SUM(kwh) FROM consumption";
    let e = epoch.to_string();
    ok(d.cli(&[
        "query",
        sql,
        "--purpose",
        "energy-research",
        "--epoch",
        &e,
        "--out",
        out,
    ]));
    let pins = trusted_keys(d);
    let text = ok(d.cli(&[
        "verify",
        out,
        "--trusted-keys",
        &pins,
        "--sql",
        sql,
        "--purpose",
        "energy-research",
        "--epoch",
        &e,
    ]));
    // The answer row: the line of two numbers, the count and the sum in kWh (the
    // stored Wh / 1000, exact to three decimals).
    let numbers: Vec<f64> = text
        .lines()
        .map(|l| {
            l.split_whitespace()
                .map(str::parse)
                .collect::<Result<Vec<f64>, _>>()
        })
        .find_map(|n| n.ok().filter(|n| n.len() == 2))
        .unwrap_or_else(|| panic!("no answer in {text}"));
    (numbers[0] as u64, (numbers[1] * 1000.0).round() as u64)
}

/// `zkfabric withdraw` of donation `id` that panics at failpoint `point`.
fn withdraw_crashing_at(d: &Donors, id: &str, holder: &str, point: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_zkfabric"))
        .arg("--config")
        .arg(&d.config)
        .args(["withdraw", id, "--holder-key", holder])
        .env("FAILPOINTS", format!("{point}=panic"))
        .output()
        .unwrap()
}

/// How many rows of any Parquet file under `dir` (pending batches, sealed chunks, and
/// whatever else) have a `kwh` among `values`.
fn stored_kwh(dir: &std::path::Path, values: &[u64]) -> usize {
    use datafusion::arrow::{
        array::AsArray,
        compute::cast,
        datatypes::{DataType, UInt64Type},
    };
    use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    let mut found = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found += stored_kwh(&path, values);
            continue;
        }
        if path.extension().is_none_or(|e| e != "parquet") {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .unwrap()
            .build()
            .unwrap();
        for batch in reader {
            let batch = batch.unwrap();
            let Some(kwh) = batch.column_by_name("kwh") else {
                continue;
            };
            let kwh = cast(kwh, &DataType::UInt64).unwrap();
            found += kwh
                .as_primitive::<UInt64Type>()
                .iter()
                .filter(|v| v.is_some_and(|v| values.contains(&v)))
                .count();
        }
    }
    found
}

#[test]
fn a_withdrawn_donation_leaves_the_next_epoch_is_erased_and_the_old_bundle_still_verifies() {
    let (d, _) = Donors::new();
    // 8 rows of others sealed into chunk 0 (epoch 1).
    let others = d.path("others.csv");
    // One household's 14 readings, with its pseudonym (the privacy unit) as a file names it.
    let mut csv =
        String::from("time,district,hour,household_size,age,kwh,water,spend,consent,household\n");
    for i in 0..14u64 {
        csv.push_str(&format!(
            "{},Neihu,{},3,50,{},1,1,energy-research,7\n",
            1_767_571_200 + 3600 * i,
            i % 24,
            1000 + i
        ));
    }
    std::fs::write(&others, csv).unwrap();
    let first_eight: String = std::fs::read_to_string(&others)
        .unwrap()
        .lines()
        .take(9)
        .map(|l| format!("{l}\n"))
        .collect();
    let last_six: String = std::fs::read_to_string(&others)
        .unwrap()
        .lines()
        .enumerate()
        .filter(|(i, _)| *i == 0 || *i > 8)
        .map(|(_, l)| format!("{l}\n"))
        .collect();
    std::fs::write(d.path("a.csv"), first_eight).unwrap();
    std::fs::write(d.path("b.csv"), last_six).unwrap();
    ok(d.cli(&["ingest", "consumption", &d.path("a.csv")]));
    // An adult's 2 rows (kwh 120 and 95), then 6 more of others: chunk 1 mixes them (epoch 2).
    let adult = d.credential("adult", "issuer.json", "1985-06-15", 4);
    let id = receipt_id(&ok(d.donate(&[], Some(&adult))));
    ok(d.cli(&["ingest", "consumption", &d.path("b.csv")]));
    ok(d.cli(&[
        "setup",
        "SELECT COUNT(*), SUM(kwh) FROM consumption",
        "--purpose",
        "energy-research",
    ]));

    let before = d.path("epoch2.zkf");
    let all: u64 = (0..14).map(|i| 1000 + i).sum::<u64>() + 120 + 95;
    assert_eq!(verified_count(&d, 2, &before), (16, all));

    // The adult's rows (kwh 120 and 95, no one else's) are in the data directory.
    let data = d.tmp.path().join("data");
    assert_eq!(stored_kwh(&data, &[120, 95]), 2);

    // A crash at either step before the commit changes nothing.
    for point in ["withdraw-files-written", "withdraw-before-commit"] {
        let crashed = withdraw_crashing_at(&d, &id, &adult.1, point);
        assert!(!crashed.status.success(), "{point}");
        let store = Store::open(&data).unwrap();
        assert_eq!(store.epochs("consumption").unwrap(), vec![1, 2], "{point}");
        assert_eq!(store.datasets().unwrap()[0].rows, 16, "{point}");
    }
    // A crash after it, before the files are erased: the next open erases them.
    let crashed = withdraw_crashing_at(&d, &id, &adult.1, "withdraw-before-erase");
    assert!(!crashed.status.success());
    assert_eq!(
        stored_kwh(&data, &[120, 95]),
        2,
        "the crash came before the erasure"
    );
    let store = Store::open(&data).unwrap();
    assert_eq!(store.epochs("consumption").unwrap(), vec![1, 2, 3]);
    drop(store);
    // Erased: no file under the data directory holds a withdrawn row any more.
    assert_eq!(stored_kwh(&data, &[120, 95]), 0);
    let after = d.path("epoch3.zkf");
    assert_eq!(verified_count(&d, 3, &after), (14, all - 215));
    // The old epoch's bundle still verifies, and says who vouched for its rows: the
    // adult's 2 rows were proven against their credential; the other 14 the operator
    // ingested. The new epoch has no credential-backed row left.
    let verified = ok(d.cli(&["verify", &before, "--trusted-keys", &trusted_keys(&d)]));
    assert_backing(&verified, 16, 2, 0);
    let old = d.cli(&[
        "query",
        "SELECT COUNT(*) FROM consumption",
        "--purpose",
        "energy-research",
        "--epoch",
        "2",
    ]);
    assert!(!old.status.success());
    assert!(
        stderr(&old).contains(
            "epoch 2 of consumption held rows that a donor withdrew, erased since epoch 3"
        ) && stderr(&old).contains("ask epoch 3 (the latest) instead"),
        "{}",
        stderr(&old)
    );
    // The catalog says so too, and shows the erased rows nowhere.
    let shown = ok(d.cli(&["catalog", "show", "consumption", "--epoch", "2"]));
    assert!(
        shown.contains("erased       epoch 2 of consumption held rows"),
        "{shown}"
    );
    assert!(
        shown.contains("of the epoch's 16 rows, 2 (12.5%)"),
        "{shown}"
    );
    let latest = ok(d.cli(&["catalog", "show", "consumption"]));
    assert!(!latest.contains("erased "), "{latest}");
    assert!(
        latest.contains("of the epoch's 14 rows, 0 (0.0%) donated with a credential"),
        "{latest}"
    );
    let again = d.cli(&["withdraw", &id, "--holder-key", &adult.1]);
    assert!(
        stderr(&again).contains("already withdrawn"),
        "{}",
        stderr(&again)
    );
}
