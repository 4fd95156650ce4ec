//! Commands of the `zkfabric` binary; each maps errors to a message and a non-zero exit.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    sync::atomic::AtomicBool,
    time::Instant,
};

use anyhow::{anyhow, bail, Context, Result};
use clap::{Parser, Subcommand};
use ed25519_dalek::VerifyingKey;
use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    node::config::Config,
    node::keys::{KeyCache, KeyMode},
    node::proofs::ProofCache,
    node::prove::{KeptSealings, LoadedSealing, Progress, ProveError, Sealing},
    node::store::{DatasetSummary, IngestedBatch, RolledUp, Store},
    shared::records,
    shared::synth,
    verifier::command::{error_message, TableArgs, VerifyArgs},
    verifier::files,
    verifier::manifest::SignedManifest,
    verifier::schema::Schema,
};

mod answer;
mod donor;
mod keys;
mod node;
use answer::{demo, explain_query, export_snarkjs, query, setup, verify};

/// A privacy-preserving data fabric: committed records, verified aggregate answers.
#[derive(Parser)]
#[command(name = "zkfabric", version, about)]
struct Cli {
    /// The node's data directory [default: the configuration's, else zkfabric-data].
    #[arg(long, global = true, env = "ZKFABRIC_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The node's configuration file (TOML; see `zkfabric::node::config`).
    #[arg(long, global = true, env = "ZKFABRIC_CONFIG")]
    config: Option<PathBuf>,
    /// Ask the node at this URL (https://node.example:50051, or http://127.0.0.1:50051 on
    /// loopback) instead of the local data directory: for `query`, `verify` (the node's
    /// key), `catalog`, `donate`, `withdraw`, and with an admin token `seal` and `setup`.
    #[arg(long, global = true, env = "ZKFABRIC_REMOTE")]
    remote: Option<String>,
    /// With an https:// --remote: the certificate authority (PEM) the node's certificate
    /// must chain to [default: the system's trusted roots].
    #[arg(long, global = true, env = "ZKFABRIC_CA")]
    ca: Option<PathBuf>,
    /// With an https:// --remote to a node that requires client certificates: this
    /// client's certificate (PEM); give --client-key too.
    #[arg(
        long,
        global = true,
        env = "ZKFABRIC_CLIENT_CERT",
        requires = "client_key"
    )]
    client_cert: Option<PathBuf>,
    /// The private key (PEM) of --client-cert.
    #[arg(
        long,
        global = true,
        env = "ZKFABRIC_CLIENT_KEY",
        requires = "client_cert"
    )]
    client_key: Option<PathBuf>,
    /// Bearer token for `--remote` queries, seals and setups (as `zkfabric token` made it).
    #[arg(long, global = true, env = "ZKFABRIC_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate realistic synthetic records of a built-in dataset.
    Generate {
        /// consumption, movement or signal.
        dataset: String,
        /// Number of rows.
        #[arg(long)]
        rows: usize,
        /// Seed: the same seed gives the same file.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Output file: .csv, .parquet or .arrow.
        #[arg(long)]
        out: PathBuf,
    },
    /// Validate record files (CSV, Parquet, Arrow IPC) and store their rows until sealed;
    /// if any file is refused, nothing is stored.
    Ingest {
        /// The dataset (a built-in one is registered on first use).
        dataset: String,
        /// Files to ingest.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Register the dataset from this schema file (TOML) instead of a built-in one.
        #[arg(long)]
        schema: Option<PathBuf>,
        /// Ingest a file even if its bytes were ingested before (the catalog records the
        /// earlier batch): only for new readings that happen to be byte-identical.
        #[arg(long)]
        allow_duplicate: bool,
    },
    /// Seal every pending row into committed chunks and publish a signed epoch.
    Seal {
        /// The dataset.
        dataset: String,
        /// Then prove every roll-up sealing of the latest epoch not proven yet (as
        /// `[rollups] prove_at_seal` does at every seal), so that answers from roll-ups
        /// cost their cells; with nothing pending, it proves only.
        #[arg(long)]
        prove_rollups: bool,
    },
    /// Answer a SQL aggregate query with proofs, print the answer and write the bundle.
    Query {
        /// The SQL, over one dataset table.
        sql: String,
        /// Consent purpose: only rows consented to it count (default: the configuration's).
        #[arg(long)]
        purpose: Option<String>,
        /// The epoch (default: the latest).
        #[arg(long)]
        epoch: Option<u64>,
        /// Where to write the answer bundle.
        #[arg(long, default_value = "answer.zkf")]
        out: PathBuf,
        /// Also write the bundle as JSON (OUT.json).
        #[arg(long)]
        json: bool,
        /// Where to answer from: `auto` (a roll-up whose key and measures cover the
        /// query, the one with the fewest cells, else the rows), `rollup` (refused, naming
        /// what is missing, when none covers it) or `raw` (the rows).
        #[arg(long, default_value = "auto", value_parser = ["auto", "rollup", "raw"])]
        path: String,
        /// Only show the provable plan and the circuits it needs; prove nothing.
        #[arg(long)]
        explain: bool,
        /// With --remote: trusted verifying keys, as for `verify`. A node's answer is
        /// verified against the request before anything is printed or written.
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
        /// With --remote: accept the node's answer checked against its own keys.
        #[arg(long)]
        allow_unpinned_keys: bool,
        /// With --remote: the node key its manifests must be signed with (hex).
        #[arg(long)]
        node_key: Option<String>,
        /// With --remote: the minimum group size (k) you accept; an answer suppressing
        /// below another k is refused.
        #[arg(long)]
        min_group_size: Option<u64>,
        #[command(flatten)]
        cost: CostArgs,
        /// The nonce (64 hex digits) keying the public half of the noise; a fresh random
        /// one by default. Repeating a query with its nonce gets the same answer again
        /// at no further cost.
        #[arg(long)]
        nonce: Option<String>,
        #[command(flatten)]
        table: TableArgs,
        /// Also draw the answer as an SVG bar chart to this file: a bar per row shown,
        /// suppressed groups marked, a dp estimate's 95% interval as an error bar.
        #[arg(long)]
        chart: Option<PathBuf>,
    },
    /// Verify an answer bundle offline: no network, no data directory.
    Verify {
        /// The bundle (.zkf, or its .json form).
        bundle: PathBuf,
        #[command(flatten)]
        args: VerifyArgs,
        #[command(flatten)]
        table: TableArgs,
        /// Also draw the verified answer as an SVG bar chart to this file (only once
        /// every check held), as `query --chart` does.
        #[arg(long)]
        chart: Option<PathBuf>,
    },
    /// Make and cache the proving keys the given queries need (single-party setup: for
    /// development only), and print their fingerprints for a trusted-keys file.
    Setup {
        /// SQL queries whose circuit shapes need keys.
        #[arg(required = true)]
        sql: Vec<String>,
        /// Consent purpose (default: the configuration's).
        #[arg(long)]
        purpose: Option<String>,
        #[command(flatten)]
        cost: CostArgs,
    },
    /// Proving keys: those held, the shapes queries need, and a multi-party ceremony's two
    /// ends (export a shape's constraint system, import the final key).
    Keys {
        #[command(subcommand)]
        command: KeysCommand,
    },
    /// Write a bundle's proofs in another tool's format, after verifying it.
    Export {
        #[command(subcommand)]
        format: ExportFormat,
    },
    /// Run everything end to end in a temporary data directory: generate household
    /// readings, ingest, seal, answer two queries with proofs, verify the bundles.
    Demo {
        /// Rows of generated consumption readings.
        #[arg(long, default_value_t = 16384)]
        rows: usize,
        /// Keep the demo's data directory at this path instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// Serve the node over gRPC until SIGTERM or Ctrl-C.
    Serve {
        /// Address to listen on [default: the configuration's, else 127.0.0.1:50051].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Serve plaintext gRPC on a non-loopback address when no [server.tls] is
        /// configured: tokens and donated records then cross the network in clear.
        #[arg(long)]
        insecure: bool,
    },
    /// Make a bearer token for a researcher or administrator: prints the token on stderr
    /// (give it to its holder) and, on stdout, the configuration lines that let the node
    /// accept it (only its hash).
    Token {
        /// Who will hold it.
        #[arg(long)]
        name: String,
        /// researcher or admin.
        #[arg(long, default_value = "researcher")]
        role: String,
    },
    /// Credentials: keys for issuers and holders, and issuing a credential.
    Credential {
        #[command(subcommand)]
        command: CredentialCommand,
    },
    /// Donate a record file to a dataset under consent purposes, proving eligibility with
    /// a credential when the dataset requires it; prints the receipt.
    Donate {
        /// The record file (CSV, Parquet or Arrow IPC); the consent column may be left out.
        file: PathBuf,
        /// The dataset.
        #[arg(long)]
        dataset: String,
        /// Purposes consented to, comma-separated.
        #[arg(long, value_delimiter = ',', required = true)]
        purposes: Vec<String>,
        /// The credential file an issuer gave you.
        #[arg(long, requires = "holder_key")]
        credential: Option<PathBuf>,
        /// Your holder key file (`credential keygen --holder`).
        #[arg(long)]
        holder_key: Option<PathBuf>,
        /// An organisation's key file: sign this bulk donation instead of proving
        /// eligibility.
        #[arg(long, conflicts_with = "credential")]
        org_key: Option<PathBuf>,
    },
    /// Withdraw a donation: pending rows are dropped, sealed rows leave the next epoch
    /// (the chunks holding them are sealed again, and their old files erased); bundles of
    /// earlier epochs still verify, but those epochs answer no new query.
    Withdraw {
        /// The receipt id.
        receipt: String,
        /// The withdrawal secret the receipt came with.
        #[arg(
            long,
            required_unless_present = "holder_key",
            conflicts_with = "holder_key"
        )]
        secret: Option<String>,
        /// Or your holder key: prove the secret behind the donation's nullifier.
        #[arg(long)]
        holder_key: Option<PathBuf>,
    },
    /// List datasets and epochs, or show one dataset's signed manifest.
    Catalog {
        #[command(subcommand)]
        show: Option<CatalogCommand>,
    },
    /// A dp dataset's privacy ledger: every charge (signed by the node, chained by
    /// hash, checked here), the budget spent and what is left. Without a dataset, every
    /// dataset's totals.
    Ledger {
        /// The dataset.
        dataset: Option<String>,
        /// Print the ledger as JSON instead.
        #[arg(long)]
        json: bool,
    },
}

/// The privacy cost of a query on a dp dataset (the node's `[privacy]` defaults when
/// absent; either alone takes the default for the other). Keys depend on it: a noisy
/// root's coins follow from epsilon and delta.
#[derive(Clone, Copy, Debug, Default, clap::Args)]
pub struct CostArgs {
    /// The epsilon to spend. `query --explain` shows what a query would cost.
    #[arg(long)]
    pub epsilon: Option<f64>,
    /// The delta to spend.
    #[arg(long)]
    pub delta: Option<f64>,
}

#[derive(Subcommand)]
enum CredentialCommand {
    /// Make a key: an issuer's signing key, or a holder's secret (prints what to share).
    #[command(group(clap::ArgGroup::new("kind").required(true).args(["issuer", "holder", "organisation"])))]
    Keygen {
        /// An issuer's key (nodes list its public part as an accepted issuer).
        #[arg(long)]
        issuer: bool,
        /// A holder's key (its `holder` commitment goes to the issuer).
        #[arg(long)]
        holder: bool,
        /// An organisation's Ed25519 key, for signed bulk donations.
        #[arg(long)]
        organisation: bool,
        /// Where to write the key (owner-only).
        #[arg(long)]
        out: PathBuf,
    },
    /// Issue a credential: sign a holder's birth date and district.
    Issue {
        /// The issuer's key file.
        #[arg(long)]
        issuer_key: PathBuf,
        /// Birth date, YYYY-MM-DD.
        #[arg(long)]
        birth_date: String,
        /// Residence district code.
        #[arg(long)]
        district: u64,
        /// The holder's commitment (from their `credential keygen --holder`).
        #[arg(long)]
        holder: String,
        /// Where to write the credential.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Subcommand)]
enum KeysCommand {
    /// List the keys the node holds: fingerprint, origin, constraints, shape.
    List,
    /// Print the circuit shapes the given queries can need: role, key held, shape.
    Shapes {
        /// SQL queries.
        #[arg(required = true)]
        sql: Vec<String>,
        /// Consent purpose (default: the configuration's).
        #[arg(long)]
        purpose: Option<String>,
        #[command(flatten)]
        cost: CostArgs,
    },
    /// Write a shape's constraint system as an iden3 .r1cs file, for a snarkjs ceremony.
    #[command(name = "export-r1cs")]
    ExportR1cs {
        /// The shape's description, as `keys shapes` or `query --explain` print it.
        #[arg(long)]
        shape: String,
        /// The .r1cs file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Install a ceremony's final .zkey as a shape's key, once checked against the shape;
    /// prints its trusted-keys line.
    Import {
        /// The final .zkey of the ceremony.
        zkey: PathBuf,
        /// The shape it was made for.
        #[arg(long)]
        shape: String,
    },
}

#[derive(Subcommand)]
enum ExportFormat {
    /// For each proof of a verified bundle, snarkjs' verification_key.json, proof.json and
    /// public.json in OUT/<proof>/.
    Snarkjs {
        /// The bundle.
        bundle: PathBuf,
        /// The folder to write.
        #[arg(long)]
        out: PathBuf,
        #[command(flatten)]
        args: VerifyArgs,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Print an epoch's chunks, commitments and row counts, and check the
    /// manifest's signature against the node key.
    Show {
        /// The dataset.
        dataset: String,
        /// The epoch (default: the latest).
        #[arg(long)]
        epoch: Option<u64>,
    },
    /// Write every signed manifest of a dataset, in epoch order (JSON), for verifiers who
    /// check offline that a bundle's epoch lies on the chain ending at the latest
    /// (`verify --manifest-head HASH --manifest-chain FILE`).
    Chain {
        /// The dataset.
        dataset: String,
        /// The file to write.
        #[arg(long)]
        out: PathBuf,
    },
}

/// Parses the command line, runs the command, and reports errors on stderr.
pub fn run() -> ExitCode {
    // Logs go to stderr, warnings only unless RUST_LOG asks for more.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match execute(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<()> {
    let config = Config::load(cli.config.as_deref())?;
    let data_dir = cli
        .data_dir
        .clone()
        .or_else(|| config.server.data_dir.clone())
        .unwrap_or_else(|| PathBuf::from("zkfabric-data"));
    let data_dir = data_dir.as_path();
    let remote = match (&cli.remote, &cli.command) {
        (None, _) => None,
        (
            Some(url),
            Command::Query { .. }
            | Command::Verify { .. }
            | Command::Catalog { .. }
            | Command::Ledger { .. }
            | Command::Seal { .. }
            | Command::Setup { .. }
            | Command::Donate { .. }
            | Command::Withdraw { .. },
        ) => Some(node::connect(
            url,
            cli.token.clone(),
            &crate::clients::remote::ClientTls {
                ca: cli.ca.clone(),
                identity: cli.client_cert.clone().zip(cli.client_key.clone()),
            },
        )?),
        (Some(_), _) => {
            bail!("--remote is for query, verify, catalog, seal, setup, donate and withdraw")
        }
    };
    match cli.command {
        Command::Generate {
            dataset,
            rows,
            seed,
            out,
        } => generate(&dataset, rows, seed, &out),
        Command::Ingest {
            dataset,
            files,
            schema,
            allow_duplicate,
        } => ingest(
            data_dir,
            &config,
            &dataset,
            &files,
            schema.as_deref(),
            allow_duplicate,
        ),
        Command::Query {
            sql,
            purpose,
            epoch,
            out,
            json,
            explain,
            trusted_keys,
            allow_unpinned_keys,
            node_key,
            min_group_size,
            cost: CostArgs { epsilon, delta },
            nonce,
            table,
            chart,
            path,
        } => match remote {
            Some(remote) => {
                let nonce = research_nonce(nonce.as_deref())?;
                // What the node's answer must be about: what was asked.
                let mut verify = VerifyArgs {
                    trusted_keys,
                    allow_unpinned_keys,
                    node_key,
                    expected_sql: Some(sql.clone()),
                    expected_purpose: purpose.clone(),
                    expected_min_group_size: min_group_size,
                    expected_epoch: epoch,
                    expected_epsilon: epsilon.or(delta.map(|_| config.privacy.epsilon)),
                    expected_delta: delta.or(epsilon.map(|_| config.privacy.delta)),
                    manifest_head: None,
                    manifest_chain: None,
                    ledger: None,
                };
                let mut request = zkfabric_proto::v1::QueryRequest {
                    sql,
                    purpose: purpose.unwrap_or_default(),
                    epoch,
                    epsilon,
                    delta,
                    nonce,
                    path,
                };
                if !explain && epoch.is_none() {
                    let current = node::current_epoch(&remote, &request)?;
                    request.epoch = Some(current);
                    verify.expected_epoch = Some(current);
                }
                if explain {
                    node::explain(&remote, request)
                } else {
                    node::query(
                        &remote,
                        request,
                        &out,
                        json,
                        &verify,
                        &table,
                        chart.as_deref(),
                    )
                }
            }
            None => {
                if trusted_keys.is_some()
                    || allow_unpinned_keys
                    || node_key.is_some()
                    || min_group_size.is_some()
                {
                    bail!(
                        "--trusted-keys, --allow-unpinned-keys, --node-key and --min-group-size \
                         check a --remote node's answer; a local query is proven here (its k is \
                         [query] min_group_size), and `zkfabric verify` checks the bundle"
                    );
                }
                let mut request =
                    crate::node::prove::Request::new(&config, sql, purpose, epoch, true)
                        .with_privacy(epsilon, delta, Some(research_nonce(nonce.as_deref())?))?;
                request.path = crate::node::prove::QueryPath::parse(&path)?;
                if explain {
                    explain_query(data_dir, &config, &request)
                } else {
                    query(
                        data_dir,
                        &config,
                        &request,
                        &out,
                        json,
                        &table,
                        chart.as_deref(),
                    )
                    .map(|_| ())
                }
            }
        },
        Command::Verify {
            bundle,
            args,
            table,
            chart,
        } => verify(&bundle, &args, &table, chart.as_deref(), remote.as_ref()),
        Command::Setup { sql, purpose, cost } => match remote {
            Some(remote) => node::setup(&remote, &sql, purpose, &cost),
            None => setup(data_dir, &config, &sql, purpose, &cost),
        },
        Command::Keys { command } => match command {
            KeysCommand::List => keys::list(data_dir),
            KeysCommand::Shapes { sql, purpose, cost } => {
                keys::shapes(data_dir, &config, &sql, purpose, &cost)
            }
            KeysCommand::ExportR1cs { shape, out } => keys::export_r1cs(&shape, &out),
            KeysCommand::Import { zkey, shape } => keys::import(data_dir, &zkey, &shape),
        },
        Command::Export {
            format: ExportFormat::Snarkjs { bundle, out, args },
        } => export_snarkjs(&bundle, &out, &args),
        Command::Demo { rows, keep } => demo(rows, keep),
        Command::Seal {
            dataset,
            prove_rollups,
        } => match remote {
            Some(remote) => node::seal(&remote, &dataset, prove_rollups),
            None => seal(data_dir, &config, &dataset, prove_rollups),
        },
        Command::Serve { listen, insecure } => node::serve(config, data_dir, listen, insecure),
        Command::Token { name, role } => node::token(&name, &role),
        Command::Withdraw {
            receipt,
            secret,
            holder_key,
        } => donor::withdraw(data_dir, remote.as_ref(), &receipt, secret, holder_key),
        Command::Credential {
            command:
                CredentialCommand::Keygen {
                    issuer,
                    organisation,
                    out,
                    ..
                },
        } => donor::keygen(issuer, organisation, &out),
        Command::Credential {
            command:
                CredentialCommand::Issue {
                    issuer_key,
                    birth_date,
                    district,
                    holder,
                    out,
                },
        } => donor::issue(&issuer_key, &birth_date, district, &holder, &out),
        Command::Donate {
            file,
            dataset,
            purposes,
            credential,
            holder_key,
            org_key,
        } => {
            let proof = match (&credential, &holder_key, &org_key) {
                (Some(credential), Some(holder), _) => {
                    donor::ProofFiles::Credential { credential, holder }
                }
                (_, _, Some(key)) => donor::ProofFiles::Organisation(key),
                _ => donor::ProofFiles::None,
            };
            let donation = donor::Donation {
                file: &file,
                dataset: &dataset,
                purposes,
                proof,
            };
            match remote {
                Some(remote) => donor::donate_remote(&remote, donation),
                None => donor::donate_local(data_dir, &config, donation),
            }
        }
        Command::Ledger { dataset, json } => {
            let (key, ledgers) = match remote {
                Some(remote) => node::ledgers(&remote, dataset.as_deref())?,
                None => {
                    let store = open(data_dir)?;
                    let names = match dataset {
                        Some(d) => vec![d],
                        None => store.datasets()?.into_iter().map(|d| d.name).collect(),
                    };
                    let ledgers = names
                        .iter()
                        .map(|d| Ok(store.ledger(d)?.to_proto(d, config.privacy.budget())))
                        .collect::<Result<Vec<_>>>()?;
                    (store.node_key(), ledgers)
                }
            };
            print_ledgers(&ledgers, &key, json)
        }
        Command::Catalog { show: None } => match remote {
            Some(remote) => node::catalog(&remote),
            None => {
                let store = open(data_dir)?;
                print_catalog(&store.node_key(), &store.datasets()?);
                Ok(())
            }
        },
        Command::Catalog {
            show: Some(CatalogCommand::Show { dataset, epoch }),
        } => match remote {
            Some(remote) => node::catalog_show(&remote, &dataset, epoch),
            None => {
                let store = open(data_dir)?;
                let epochs = store.epochs(&dataset)?;
                if epoch.is_some() || !epochs.is_empty() {
                    let signed = store.manifest(&dataset, epoch)?;
                    let erased = store
                        .check_queryable(&dataset, signed.manifest.epoch)
                        .err()
                        .map(|e| e.to_string());
                    let schema = store.schema(&dataset)?;
                    print_manifest(&signed, &schema, &epochs, &store.node_key(), erased)?;
                } else {
                    println!("dataset      {dataset}: no epoch sealed yet");
                }
                print_ingested(&store.ingested(&dataset)?);
                Ok(())
            }
        },
        Command::Catalog {
            show: Some(CatalogCommand::Chain { dataset, out }),
        } => {
            let chain = match remote {
                Some(remote) => answer::block_on(remote.manifests_after(&dataset, 0))??,
                None => {
                    let store = open(data_dir)?;
                    store
                        .epochs(&dataset)?
                        .into_iter()
                        .map(|e| store.manifest(&dataset, Some(e)))
                        .collect::<Result<Vec<_>, _>>()?
                }
            };
            let head = chain.last().context("the dataset has no epoch yet")?;
            let text = serde_json::to_vec_pretty(&chain)?;
            files::write_bytes_atomically(&out, &text)?;
            println!(
                "wrote {} manifests of {dataset} to {}; the head (epoch {}) is {}",
                chain.len(),
                out.display(),
                head.manifest.epoch,
                head.manifest.hash()
            );
            Ok(())
        }
    }
}

fn builtin(dataset: &str) -> Result<Schema> {
    Schema::builtin(dataset).ok_or_else(|| {
        anyhow!(
            "unknown dataset `{dataset}`; built-in: {}",
            Schema::builtin_names().collect::<Vec<_>>().join(", ")
        )
    })
}

fn progress_bar(len: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(len);
    bar.set_style(
        ProgressStyle::with_template(&format!(
            "{{spinner}} {what} [{{bar:30}}] {{human_pos}}/{{human_len}} rows, {{per_sec}}, {{eta}} left"
        ))
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar
}

fn generate(dataset: &str, rows: usize, seed: u64, out: &Path) -> Result<()> {
    let schema = builtin(dataset)?;
    records::Format::of(out)?;
    let started = Instant::now();
    let bar = progress_bar(rows as u64 * 2, "generating");
    let columns = synth::generate(&schema, rows, seed, |done| bar.set_position(done as u64))
        .map_err(|e| anyhow!(e))?;
    let batch_rows = 65_536;
    let batches = (0..rows).step_by(batch_rows).map(|start| {
        let end = (start + batch_rows).min(rows);
        bar.set_position((rows + end) as u64);
        records::to_batch(&schema, &columns, start..end)
    });
    records::write_file(out, records::arrow_schema(&schema), batches)
        .with_context(|| format!("writing {}", out.display()))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    println!(
        "wrote {rows} {dataset} rows to {} in {secs:.2} s ({:.0} rows/s, seed {seed})",
        out.display(),
        rows as f64 / secs
    );
    Ok(())
}

fn open(data_dir: &Path) -> Result<Store> {
    Store::open(data_dir).with_context(|| format!("opening {}", data_dir.display()))
}

/// Opens the store with `dataset` registered: from `schema_file` when given, else the
/// built-in dataset of that name (if it is one) as the configuration sizes it.
fn open_with(
    data_dir: &Path,
    config: &Config,
    dataset: &str,
    schema_file: Option<&Path>,
) -> Result<Store> {
    let mut store = open(data_dir)?;
    match schema_file {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let schema = Schema::parse(&path.display().to_string(), &text)?;
            if schema.name != dataset {
                return Err(anyhow!(
                    "{} declares dataset `{}`, not `{dataset}`",
                    path.display(),
                    schema.name
                ));
            }
            store.register(&schema)?;
        }
        None => store.register_on_first_use(dataset, |d| config.builtin_schema(d))?,
    }
    Ok(store)
}

fn ingest(
    data_dir: &Path,
    config: &Config,
    dataset: &str,
    files: &[PathBuf],
    schema: Option<&Path>,
    allow_duplicate: bool,
) -> Result<()> {
    let mut store = open_with(data_dir, config, dataset, schema)?;
    let started = Instant::now();
    let spinner =
        ProgressBar::new_spinner().with_message(format!("ingesting {} file(s)", files.len()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let result = store.ingest(dataset, files, allow_duplicate);
    spinner.finish_and_clear();
    let (report, sealed) = result.context("nothing was ingested")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {} rows into {dataset} in {secs:.2} s ({:.0} rows/s); {} rows pending",
        report.rows,
        report.rows as f64 / secs.max(1e-9),
        report.pending
    );
    if !report.batches.is_empty() {
        let batches: Vec<String> = report.batches.iter().map(u64::to_string).collect();
        println!(
            "committed as batch {} (`catalog show {dataset}` lists every batch and its file's \
             SHA-256)",
            batches.join(", ")
        );
    }
    if let Some(s) = sealed {
        println!(
            "sealed {} full chunk(s), {} rows: epoch {} published",
            s.chunks, s.rows, s.epoch
        );
        prove_rolled_up(
            data_dir,
            config,
            &store,
            dataset,
            &s.rollups,
            config.rollups.prove_at_seal,
        )?;
    }
    Ok(())
}

/// What a seal did to the dataset's roll-ups: each new sealing's cells, then (when
/// `prove` is set) the proofs of every sealing the latest epoch lists that is not proven
/// yet, so that queries answered from a roll-up pay only for its cells; else a line
/// saying how to prove them. Without keys for its shapes in ceremony mode, the proofs
/// wait, and the line says so.
fn prove_rolled_up(
    data_dir: &Path,
    config: &Config,
    store: &Store,
    dataset: &str,
    rolled: &[RolledUp],
    prove: bool,
) -> Result<()> {
    for r in rolled {
        println!(
            "rolled {} chunk(s) up into {} cell(s) in {} cell chunk(s) (roll-up {})",
            r.chunks, r.cells, r.cell_chunks, r.rollup
        );
    }
    let keys = KeyCache::new(data_dir).with_mode(config.keys.mode);
    let proofs = ProofCache::open(data_dir, config.query.proof_cache_entries)?;
    let fan_in = config.query.combine_inputs;
    let kept = KeptSealings {
        keys: &keys,
        proofs: &proofs,
        fan_in,
    };
    let Some((manifest, unproven)) = kept.unproven_latest(store, dataset)? else {
        return Ok(());
    };
    if unproven.is_empty() {
        return Ok(());
    }
    if !prove {
        println!(
            "{} sealing(s) not proven yet: answers read the rows until `zkfabric seal {dataset} \
             --prove-rollups` proves them (or [rollups] prove_at_seal = true, at every seal)",
            unproven.len()
        );
        return Ok(());
    }
    let cancel = AtomicBool::new(false);
    let sealing = Sealing {
        keys: &keys,
        proofs: &proofs,
        setup: config.keys.mode == KeyMode::Development,
        fan_in,
        cancel: &cancel,
    };
    for (rollup, position) in unproven {
        let loaded = LoadedSealing::load(store, &manifest, &rollup, position)?;
        let started = Instant::now();
        let bar = ProgressBar::new(0).with_message(format!("proving roll-up {rollup}"));
        let progress = |p: Progress| match p {
            Progress::Setup => bar.suspend(|| {
                eprintln!(
                    "warning: no key for this circuit shape; making one by single-party setup \
                     (development only: whoever ran it could forge proofs)"
                )
            }),
            Progress::Proving { total } => bar.set_length(total as u64),
            Progress::ChunkProven { .. } => bar.inc(1),
            Progress::Combining => {}
        };
        let proven = sealing.prove(&loaded, progress);
        bar.finish_and_clear();
        match proven {
            Ok(p) => {
                let secs = started.elapsed().as_secs_f64();
                println!(
                    "proved roll-up {rollup} sealing {position}: {} chunk, {} cell chunk and {} \
                     subtotal proof(s) in {secs:.1} s ({:.0} rows/s)",
                    p.proof.rows.len(),
                    p.proof.cells.len(),
                    p.proof.row_subtotals.len() + p.proof.cell_subtotals.len(),
                    loaded.rows() as f64 / secs.max(1e-9)
                );
            }
            Err(ProveError::Keys(e)) => {
                println!("roll-up {rollup}'s proofs wait for keys: {e}")
            }
            Err(e) => return Err(e).context(format!("proving roll-up {rollup}")),
        }
    }
    Ok(())
}

fn seal(data_dir: &Path, config: &Config, dataset: &str, prove_rollups: bool) -> Result<()> {
    let mut store = open(data_dir)?;
    let started = Instant::now();
    let spinner = ProgressBar::new_spinner().with_message(format!("sealing {dataset}"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let result = store.seal(dataset);
    spinner.finish_and_clear();
    let rolled = match result? {
        None => {
            println!("nothing to seal: {dataset} has no pending rows");
            Vec::new()
        }
        Some(s) => {
            let secs = started.elapsed().as_secs_f64();
            println!(
                "sealed {} rows into {} chunk(s) in {secs:.2} s ({:.0} rows/s): epoch {} published",
                s.rows,
                s.chunks,
                s.rows as f64 / secs.max(1e-9),
                s.epoch
            );
            s.rollups
        }
    };
    let prove = prove_rollups || config.rollups.prove_at_seal;
    prove_rolled_up(data_dir, config, &store, dataset, &rolled, prove)
}

/// Prints the node key and every dataset's line.
fn print_catalog(node_key: &VerifyingKey, datasets: &[DatasetSummary]) {
    println!("node key {}", hex::encode(node_key.to_bytes()));
    if datasets.is_empty() {
        println!("no datasets yet: `zkfabric ingest <dataset> FILE` registers a built-in one");
    }
    println!(
        "{:<14} {:>6} {:>8} {:>12} {:>10}",
        "dataset", "epoch", "chunks", "rows", "pending"
    );
    for d in datasets {
        let epoch = d.latest_epoch.map_or("-".to_string(), |e| e.to_string());
        println!(
            "{:<14} {epoch:>6} {:>8} {:>12} {:>10}",
            d.name, d.chunks, d.rows, d.pending
        );
    }
}

/// Checks each ledger's chain against `node_key` and prints it: with one ledger every
/// entry, with several each one's totals; as JSON with `json`. Fails on a ledger that
/// does not check.
fn print_ledgers(
    ledgers: &[zkfabric_proto::v1::Ledger],
    node_key: &VerifyingKey,
    json: bool,
) -> Result<()> {
    for l in ledgers {
        crate::verifier::ledger::check_chain(&l.dataset, &l.entries, node_key)
            .with_context(|| format!("the privacy ledger of {} does not check", l.dataset))?;
    }
    if json {
        println!("{}", serde_json::to_string_pretty(ledgers)?);
        return Ok(());
    }
    println!(
        "node key     {} (every entry's signature and chain link checked)",
        hex::encode(node_key.to_bytes())
    );
    for l in ledgers {
        println!(
            "{:<12} {} charge(s): spent epsilon {} and delta {:e} of {} and {:e}; left {} and {:e}",
            l.dataset,
            l.entries.len(),
            l.spent_epsilon,
            l.spent_delta,
            l.budget_epsilon,
            l.budget_delta,
            l.budget_epsilon - l.spent_epsilon,
            l.budget_delta - l.spent_delta
        );
    }
    if let [l] = ledgers {
        println!(
            "{:>5} {:>11} {:>6} {:>8} {:>8}  {:<20} query hash",
            "seq", "time", "epoch", "epsilon", "delta", "purpose"
        );
        for e in &l.entries {
            println!(
                "{:>5} {:>11} {:>6} {:>8} {:>8.1e}  {:<20} {}",
                e.seq, e.time, e.epoch, e.epsilon, e.delta, e.purpose, e.query_hash
            );
        }
    }
    Ok(())
}

/// Prints an epoch's manifest and checks its signature against `node_key`.
/// The files ingested into a dataset (this node's own record, not part of any manifest).
fn print_ingested(batches: &[IngestedBatch]) {
    if batches.is_empty() {
        return;
    }
    println!("ingested     {} file(s), oldest first:", batches.len());
    println!(
        "{:>6} {:>8} {:>12} sha256 / file",
        "batch", "rows", "unix time"
    );
    for b in batches {
        let again = b.duplicate_of.map_or(String::new(), |d| {
            format!(" (again, as --allow-duplicate asked: batch {d})")
        });
        println!(
            "{:>6} {:>8} {:>12} {} {}{again}",
            b.batch, b.rows, b.ingested_at, b.sha256, b.source
        );
    }
}

/// Prints a signed manifest; `erased` says why its epoch answers no new query, if it
/// does not.
fn print_manifest(
    signed: &SignedManifest,
    schema: &Schema,
    epochs: &[u64],
    node_key: &VerifyingKey,
    erased: Option<String>,
) -> Result<()> {
    let m = &signed.manifest;
    println!("dataset      {} (id {})", m.dataset, m.dataset_id);
    println!("epoch        {} of {epochs:?}", m.epoch);
    if let Some(erased) = erased {
        println!("erased       {erased}");
    }
    println!("schema       {}", m.schema_hash);
    println!(
        "previous     {}",
        m.previous.as_deref().unwrap_or("none (first epoch)")
    );
    println!("manifest     {}", m.hash());
    println!("chunk rows   {}", m.chunk_rows);
    println!("{:>6} {:>6} commitment", "chunk", "rows");
    for c in &m.chunks {
        println!("{:>6} {:>6} {}", c.index, c.rows, c.commitment);
    }
    let rows: u64 = m.chunks.iter().map(|c| c.rows).sum();
    println!("total        {} chunks, {rows} rows", m.chunks.len());
    println!(
        "backing      {}",
        crate::verifier::command::backing_in_words(&m.backing(), schema)
    );
    for (rollup, entry) in schema.rollups.iter().zip(&m.rollups) {
        let dimensions: Vec<String> = rollup.dimensions.iter().map(|d| d.to_string()).collect();
        let cells = entry.cells();
        println!(
            "roll-up      {} by {} (sums of {}): {cells} cells in {} sealing(s) of {} cell \
             chunk(s)",
            rollup.name,
            dimensions.join(", "),
            match rollup.measures.is_empty() {
                true => "no measure".to_string(),
                false => rollup.measures.join(", "),
            },
            entry.sealings.len(),
            entry.sealings.iter().map(|s| s.cells.len()).sum::<usize>(),
        );
    }
    match signed.verify(Some(node_key)) {
        Ok(()) => {
            println!("signature    valid, node key {}", signed.node_key);
            Ok(())
        }
        Err(e) => Err(anyhow!("signature check failed: {e}")),
    }
}

/// The nonce a researcher's query carries: `--nonce` (64 hex digits) to repeat an
/// answer, or 32 fresh random bytes.
fn research_nonce(given: Option<&str>) -> Result<Vec<u8>> {
    match given {
        Some(text) => {
            let bytes = hex::decode(text).context("--nonce: not hex")?;
            if bytes.len() != crate::verifier::privacy::NONCE_BYTES {
                bail!(
                    "--nonce: 64 hex digits (32 bytes), got {} bytes",
                    bytes.len()
                );
            }
            Ok(bytes)
        }
        None => Ok(crate::verifier::privacy::fresh_nonce()),
    }
}
