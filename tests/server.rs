//! The gRPC node as clients meet it: a real `zkfabric serve` process on a loopback port,
//! driven by the generated clients. Verified queries end to end (bundles verified
//! offline), tokens and roles, malformed and oversized requests, 16 concurrent clients,
//! a full proving queue, per-address donor limits, shutdown during a proof, and Arrow
//! Flight SQL (metadata, a statement proven once, its bundle verified).

use std::{collections::HashSet, path::PathBuf, process::Output};

use arrow_flight::{
    flight_service_client::FlightServiceClient,
    sql::{
        client::FlightSqlServiceClient, CommandGetDbSchemas, CommandGetTables,
        CommandStatementQuery, ProstMessageExt, SqlInfo,
    },
    Action, FlightDescriptor, FlightInfo, IpcMessage,
};
use datafusion::arrow::{
    array::{BinaryArray, Decimal128Array, Int64Array, StringArray},
    datatypes::{DataType, Schema as ArrowSchema},
    record_batch::RecordBatch,
};
use futures::TryStreamExt;
use prost::Message;

use tempfile::TempDir;
use tonic::Code;
use zkfabric::{
    clients::remote::{verify_receipt, Remote, RemoteError},
    node::server::flight::{BUNDLE_ID, BUNDLE_SHA256, GET_BUNDLE},
    node::store::Store,
    verifier::ledger::check_chain,
    verifier::privacy::fresh_nonce,
    verifier::verify::{verify, KeyPins, PinnedKey, Trust},
};
use zkfabric_proto::v1::{self as pb, run_event::Event};

const RESEARCHER: &str = "zkf_researcher-token-for-tests";
const ADMIN: &str = "zkf_admin-token-for-tests";
const SUM: &str = "SELECT COUNT(*), SUM(kwh) FROM consumption WHERE hour BETWEEN 7 AND 22";

fn sha256(text: &str) -> String {
    zkfabric::node::store::sha256_hex(text.as_bytes())
}

mod common;
use common::{ok, runtime, status, Server};

/// A node's directory: configuration (8-row chunks, tiny shapes, two tokens) and data.
struct Node {
    tmp: TempDir,
    config: PathBuf,
}

impl Node {
    /// A data directory holding `rows` generated consumption rows, sealed, answered
    /// exactly (threshold-only): these tests check the answers' numbers.
    fn new(rows: u64, server: &str) -> Self {
        Self::with_privacy(rows, server, "threshold_only = [\"consumption\"]")
    }

    /// [`Node::new`] with `privacy` as the configuration's `[privacy]` table.
    fn with_privacy(rows: u64, server: &str, privacy: &str) -> Self {
        let tmp = TempDir::new().unwrap();
        let config = tmp.path().join("node.toml");
        let data = tmp.path().join("data");
        std::fs::write(
            &config,
            format!(
                "[store]\nchunk_rows = 8\n\n[privacy]\n{privacy}\n\n\
                 [query]\ndefault_purpose = \"energy-research\"\n\
                 min_group_size = 2\nin_list_items = 2\n\n[server]\ndata_dir = {data:?}\n{server}\n\n\
                 [[server.tokens]]\nname = \"rita\"\nrole = \"researcher\"\nsha256 = \"{}\"\n\n\
                 [[server.tokens]]\nname = \"adam\"\nrole = \"admin\"\nsha256 = \"{}\"\n",
                sha256(RESEARCHER),
                sha256(ADMIN)
            ),
        )
        .unwrap();
        let node = Self { tmp, config };
        if rows > 0 {
            let csv = node.tmp.path().join("rows.csv");
            let c = csv.to_str().unwrap();
            std::fs::write(&csv, readings_csv(rows as usize, Some("energy-research"))).unwrap();
            ok(node.cli(&["ingest", "consumption", c]));
            ok(node.cli(&["seal", "consumption"]));
        }
        node
    }

    fn cli(&self, args: &[&str]) -> Output {
        common::zkfabric_with("--config", &self.config, args)
    }

    fn data(&self) -> PathBuf {
        self.tmp.path().join("data")
    }

    /// Starts `zkfabric serve` on a free loopback port, with `failpoints` set.
    fn serve(&self, failpoints: &str) -> Server {
        Server::start(&self.config, failpoints)
    }
}

fn query(sql: &str) -> pb::QueryRequest {
    pb::QueryRequest {
        sql: sql.into(),
        ..Default::default()
    }
}

fn code<T: std::fmt::Debug>(result: Result<T, RemoteError>) -> (Code, String) {
    match result {
        Err(RemoteError::Status(s)) => (s.code(), s.message().to_string()),
        other => panic!("expected an error status, got {other:?}"),
    }
}

/// Makes the keys `sql` needs with an admin's Admin.Setup; returns the key lines.
async fn setup_keys(admin: &Remote, sql: &str) -> Vec<String> {
    let request = pb::QuerySetupRequest {
        sql: sql.into(),
        ..Default::default()
    };
    admin
        .admin()
        .setup(admin.request(request))
        .await
        .unwrap()
        .into_inner()
        .keys
}

/// Verifies `bundle` offline against the node's key and the keys it publishes, pinned by
/// fingerprint and shape (in a test, the node's setup is trusted).
async fn verify_offline(
    remote: &Remote,
    bundle: &pb::Bundle,
) -> zkfabric::verifier::verify::Report {
    let node_key = remote.node_key().await.unwrap();
    let keys = remote
        .catalog()
        .get_verifying_keys(remote.request(pb::GetVerifyingKeysRequest::default()))
        .await
        .unwrap()
        .into_inner()
        .keys;
    let pins = keys
        .into_iter()
        .map(|k| PinnedKey {
            fingerprint: k.fingerprint,
            shape: k.shape,
        })
        .collect();
    let trust = Trust {
        node_key: Some(node_key),
        ..Trust::keys(KeyPins::Pinned(pins))
    };
    verify(bundle, &trust).unwrap()
}

/// A CSV of `rows` hourly readings (row i: hour i mod 24, kwh 100 + 7i), with a consent
/// column when `consent` is given (a donation names its purposes in the request instead).
fn readings_csv(rows: usize, consent: Option<&str>) -> Vec<u8> {
    let mut csv = String::from("time,district,hour,household_size,age,kwh,water,spend");
    // A file to ingest names each row's household (its privacy unit); a donation
    // leaves it out, since the node sets it.
    csv.push_str(if consent.is_some() {
        ",consent,household\n"
    } else {
        "\n"
    });
    for i in 0..rows {
        csv.push_str(&format!(
            "{},Daan,{},2,{},{},{},{}",
            1_767_571_200 + 3600 * i,
            i % 24,
            30 + i % 40,
            100 + 7 * i,
            20 + i,
            150 * i
        ));
        csv.push_str(&consent.map_or("\n".into(), |c| format!(",{c},{i}\n")));
    }
    csv.into_bytes()
}

/// A donation of `rows` readings. Each call's file differs (its spend column counts the
/// calls), as two households' files would: the node stores a file only once.
fn donate_request(rows: usize, purposes: &[&str]) -> pb::DonateRequest {
    static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let call = CALLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let csv = String::from_utf8(readings_csv(rows, None)).unwrap();
    let records: String = csv
        .lines()
        .enumerate()
        .map(|(i, line)| match i {
            0 => format!("{line}\n"),
            _ => format!(
                "{}{}\n",
                line.trim_end_matches(|c: char| c.is_ascii_digit()),
                call
            ),
        })
        .collect();
    pb::DonateRequest {
        dataset: "consumption".into(),
        format: pb::RecordFormat::Csv as i32,
        records: records.into_bytes(),
        purposes: purposes.iter().map(|p| p.to_string()).collect(),
        eligibility: None,
        organisation: None,
    }
}

#[test]
fn a_verified_query_over_grpc_with_tokens_roles_and_clear_errors() {
    let node = Node::new(64, "max_message_bytes = 65536");
    let server = node.serve("");
    let rt = runtime();
    let researcher = server.client(&rt, Some(RESEARCHER));
    let admin = server.client(&rt, Some(ADMIN));
    let anonymous = server.client(&rt, None);
    let stranger = server.client(&rt, Some("zkf_not-a-configured-token"));

    rt.block_on(async {
        // Health and reflection: a stock gRPC client can find everything.
        let mut health =
            tonic_health::pb::health_client::HealthClient::new(channel(&server.url).await);
        let serving = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: "zkfabric.v1.Query".into(),
            })
            .await
            .unwrap()
            .into_inner()
            .status;
        assert_eq!(
            serving,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32
        );
        let services = list_services(&server.url).await;
        for s in [
            "zkfabric.v1.Catalog",
            "zkfabric.v1.Query",
            "zkfabric.v1.Donor",
            "zkfabric.v1.Admin",
            "grpc.health.v1.Health",
        ] {
            assert!(services.contains(s), "{s} not in {services:?}");
        }

        // The catalog is public.
        let datasets = anonymous.datasets().await.unwrap();
        assert_eq!(datasets.len(), 1);
        assert_eq!((datasets[0].chunks, datasets[0].rows), (8, 64));
        let manifest = anonymous.manifest("consumption", None).await.unwrap();
        assert_eq!(manifest.manifest.chunks.len(), 8);

        // Queries need a token, Admin an admin token.
        let (c, m) = code(researcher.run(query(SUM), |_| {}).await);
        assert_eq!(c, Code::FailedPrecondition, "{m}");
        assert!(
            m.contains("no proving key") && m.contains("Admin.Setup"),
            "{m}"
        );
        assert_eq!(
            code(anonymous.run(query(SUM), |_| {}).await).0,
            Code::Unauthenticated
        );
        assert_eq!(
            code(stranger.run(query(SUM), |_| {}).await).0,
            Code::Unauthenticated
        );
        let setup = pb::QuerySetupRequest {
            sql: SUM.into(),
            ..Default::default()
        };
        let (c, m) = status(researcher.admin().setup(researcher.request(setup)).await);
        assert_eq!(c, Code::PermissionDenied, "{m}");
        assert!(m.contains("needs admin"), "{m}");
        assert_eq!(setup_keys(&admin, SUM).await.len(), 3);

        // Explain, then run: progress events, then the bundle, which verifies offline.
        let explained = researcher
            .query()
            .explain(researcher.request(query(SUM)))
            .await
            .unwrap()
            .into_inner();
        assert_eq!((explained.chunks_touched, explained.chunks_total), (8, 8));
        assert!(explained.circuits.iter().all(|c| c.key_present));
        assert!(explained.estimated_constraints.unwrap() > 0);
        let mut events = Vec::new();
        let (id, bundle) = researcher
            .run(query(SUM), |e| events.push(e.clone()))
            .await
            .unwrap();
        assert!(
            matches!(events.first(), Some(Event::Queued(_))),
            "{events:?}"
        );
        let proven = events
            .iter()
            .filter(|e| matches!(e, Event::ChunkProven(_)))
            .count();
        assert_eq!(proven, 8);
        let report = verify_offline(&anonymous, &bundle).await;
        assert_eq!(report.proofs, 9);
        // The answer over the rows ingested: hours 7 to 22 of rows 0..64.
        let counted: Vec<u64> = (0..64).filter(|i| (7..=22).contains(&(i % 24))).collect();
        let row = &bundle.result.as_ref().unwrap().rows[0];
        assert!(!row.suppressed);
        assert_eq!(row.count, counted.len() as u64);
        assert_eq!(
            row.sums,
            [counted.iter().map(|i| 100 + 7 * i).sum::<u64>().to_string()]
        );
        let again = researcher
            .query()
            .get_bundle(researcher.request(pb::GetBundleRequest { bundle_id: id }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(again, bundle);

        // Bad requests get the right status, naming what is wrong.
        let (c, m) = code(
            researcher
                .run(query("SELECT district FROM consumption"), |_| {})
                .await,
        );
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(m.contains("not supported"), "{m}");
        let (c, m) = code(
            researcher
                .run(query("SELECT COUNT(*) FROM weather"), |_| {})
                .await,
        );
        assert_eq!(c, Code::NotFound, "{m}");
        let mut old = query(SUM);
        old.epoch = Some(7);
        let (c, m) = code(researcher.run(old, |_| {}).await);
        assert_eq!(c, Code::NotFound, "{m}");
        assert!(m.contains("no epoch 7"), "{m}");
        let (c, _) = status(
            researcher
                .query()
                .get_bundle(researcher.request(pb::GetBundleRequest {
                    bundle_id: "../../node.key".into(),
                }))
                .await,
        );
        assert_eq!(c, Code::InvalidArgument);
        let mut no_format = donate_request(4, &["energy-research"]);
        no_format.format = 0;
        let (c, m) = status(anonymous.donor().donate(no_format).await);
        assert_eq!(c, Code::InvalidArgument);
        assert!(m.contains("format"), "{m}");
        let mut bad_row = donate_request(4, &["energy-research"]);
        bad_row.records =
            b"time,district,hour,household_size,age,kwh,water,spend\n1,Daan,99,2,40,1,1,1\n"
                .to_vec();
        let (c, m) = status(anonymous.donor().donate(bad_row).await);
        assert_eq!(c, Code::InvalidArgument);
        assert!(m.contains("records: row 1, column `hour`"), "{m}");
        let (c, m) = status(
            anonymous
                .donor()
                .donate(donate_request(4, &["astrology"]))
                .await,
        );
        assert_eq!(c, Code::InvalidArgument);
        assert!(m.contains("unknown purpose `astrology`"), "{m}");
        // Over max_message_bytes (64 KiB).
        let (c, m) = status(
            anonymous
                .donor()
                .donate(donate_request(4000, &["energy-research"]))
                .await,
        );
        assert!(
            matches!(c, Code::OutOfRange | Code::ResourceExhausted),
            "{c:?}: {m}"
        );
        assert_eq!(
            anonymous.datasets().await.unwrap()[0].pending,
            0,
            "nothing stored"
        );
    });

    // The command line against the node: catalog, query and verify with --remote.
    let out_file = node.tmp.path().join("remote.zkf");
    let out = out_file.to_str().unwrap();
    let remote = ["--remote", server.url.as_str()];
    let text = ok(node.cli(&[&remote[..], &["catalog"]].concat()));
    assert!(text.contains("consumption"), "{text}");
    let text = ok(node.cli(&[&remote[..], &["catalog", "show", "consumption"]].concat()));
    assert!(text.contains("signature    valid"), "{text}");
    // The node's answer is verified against the request before anything is written:
    // without pinned keys, only when the user accepts the node's own keys, and says so.
    let remote_query = |out: &str, checks: &[&str]| {
        let head = ["--token", RESEARCHER, "query", SUM, "--out", out];
        node.cli(&[&remote[..], &head[..], checks].concat())
    };
    let unpinned = remote_query(out, &[]);
    assert!(!unpinned.status.success());
    assert!(
        String::from_utf8_lossy(&unpinned.stderr).contains("no verifying keys are pinned"),
        "{}",
        String::from_utf8_lossy(&unpinned.stderr)
    );
    assert!(
        !out_file.exists(),
        "nothing written before the answer verified"
    );
    let text = ok(remote_query(
        out,
        &["--allow-unpinned-keys", "--min-group-size", "2"],
    ));
    assert!(
        text.contains("the node proved 8 chunk(s)")
            && text.contains("verified against the request")
            && text.starts_with("UNVERIFIED"),
        "{text}"
    );
    // A k other than the one the researcher accepts: refused, nothing written.
    let elsewhere = node.tmp.path().join("other-k.zkf");
    let other_k = remote_query(
        elsewhere.to_str().unwrap(),
        &["--allow-unpinned-keys", "--min-group-size", "5"],
    );
    assert!(!other_k.status.success());
    assert!(String::from_utf8_lossy(&other_k.stderr).contains("min_group_size:"));
    assert!(!elsewhere.exists());
    let text = ok(node.cli(&[&remote[..], &["--token", ADMIN, "seal", "consumption"]].concat()));
    assert!(
        text.contains("nothing to seal") && text.contains("1 roll-up sealing(s) not proven yet"),
        "{text}"
    );
    // An administrator has the node prove the built-in roll-up's sealing (in a proving
    // worker's turn); then nothing is left to prove.
    let prove = [
        &remote[..],
        &["--token", ADMIN, "seal", "consumption", "--prove-rollups"],
    ]
    .concat();
    let text = ok(node.cli(&prove));
    assert!(text.contains("proved 1 roll-up sealing(s)"), "{text}");
    let text = ok(node.cli(&prove));
    assert!(
        !text.contains("proved") && !text.contains("not proven yet"),
        "{text}"
    );
    let text = ok(node.cli(
        &[
            &remote[..],
            &["verify", out, "--allow-unpinned-keys", "--sql", SUM],
        ]
        .concat(),
    ));
    assert!(
        text.contains("manifest signature valid") && text.starts_with("UNVERIFIED"),
        "{text}"
    );
    let refused = node.cli(&[&remote[..], &["query", SUM, "--out", out]].concat());
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("no bearer token"));

    // While the node serves, no other process opens its data directory.
    let busy = node.cli(&["catalog"]);
    assert!(String::from_utf8_lossy(&busy.stderr).contains("in use by another zkfabric process"));
}

async fn channel(url: &str) -> tonic::transport::Channel {
    tonic::transport::Endpoint::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .unwrap()
}

async fn list_services(url: &str) -> HashSet<String> {
    use tonic_reflection::pb::v1::{
        server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
        ServerReflectionRequest,
    };
    let mut client = ServerReflectionClient::new(channel(url).await);
    let request = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut responses = client
        .server_reflection_info(tokio_stream::iter([request]))
        .await
        .unwrap()
        .into_inner();
    let mut out = HashSet::new();
    while let Some(r) = responses.message().await.unwrap() {
        if let Some(MessageResponse::ListServicesResponse(list)) = r.message_response {
            out.extend(list.service.into_iter().map(|s| s.name));
        }
    }
    out
}

#[test]
fn sixteen_concurrent_clients_query_and_donate_and_nothing_is_lost() {
    // The 16 clients share one researcher token (a lab's workers), so it may hold 16.
    let node = Node::new(
        64,
        "queue_capacity = 16\nqueries_per_token = 16\ndonations_per_minute = 1000",
    );
    let server = node.serve("");
    let rt = runtime();
    let admin = server.client(&rt, Some(ADMIN));
    let researchers: Vec<Remote> = (0..16)
        .map(|_| server.client(&rt, Some(RESEARCHER)))
        .collect();
    rt.block_on(async {
        setup_keys(&admin, SUM).await;
        let clients: Vec<_> = researchers
            .into_iter()
            .enumerate()
            .map(|(i, remote)| {
                tokio::spawn(async move {
                    if i % 2 == 0 {
                        let (_, bundle) = remote.run(query(SUM), |_| {}).await.unwrap();
                        Err(bundle)
                    } else {
                        let mut receipts = Vec::new();
                        for _ in 0..3 {
                            let response = remote
                                .donor()
                                .donate(donate_request(5, &["energy-research", "public-health"]))
                                .await
                                .unwrap()
                                .into_inner();
                            receipts.push(response.receipt.unwrap());
                        }
                        Ok(receipts)
                    }
                })
            })
            .collect();
        let node_key = admin.node_key().await.unwrap();
        let mut receipts = Vec::new();
        let mut bundles = 0;
        for client in clients {
            match client.await.unwrap() {
                Ok(r) => receipts.extend(r),
                Err(bundle) => {
                    verify_offline(&admin, &bundle).await;
                    bundles += 1;
                }
            }
        }
        assert_eq!(bundles, 8);
        assert_eq!(receipts.len(), 24);
        let mut ids = HashSet::new();
        for r in &receipts {
            let body = verify_receipt(r, Some(&node_key)).unwrap();
            assert_eq!(body.rows, 5);
            assert!(ids.insert(body.id));
        }
        // 120 donated rows: 15 full chunks were sealed as they filled, none pending.
        let summary = &admin.datasets().await.unwrap()[0];
        assert_eq!(summary.rows + summary.pending, 64 + 120, "{summary:?}");
        let sealed = admin
            .admin()
            .seal(admin.request(pb::SealRequest {
                dataset: "consumption".into(),
                prove_rollups: false,
            }))
            .await
            .unwrap()
            .into_inner();
        let summary = &admin.datasets().await.unwrap()[0];
        assert_eq!((summary.rows, summary.pending), (184, 0), "{sealed:?}");
        for id in ids {
            let receipt = admin
                .donor()
                .get_receipt(pb::GetReceiptRequest { id })
                .await
                .unwrap()
                .into_inner();
            let body = verify_receipt(&receipt, Some(&node_key)).unwrap();
            assert_eq!(body.status, pb::DonationStatus::Sealed as i32);
            assert!(body.epoch.is_some() && !body.chunks.is_empty(), "{body:?}");
        }
    });
}

#[test]
fn a_full_queue_a_donor_limit_withdrawal_and_shutdown_during_a_proof() {
    let node = Node::new(
        64,
        "proving_workers = 1\nqueue_capacity = 0\ndonations_per_minute = 3",
    );
    // Each chunk proof waits 400 ms, so a query takes seconds.
    let server = node.serve("prove-chunk=sleep(400)");
    let rt = runtime();
    let researcher = server.client(&rt, Some(RESEARCHER));
    let admin = server.client(&rt, Some(ADMIN));
    let mut first = rt.block_on(async {
        setup_keys(&admin, SUM).await;

        // Donate, withdraw with the secret, and hit the per-address limit.
        let donor = researcher.donor();
        let donated = donor
            .clone()
            .donate(donate_request(3, &["public-health"]))
            .await
            .unwrap()
            .into_inner();
        let id = verify_receipt(donated.receipt.as_ref().unwrap(), None)
            .unwrap()
            .id;
        let (c, _) = status(
            donor
                .clone()
                .withdraw(pb::WithdrawRequest {
                    id: id.clone(),
                    withdrawal_secret: "00".repeat(32),
                    ..Default::default()
                })
                .await,
        );
        assert_eq!(c, Code::PermissionDenied);
        let withdrawn = donor
            .clone()
            .withdraw(pb::WithdrawRequest {
                id,
                withdrawal_secret: donated.withdrawal_secret,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        let body = verify_receipt(&withdrawn, None).unwrap();
        assert_eq!(body.status, pb::DonationStatus::Withdrawn as i32);
        let (c, m) = status(
            donor
                .clone()
                .donate(donate_request(3, &["public-health"]))
                .await,
        );
        assert_eq!(c, Code::ResourceExhausted, "{m}");
        assert!(m.contains("at most 3 a minute"), "{m}");
        assert_eq!(admin.datasets().await.unwrap()[0].pending, 0);

        // One query proving fills the queue (one worker, no waiting places).
        let mut first = researcher
            .query()
            .run(researcher.request(query(SUM)))
            .await
            .unwrap()
            .into_inner();
        loop {
            let event = first.message().await.unwrap().unwrap().event.unwrap();
            if matches!(event, Event::ChunkProven(_)) {
                break;
            }
        }
        let (c, m) = code(researcher.run(query(SUM), |_| {}).await);
        assert_eq!(c, Code::ResourceExhausted, "{m}");
        assert!(m.contains("proving queue is full: 1 queries"), "{m}");
        first
    });

    // SIGTERM while the first query is proving: it is cancelled, the node exits cleanly.
    let (exit, printed) = server.terminate();
    assert!(exit.success(), "{exit:?}");
    assert!(printed.contains("zkfabric node stopped"), "{printed}");
    let ended = rt.block_on(async {
        loop {
            match first.message().await {
                Ok(Some(pb::RunEvent {
                    event: Some(Event::Finished(_)),
                })) => break None,
                Ok(Some(_)) => continue,
                Ok(None) => break None,
                Err(status) => break Some(status),
            }
        }
    });
    let ended = ended.expect("the cancelled query ends with an error status");
    assert_eq!(ended.code(), Code::Unavailable, "{ended:?}");
    assert!(ended.message().contains("shutting down"), "{ended:?}");
    let store = Store::open(&node.data()).unwrap();
    let summary = &store.datasets().unwrap()[0];
    assert_eq!((summary.rows, summary.pending), (64, 0));
    store
        .manifest("consumption", None)
        .unwrap()
        .verify(None)
        .unwrap();
}

/// A certificate authority, and certificates it signs, as PEM files under `dir`.
struct Pki {
    ca: rcgen::Issuer<'static, rcgen::KeyPair>,
    dir: PathBuf,
}

impl Pki {
    fn new(dir: &std::path::Path) -> Self {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "zkfabric test CA");
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(dir.join("ca.pem"), cert.pem()).unwrap();
        Self {
            ca: rcgen::Issuer::new(params, key),
            dir: dir.to_path_buf(),
        }
    }

    /// The CA's certificate file.
    fn ca(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// A certificate for `names` signed by the CA: (certificate file, key file).
    fn issue(&self, name: &str, names: &[&str]) -> (PathBuf, PathBuf) {
        let params =
            rcgen::CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.ca).unwrap();
        let (c, k) = (
            self.dir.join(format!("{name}.pem")),
            self.dir.join(format!("{name}.key")),
        );
        std::fs::write(&c, cert.pem()).unwrap();
        std::fs::write(&k, key.serialize_pem()).unwrap();
        (c, k)
    }
}

#[test]
fn the_node_serves_tls_and_refuses_plaintext_beyond_loopback() {
    use zkfabric::clients::remote::ClientTls;
    let tmp = TempDir::new().unwrap();
    let pki = Pki::new(tmp.path());
    let (cert, key) = pki.issue("node", &["localhost", "127.0.0.1"]);
    let tls = format!("[server.tls]\ncert = {cert:?}\nkey = {key:?}\n");
    let node = Node::new(0, &tls);
    let server = node.serve("");
    assert!(
        server.url.starts_with("https://127.0.0.1:"),
        "{}",
        server.url
    );
    let rt = runtime();
    let trusting = ClientTls {
        ca: Some(pki.ca()),
        identity: None,
    };
    // A TLS client that trusts the CA lists the datasets.
    let client = rt
        .block_on(Remote::connect_with(&server.url, None, &trusting))
        .unwrap();
    rt.block_on(client.datasets()).unwrap();
    // A TLS client that does not trust it fails the handshake; a plaintext client gets
    // no answer from the TLS port.
    let untrusting = rt.block_on(async {
        Remote::connect_with(&server.url, None, &ClientTls::default())
            .await?
            .datasets()
            .await
    });
    assert!(untrusting.is_err(), "an unknown CA was accepted");
    let plain = server.url.replace("https://", "http://");
    let plaintext = rt.block_on(async { Remote::connect(&plain, None).await?.datasets().await });
    assert!(plaintext.is_err(), "a plaintext call was answered");
    // The CLI reaches it with --ca.
    let listed = ok(node.cli(&[
        "--remote",
        &server.url,
        "--ca",
        pki.ca().to_str().unwrap(),
        "catalog",
    ]));
    assert!(listed.starts_with("node key"), "{listed}");
    drop(server);

    // Mutual TLS: with [server.tls] client_ca, only clients holding a certificate the
    // CA signed are served.
    let (client_cert, client_key) = pki.issue("client", &["researcher"]);
    let mtls = format!("{tls}client_ca = {:?}\n", pki.ca());
    let node = Node::new(0, &mtls);
    let server = node.serve("");
    let anonymous = rt.block_on(async {
        Remote::connect_with(&server.url, None, &trusting)
            .await?
            .datasets()
            .await
    });
    assert!(
        anonymous.is_err(),
        "a client without a certificate was served"
    );
    let identified = ClientTls {
        ca: Some(pki.ca()),
        identity: Some((client_cert, client_key)),
    };
    let client = rt
        .block_on(Remote::connect_with(&server.url, None, &identified))
        .unwrap();
    rt.block_on(client.datasets()).unwrap();
    drop(server);

    // Plaintext beyond loopback is refused before anything listens, unless --insecure.
    let node = Node::new(0, "");
    let refused = node.cli(&["serve", "--listen", "0.0.0.0:0"]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(
        err.contains("refusing to serve plaintext") && err.contains("--insecure"),
        "{err}"
    );
}

#[test]
fn reflection_answers_in_v1_and_v1alpha() {
    use tonic_reflection::pb::{v1, v1alpha};
    let node = Node::new(0, "");
    let server = node.serve("");
    let rt = runtime();
    let services = rt.block_on(async {
        let channel = tonic::transport::Endpoint::from_shared(server.url.clone())
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut alpha =
            v1alpha::server_reflection_client::ServerReflectionClient::new(channel.clone());
        let request = v1alpha::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(
                v1alpha::server_reflection_request::MessageRequest::ListServices(String::new()),
            ),
        };
        let mut stream = alpha
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner();
        let response = stream.message().await.unwrap().unwrap();
        let Some(v1alpha::server_reflection_response::MessageResponse::ListServicesResponse(list)) =
            response.message_response
        else {
            panic!("no service list")
        };
        let mut v1 = v1::server_reflection_client::ServerReflectionClient::new(channel);
        let request = v1::ServerReflectionRequest {
            host: String::new(),
            message_request: Some(v1::server_reflection_request::MessageRequest::ListServices(
                String::new(),
            )),
        };
        let answered = v1
            .server_reflection_info(tokio_stream::iter([request]))
            .await
            .unwrap()
            .into_inner()
            .message()
            .await
            .unwrap()
            .is_some();
        assert!(answered, "v1 answers too");
        list.service
            .into_iter()
            .map(|s| s.name)
            .collect::<HashSet<_>>()
    });
    for service in [
        "zkfabric.v1.Catalog",
        "zkfabric.v1.Query",
        "zkfabric.v1.Donor",
    ] {
        assert!(services.contains(service), "{services:?}");
    }
}

#[test]
fn a_noisy_answer_over_grpc_needs_a_nonce_is_charged_and_runs_out() {
    const COUNT: &str = "SELECT COUNT(*) FROM consumption";
    let node = Node::with_privacy(64, "", "budget_epsilon = 1.5");
    let server = node.serve("");
    let rt = runtime();
    let researcher = server.client(&rt, Some(RESEARCHER));
    let admin = server.client(&rt, Some(ADMIN));
    let anonymous = server.client(&rt, None);
    rt.block_on(async {
        assert_eq!(setup_keys(&admin, COUNT).await.len(), 3);
        // Explain states the cost and the budget left before anything is charged.
        let explained = researcher
            .query()
            .explain(researcher.request(query(COUNT)))
            .await
            .unwrap()
            .into_inner();
        let terms = explained.privacy.unwrap();
        assert_eq!((terms.mode.as_str(), terms.epsilon), ("dp", 1.0));
        assert_eq!(explained.remaining_epsilon, Some(1.5));
        // Without the researcher's nonce the node could choose the noise: refused.
        let (c, m) = code(researcher.run(query(COUNT), |_| {}).await);
        assert_eq!(c, Code::InvalidArgument, "{m}");
        assert!(m.contains("nonce"), "{m}");

        let mut asked = query(COUNT);
        asked.nonce = fresh_nonce();
        let (_, bundle) = researcher.run(asked.clone(), |_| {}).await.unwrap();
        let report = verify_offline(&anonymous, &bundle).await;
        let (plan, charge) = report.noise.expect("a noisy answer");
        assert_eq!((plan.cost.epsilon, charge.seq), (1.0, 1));

        // The ledger is public, and checks.
        let ledger = anonymous
            .catalog()
            .get_ledger(anonymous.request(pb::GetLedgerRequest {
                dataset: "consumption".into(),
            }))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(ledger.entries, vec![charge]);
        assert_eq!((ledger.spent_epsilon, ledger.budget_epsilon), (1.0, 1.5));
        let key = anonymous.node_key().await.unwrap();
        check_chain("consumption", &ledger.entries, &key).unwrap();

        // The same nonce: the same answer, no new charge. A new one passes the budget.
        let (_, again) = researcher.run(asked, |_| {}).await.unwrap();
        assert_eq!(again.result, bundle.result);
        // The command line names the current epoch before sending its nonce, and checks
        // the answer's charge against the ledger the node publishes. Another cost is
        // another root shape: an administrator makes its key first.
        let url = server.url.as_str();
        let keys = ok(node.cli(&[
            "--remote",
            url,
            "--token",
            ADMIN,
            "setup",
            COUNT,
            "--epsilon",
            "0.5",
        ]));
        assert!(keys.contains("output=noisy coins="), "{keys}");
        let out = node.tmp.path().join("remote.zkf");
        let text = ok(node.cli(&[
            "--remote",
            url,
            "--token",
            RESEARCHER,
            "query",
            COUNT,
            "--epsilon",
            "0.5",
            "--allow-unpinned-keys",
            "--out",
            out.to_str().unwrap(),
        ]));
        assert!(text.contains("verified against the request"), "{text}");
        let mut more = query(COUNT);
        more.nonce = fresh_nonce();
        let (c, m) = code(researcher.run(more, |_| {}).await);
        assert_eq!(c, Code::ResourceExhausted, "{m}");
        assert!(
            m.contains("privacy budget of `consumption` exhausted"),
            "{m}"
        );
    });
    server.terminate();
}

/// A Flight SQL client's connection to `server`.
async fn flight_client(
    server: &common::Server,
) -> FlightSqlServiceClient<tonic::transport::Channel> {
    FlightSqlServiceClient::new(channel(&server.url).await)
}

/// Every batch a FlightInfo's first endpoint streams.
async fn fetch(
    client: &mut FlightSqlServiceClient<tonic::transport::Channel>,
    info: &FlightInfo,
) -> Vec<RecordBatch> {
    let ticket = info.endpoint[0].ticket.clone().unwrap();
    let stream = client.do_get(ticket).await.unwrap();
    stream.try_collect().await.unwrap()
}

/// A statement's FlightInfo asked with the raw Flight client (so the status and the
/// deadline are the caller's own), as `token`, for `purpose`.
async fn flight_statement(
    url: &str,
    sql: &str,
    token: Option<&str>,
    deadline: Option<std::time::Duration>,
    headers: &[(&'static str, &str)],
) -> Result<FlightInfo, tonic::Status> {
    let command = CommandStatementQuery {
        query: sql.into(),
        transaction_id: None,
    };
    let mut request =
        tonic::Request::new(FlightDescriptor::new_cmd(command.as_any().encode_to_vec()));
    if let Some(token) = token {
        let bearer = format!("Bearer {token}").parse().unwrap();
        request.metadata_mut().insert("authorization", bearer);
    }
    request
        .metadata_mut()
        .insert("x-zkfabric-purpose", "energy-research".parse().unwrap());
    for (name, value) in headers {
        request.metadata_mut().insert(*name, value.parse().unwrap());
    }
    if let Some(deadline) = deadline {
        request.set_timeout(deadline);
    }
    let mut client = FlightServiceClient::new(channel(url).await);
    client
        .get_flight_info(request)
        .await
        .map(|r| r.into_inner())
}

#[test]
fn flight_sql_lists_tables_answers_a_statement_once_and_its_bundle_verifies() {
    const BY_SIZE: &str =
        "SELECT household_size, COUNT(*), SUM(kwh) FROM consumption GROUP BY household_size";
    let node = Node::new(64, "queries_per_token = 1");
    // Each chunk proof waits 200 ms: a statement proves for seconds, so a second ask
    // arrives while the first is proving.
    let server = node.serve("prove-chunk=sleep(200)");
    let rt = runtime();
    let admin = server.client(&rt, Some(ADMIN));
    let researcher = server.client(&rt, Some(RESEARCHER));
    rt.block_on(async {
        setup_keys(&admin, BY_SIZE).await;

        // No token, an unknown token: UNAUTHENTICATED, on metadata calls too.
        let mut anonymous = flight_client(&server).await;
        let refused = anonymous.get_catalogs().await.unwrap_err().to_string();
        assert!(refused.contains("no bearer token"), "{refused}");
        let stranger = flight_statement(&server.url, BY_SIZE, Some("zkf_stranger"), None, &[]);
        assert_eq!(stranger.await.unwrap_err().code(), Code::Unauthenticated);

        // Handshake with the token as a password: the bearer header comes back.
        let mut client = flight_client(&server).await;
        let payload = client.handshake("rita", RESEARCHER).await.unwrap();
        assert_eq!(&payload[..], RESEARCHER.as_bytes());
        assert_eq!(client.token().map(String::as_str), Some(RESEARCHER));

        // Metadata: server info, the catalog, the schema, the datasets as tables.
        let info = client
            .get_sql_info(vec![SqlInfo::FlightSqlServerName])
            .await
            .unwrap();
        assert_eq!(fetch(&mut client, &info).await[0].num_rows(), 1);
        let catalogs = client.get_catalogs().await.unwrap();
        let catalogs = fetch(&mut client, &catalogs).await;
        assert_eq!(strings(&catalogs[0], "catalog_name"), ["zkfabric"]);
        let schemas = client
            .get_db_schemas(CommandGetDbSchemas::default())
            .await
            .unwrap();
        let schemas = fetch(&mut client, &schemas).await;
        assert_eq!(strings(&schemas[0], "db_schema_name"), ["public"]);
        let tables = client
            .get_tables(CommandGetTables {
                include_schema: true,
                ..Default::default()
            })
            .await
            .unwrap();
        let tables = fetch(&mut client, &tables).await;
        assert_eq!(strings(&tables[0], "table_name"), ["consumption"]);
        let encoded = tables[0]
            .column_by_name("table_schema")
            .unwrap()
            .as_any()
            .downcast_ref::<BinaryArray>()
            .unwrap()
            .value(0)
            .to_vec();
        let table = ArrowSchema::try_from(IpcMessage(encoded.into())).unwrap();
        let kwh = table.field_with_name("kwh").unwrap();
        assert_eq!(kwh.metadata()["unit"], "kWh");
        assert_eq!(kwh.metadata()["kind"], "measure");
        let age = table.field_with_name("age").unwrap();
        assert_eq!(age.metadata()["credential"], "age");
        assert_eq!(
            table.field_with_name("district").unwrap().data_type(),
            &DataType::Utf8
        );
        assert!(
            table.field_with_name("household").is_err(),
            "the unit column is listed"
        );

        // A statement asked three times at once, one of them with a deadline far shorter
        // than the proof: the deadline is honoured, and the node proves once.
        let short = flight_statement(
            &server.url,
            BY_SIZE,
            Some(RESEARCHER),
            Some(std::time::Duration::from_millis(300)),
            &[],
        );
        // Once the short one has given up, the statement still proves, and the token
        // (allowed one query at a time here) may not queue another.
        let late_then_another = async {
            let late = short.await;
            let epoch = [("x-zkfabric-epoch", "1")];
            let another =
                flight_statement(&server.url, BY_SIZE, Some(RESEARCHER), None, &epoch).await;
            (late, another)
        };
        let ((late, another), first, second) = tokio::join!(
            late_then_another,
            flight_statement(&server.url, BY_SIZE, Some(RESEARCHER), None, &[]),
            flight_statement(&server.url, BY_SIZE, Some(RESEARCHER), None, &[])
        );
        let late = late.unwrap_err();
        assert!(
            matches!(late.code(), Code::DeadlineExceeded | Code::Cancelled),
            "{late:?}"
        );
        let another = another.unwrap_err();
        assert_eq!(another.code(), Code::ResourceExhausted, "{another:?}");
        assert!(
            another
                .message()
                .contains("token `rita` has 1 queries queued or proving"),
            "{another:?}"
        );
        let (first, second) = (first.unwrap(), second.unwrap());
        assert_eq!(first.endpoint[0].ticket, second.endpoint[0].ticket);
        let bundles = std::fs::read_dir(node.data().join("bundles"))
            .unwrap()
            .count();
        assert_eq!(bundles, 1, "the statement was proven more than once");

        // The answer: labels, exact counts, sums in kWh, suppressed groups null.
        let batches = fetch(&mut client, &first).await;
        let answer = &batches[0];
        let metadata = answer.schema().metadata().clone();
        let id = metadata[BUNDLE_ID].clone();
        assert_eq!(
            strings(answer, "household_size"),
            ["1", "2", "3", "4", "5+"]
        );
        let count = answer
            .column(1)
            .as_any()
            .downcast_ref::<Int64Array>()
            .unwrap();
        assert_eq!(
            count.iter().collect::<Vec<_>>(),
            [None, Some(64), None, None, None]
        );
        let sum = answer.column(2);
        assert_eq!(sum.data_type(), &DataType::Decimal128(38, 3));
        let sum = sum.as_any().downcast_ref::<Decimal128Array>().unwrap();
        // 100 + 7i Wh over 64 rows.
        assert_eq!(sum.value_as_string(1), "20.512");
        assert!(answer.column(2).is_null(0));
        assert_eq!(answer.schema().field(2).metadata()["unit"], "kWh");

        // The bundle, by the GetBundle action: its SHA-256 is the schema's, it answers
        // this SQL, and it verifies offline.
        let action = Action::new(GET_BUNDLE, id.clone());
        let results: Vec<arrow_flight::Result> = client
            .do_action(action)
            .await
            .unwrap()
            .try_collect()
            .await
            .unwrap();
        let bytes = &results[0].body;
        assert_eq!(sha256_bytes(bytes), metadata[BUNDLE_SHA256]);
        let bundle = pb::Bundle::decode(&bytes[..]).unwrap();
        assert_eq!(bundle.sql, BY_SIZE);
        verify_offline(&researcher, &bundle).await;

        // A prepared statement (no parameters) is answered the same way.
        client.set_header("x-zkfabric-purpose", "energy-research");
        let mut prepared = client.prepare(BY_SIZE.into(), None).await.unwrap();
        let info = prepared.execute().await.unwrap();
        let again = fetch(&mut client, &info).await;
        assert_eq!(
            strings(&again[0], "household_size"),
            strings(answer, "household_size")
        );
        assert_eq!(again[0].column(1), answer.column(1));
        prepared.close().await.unwrap();

        // A refused statement: INVALID_ARGUMENT naming the construct, as the CLI says it.
        let max = "SELECT MAX(kwh) FROM consumption";
        let refused = flight_statement(&server.url, max, Some(RESEARCHER), None, &[])
            .await
            .unwrap_err();
        let m = refused.message();
        assert_eq!(refused.code(), Code::InvalidArgument, "{m}");
        assert!(m.contains("MAX"), "{m}");
    });
}

/// The text column `name` of `batch`.
fn strings(batch: &RecordBatch, name: &str) -> Vec<String> {
    let column = batch.column_by_name(name).unwrap();
    let column = datafusion::arrow::compute::cast(column, &DataType::Utf8).unwrap();
    let text = column.as_any().downcast_ref::<StringArray>().unwrap();
    text.iter()
        .map(|v| v.unwrap_or_default().to_string())
        .collect()
}

fn sha256_bytes(bytes: &[u8]) -> String {
    zkfabric::node::store::sha256_hex(bytes)
}
