//! Commands of the `zkfabric` binary; each maps errors to a message and a non-zero exit.

use std::{
    path::{Path, PathBuf},
    process::ExitCode,
    time::Instant,
};

use anyhow::{anyhow, Context, Result};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use zkfabric::{config::Config, records, schema::Schema, store::Store, synth};

mod answer;
use answer::{demo, explain_query, query, request, setup, verify};

/// A privacy-preserving data fabric: committed records, verified aggregate answers.
#[derive(Parser)]
#[command(name = "zkfabric", version, about)]
struct Cli {
    /// The node's data directory.
    #[arg(
        long,
        global = true,
        env = "ZKFABRIC_DATA_DIR",
        default_value = "zkfabric-data"
    )]
    data_dir: PathBuf,
    /// The node's configuration file (TOML; see `zkfabric::config`).
    #[arg(long, global = true, env = "ZKFABRIC_CONFIG")]
    config: Option<PathBuf>,
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
    },
    /// Seal every pending row into committed chunks and publish a signed epoch.
    Seal {
        /// The dataset.
        dataset: String,
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
        /// Only show the provable plan and the circuits it needs; prove nothing.
        #[arg(long)]
        explain: bool,
    },
    /// Verify an answer bundle offline: no network, no data directory.
    Verify {
        /// The bundle (.zkf, or its .json form).
        bundle: PathBuf,
        /// Verifying-key fingerprints to trust: a file, or a directory of files, with one
        /// `sha256:...` fingerprint per line (as `zkfabric setup` prints them).
        #[arg(long)]
        trusted_keys: Option<PathBuf>,
        /// The node's Ed25519 public key (hex) the manifest must be signed with.
        #[arg(long)]
        node_key: Option<String>,
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
    },
    /// Run everything end to end in a temporary data directory: generate household
    /// readings, ingest, seal, answer two queries with proofs, verify the bundles.
    Demo {
        /// Rows of generated consumption readings.
        #[arg(long, default_value_t = 4096)]
        rows: usize,
        /// Keep the demo's data directory at this path instead of a temporary one.
        #[arg(long)]
        keep: Option<PathBuf>,
    },
    /// List datasets and epochs, or show one dataset's signed manifest.
    Catalog {
        #[command(subcommand)]
        show: Option<CatalogCommand>,
    },
}

#[derive(Subcommand)]
enum CatalogCommand {
    /// Print an epoch's chunks, commitments, row counts and time windows, and check the
    /// manifest's signature against the node key.
    Show {
        /// The dataset.
        dataset: String,
        /// The epoch (default: the latest).
        #[arg(long)]
        epoch: Option<u64>,
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
            // The chain, each cause once (many errors already print their source).
            let mut message = String::new();
            for cause in e.chain() {
                let text = cause.to_string();
                if !message.contains(&text) {
                    if !message.is_empty() {
                        message.push_str(": ");
                    }
                    message.push_str(&text);
                }
            }
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> Result<()> {
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
        } => ingest(&cli.data_dir, &dataset, &files, schema.as_deref()),
        Command::Query {
            sql,
            purpose,
            epoch,
            out,
            json,
            explain,
        } => {
            let config = Config::load(cli.config.as_deref())?;
            let request = request(&config, sql, purpose, epoch, true);
            if explain {
                explain_query(&cli.data_dir, &request)
            } else {
                query(&cli.data_dir, &request, &out, json).map(|_| ())
            }
        }
        Command::Verify {
            bundle,
            trusted_keys,
            node_key,
        } => verify(&bundle, trusted_keys.as_deref(), node_key.as_deref()),
        Command::Setup { sql, purpose } => {
            let config = Config::load(cli.config.as_deref())?;
            setup(&cli.data_dir, &config, &sql, purpose)
        }
        Command::Demo { rows, keep } => demo(rows, keep),
        Command::Seal { dataset } => seal(&cli.data_dir, &dataset),
        Command::Catalog { show: None } => catalog(&cli.data_dir),
        Command::Catalog {
            show: Some(CatalogCommand::Show { dataset, epoch }),
        } => catalog_show(&cli.data_dir, &dataset, epoch),
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
/// built-in dataset of that name (if it is one).
fn open_with(data_dir: &Path, dataset: &str, schema_file: Option<&Path>) -> Result<Store> {
    let mut store = open(data_dir)?;
    let schema = match schema_file {
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
            Some(schema)
        }
        // A built-in dataset is registered on first use.
        None if store.schema(dataset).is_err() => Schema::builtin(dataset),
        None => None,
    };
    if let Some(schema) = schema {
        store.register(&schema)?;
    }
    Ok(store)
}

fn ingest(data_dir: &Path, dataset: &str, files: &[PathBuf], schema: Option<&Path>) -> Result<()> {
    let mut store = open_with(data_dir, dataset, schema)?;
    let started = Instant::now();
    let spinner =
        ProgressBar::new_spinner().with_message(format!("ingesting {} file(s)", files.len()));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let result = store.ingest(dataset, files);
    spinner.finish_and_clear();
    let (report, sealed) = result.context("nothing was ingested")?;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "ingested {} rows into {dataset} in {secs:.2} s ({:.0} rows/s); {} rows pending",
        report.rows,
        report.rows as f64 / secs.max(1e-9),
        report.pending
    );
    if let Some(s) = sealed {
        println!(
            "sealed {} full chunk(s), {} rows: epoch {} published",
            s.chunks, s.rows, s.epoch
        );
    }
    Ok(())
}

fn seal(data_dir: &Path, dataset: &str) -> Result<()> {
    let mut store = open(data_dir)?;
    let started = Instant::now();
    let spinner = ProgressBar::new_spinner().with_message(format!("sealing {dataset}"));
    spinner.enable_steady_tick(std::time::Duration::from_millis(120));
    let result = store.seal(dataset);
    spinner.finish_and_clear();
    match result? {
        None => println!("nothing to seal: {dataset} has no pending rows"),
        Some(s) => {
            let secs = started.elapsed().as_secs_f64();
            println!(
                "sealed {} rows into {} chunk(s) in {secs:.2} s ({:.0} rows/s): epoch {} published",
                s.rows,
                s.chunks,
                s.rows as f64 / secs.max(1e-9),
                s.epoch
            );
        }
    }
    Ok(())
}

fn catalog(data_dir: &Path) -> Result<()> {
    let store = open(data_dir)?;
    println!("node key {}", hex::encode(store.node_key().to_bytes()));
    let datasets = store.datasets()?;
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
    Ok(())
}

fn catalog_show(data_dir: &Path, dataset: &str, epoch: Option<u64>) -> Result<()> {
    let store = open(data_dir)?;
    let signed = store.manifest(dataset, epoch)?;
    let m = &signed.manifest;
    println!("dataset      {} (id {})", m.dataset, m.dataset_id);
    println!("epoch        {} of {:?}", m.epoch, store.epochs(dataset)?);
    println!("schema       {}", m.schema_hash);
    println!(
        "previous     {}",
        m.previous.as_deref().unwrap_or("none (first epoch)")
    );
    println!("manifest     {}", m.hash());
    println!("chunk rows   {}", m.chunk_rows);
    println!(
        "{:>6} {:>6} {:<43} commitment",
        "chunk", "rows", "time window (UTC seconds)"
    );
    for c in &m.chunks {
        let window = c
            .time_window
            .map_or("-".to_string(), |(a, b)| format!("{a} .. {b}"));
        println!("{:>6} {:>6} {window:<43} {}", c.index, c.rows, c.commitment);
    }
    let rows: u64 = m.chunks.iter().map(|c| c.rows).sum();
    println!("total        {} chunks, {rows} rows", m.chunks.len());
    match signed.verify(Some(&store.node_key())) {
        Ok(()) => {
            println!("signature    valid, node key {}", signed.node_key);
            Ok(())
        }
        Err(e) => Err(anyhow!("signature check failed: {e}")),
    }
}
