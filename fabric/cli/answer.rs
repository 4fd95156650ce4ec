//! The verified-query commands: `query`, `verify`, `setup` and `demo`.

use std::{
    collections::HashSet,
    future::Future,
    path::{Path, PathBuf},
    time::Instant,
};

use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use zkfabric::{
    bundle::{self, Bundle},
    config::Config,
    keys::{describe_aggregate, describe_combine, KeyCache},
    prove::{self, Progress, Request},
    query::{sql, Aggregand, OutputKind, ProvableQuery},
    schema::Schema,
    verify::{self, Report, Trust},
};
use zkfabric_proto::v1 as pb;

use super::open;

fn block_on<F: Future>(future: F) -> Result<F::Output> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?
        .block_on(future))
}

/// The request a `query` or `setup` command makes.
pub fn request(
    config: &Config,
    sql: String,
    purpose: Option<String>,
    epoch: Option<u64>,
    setup: bool,
) -> Request {
    Request {
        sql,
        purpose: purpose
            .or_else(|| config.query.default_purpose.clone())
            .unwrap_or_default(),
        epoch,
        limits: config.limits(),
        setup,
    }
}

fn check_purpose(request: &Request) -> Result<()> {
    if request.purpose.is_empty() {
        bail!("name the query's consent purpose with --purpose (or set [query] default_purpose in the configuration)");
    }
    Ok(())
}

/// `zkfabric query --explain`: the provable plan and its circuits, nothing proven.
pub fn explain_query(data_dir: &Path, request: &Request) -> Result<()> {
    check_purpose(request)?;
    let store = open(data_dir)?;
    let ctx = datafusion::prelude::SessionContext::new();
    let (plan, manifest) = block_on(prove::plan(&ctx, &store, request))??;
    let q = &plan.query;
    let touched = manifest
        .manifest
        .chunks
        .iter()
        .filter(|c| q.touches(&plan.schema, c.time_window))
        .count();
    println!(
        "dataset      {} epoch {}",
        manifest.manifest.dataset, manifest.manifest.epoch
    );
    print_query(q);
    let keys = KeyCache::new(data_dir);
    let chunk = describe_aggregate(&plan.circuits.chunk_shape);
    let root = describe_combine(&plan.circuits.root_shape);
    println!(
        "chunks       {touched} of {} touched: {touched} chunk proofs of {} rows",
        manifest.manifest.chunks.len(),
        plan.schema.chunk_rows
    );
    for (what, d) in [("chunk key", chunk), ("root key", root)] {
        let cached = if keys.has(&d) { "cached" } else { "missing" };
        println!("{what:<12} {d} ({cached})");
    }
    Ok(())
}

fn print_query(q: &ProvableQuery) {
    println!("purpose      {}", q.purpose);
    for f in &q.filters {
        println!("filter       {} {:?}", f.column, f.test);
    }
    if let Some(g) = &q.group_by {
        println!("group by     {g}");
    }
    println!("aggregand    {:?}", q.aggregand);
}

/// `zkfabric query`: answers with proofs, prints the answer, writes the bundle.
pub fn query(data_dir: &Path, request: &Request, out: &Path, json: bool) -> Result<Bundle> {
    check_purpose(request)?;
    let store = open(data_dir)?;
    let keys = KeyCache::new(data_dir);
    let started = Instant::now();
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} chunks, {per_sec}, {eta} left",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message("planning");
    let proving_started = std::sync::Mutex::new(None);
    let progress = |p: Progress| match p {
        Progress::Setup => bar.suspend(|| {
            eprintln!(
                "warning: no key for this circuit shape; making one by single-party setup \
                 (development only: whoever ran it could forge proofs)"
            )
        }),
        Progress::Proving { total } => {
            *proving_started.lock().expect("not poisoned") = Some(Instant::now());
            bar.set_length(total as u64);
            bar.set_message("proving");
            bar.reset_eta();
        }
        Progress::ChunkProven => bar.inc(1),
        Progress::Combining => bar.set_message("combining"),
    };
    let answer = block_on(prove::answer(&store, &keys, request, progress))?;
    bar.finish_and_clear();
    let bundle = answer.context("the query was not answered")?;
    let total = started.elapsed().as_secs_f64();
    let proving = proving_started
        .into_inner()
        .expect("not poisoned")
        .map_or(total, |t| t.elapsed().as_secs_f64());
    bundle::write(&bundle, out, json).with_context(|| format!("writing {}", out.display()))?;
    let schema = store.schema(&bundle.dataset)?;
    let rows = bundle.chunk_proofs.len() * schema.chunk_rows;
    let (query, _) = bundle::query_from_proto(bundle.query.as_ref())?;
    print_answer(&schema, &query, &bundle);
    println!(
        "\nproved {} chunk(s) and {} combine(s) in {proving:.1} s ({:.0} rows/s; {total:.1} s \
         with planning and keys); bundle: {}{}",
        bundle.chunk_proofs.len(),
        bundle.combine_proofs.len(),
        rows as f64 / proving,
        out.display(),
        if json { " (and .json)" } else { "" }
    );
    Ok(bundle)
}

/// Prints the result table as the query's output columns, in the units the data are
/// stored in (as plain DataFusion would print them).
fn print_answer(schema: &Schema, query: &ProvableQuery, bundle: &Bundle) {
    let Some(result) = &bundle.result else {
        return;
    };
    let width = query
        .outputs
        .iter()
        .map(|o| o.name.len())
        .max()
        .unwrap_or(0)
        .max(12)
        + 2;
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .map(|c| format!("{c:>width$}"))
            .collect::<String>()
    };
    println!(
        "{}",
        line(query.outputs.iter().map(|o| o.name.clone()).collect())
    );
    for row in &result.rows {
        println!(
            "{}",
            line(query.outputs.iter().map(|o| cell(o.kind, row)).collect())
        );
    }
    let mut notes = vec![format!(
        "purpose {}; groups of fewer than {} rows are suppressed",
        query.purpose,
        bundle.query.as_ref().map_or(0, |q| q.min_group_size)
    )];
    if let Aggregand::Sum(m) = &query.aggregand {
        if let Some((_, c)) = schema.column(m) {
            if let (Some(scale), Some(unit)) = (c.scale, &c.unit) {
                notes.push(format!("{m} is in {unit} x {scale}"));
            }
        }
    }
    println!("({})", notes.join("; "));
}

fn cell(kind: OutputKind, row: &pb::ResultRow) -> String {
    if kind == OutputKind::GroupKey {
        return if row.label.is_empty() {
            row.key.to_string()
        } else {
            row.label.clone()
        };
    }
    if row.suppressed {
        return "suppressed".into();
    }
    match kind {
        OutputKind::Count => row.count.to_string(),
        OutputKind::Sum => row.sum.clone(),
        OutputKind::Avg => match row.sum.parse::<f64>() {
            Ok(sum) if row.count > 0 => (sum / row.count as f64).to_string(),
            _ => "-".into(),
        },
        OutputKind::Predicate => row.holds.to_string(),
        OutputKind::GroupKey => unreachable!("handled above"),
    }
}

fn trusted_fingerprints(path: &Path) -> Result<HashSet<String>> {
    let files: Vec<PathBuf> = if path.is_dir() {
        let mut files: Vec<PathBuf> = std::fs::read_dir(path)
            .with_context(|| format!("reading {}", path.display()))?
            .map(|e| e.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut out = HashSet::new();
    for file in files {
        let text = std::fs::read_to_string(&file)
            .with_context(|| format!("reading {}", file.display()))?;
        for (n, line) in text.lines().enumerate() {
            let line = line.split('#').next().unwrap_or("").trim();
            let Some(fingerprint) = line.split_whitespace().next() else {
                continue;
            };
            if !fingerprint.starts_with("sha256:") || fingerprint.len() != 71 {
                bail!(
                    "{} line {}: {fingerprint:?} is not a sha256: fingerprint",
                    file.display(),
                    n + 1
                );
            }
            out.insert(fingerprint.to_string());
        }
    }
    Ok(out)
}

/// `zkfabric verify`: exits 0 only if every check holds.
pub fn verify(path: &Path, trusted_keys: Option<&Path>, node_key: Option<&str>) -> Result<()> {
    let bundle = bundle::read(path)?;
    let node_key = node_key
        .map(|hex_key| -> Result<_> {
            let bytes: [u8; 32] = hex::decode(hex_key.trim())
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| anyhow!("--node-key: not 64 hex digits"))?;
            ed25519_dalek::VerifyingKey::from_bytes(&bytes)
                .map_err(|_| anyhow!("--node-key: not an Ed25519 public key"))
        })
        .transpose()?;
    let trust = Trust {
        node_key,
        fingerprints: trusted_keys.map(trusted_fingerprints).transpose()?,
    };
    let started = Instant::now();
    let report =
        verify::verify(&bundle, &trust).with_context(|| format!("{}: REJECTED", path.display()))?;
    // The SQL text must mean the query the proofs are about.
    let relowered = block_on(sql::lower_without_data(
        &report.schema,
        &bundle.sql,
        &report.query.purpose,
    ))?
    .map_err(|e| anyhow!("{}: REJECTED: sql: {e}", path.display()))?;
    if relowered != report.query {
        bail!(
            "{}: REJECTED: sql: the SQL text does not mean the query the proofs are about",
            path.display()
        );
    }
    print_report(&report, &bundle, started.elapsed().as_secs_f64());
    Ok(())
}

fn print_report(report: &Report, bundle: &Bundle, secs: f64) {
    println!("verified     {} epoch {}", report.dataset, report.epoch);
    println!("sql          {}", bundle.sql);
    println!(
        "node key     {} (manifest signature valid)",
        report.node_key
    );
    println!(
        "coverage     {} of {} chunks touched, all proven",
        report.chunks.1, report.chunks.0
    );
    println!(
        "proofs       {} verified in {:.1} ms",
        report.proofs,
        secs * 1000.0
    );
    if report.keys_pinned {
        println!("keys         pinned by --trusted-keys");
    } else {
        println!(
            "keys         NOT pinned: the bundle's own verifying keys were used; pass \
             --trusted-keys to accept only keys from a trusted setup"
        );
    }
    println!();
    print_answer(&report.schema, &report.query, bundle);
}

/// `zkfabric setup`: makes the keys of the queries' shapes and prints fingerprints.
pub fn setup(
    data_dir: &Path,
    config: &Config,
    sql: &[String],
    purpose: Option<String>,
) -> Result<()> {
    let store = open(data_dir)?;
    let keys = KeyCache::new(data_dir);
    println!(
        "# development keys (single-party setup): {}",
        data_dir.display()
    );
    for text in sql {
        let request = request(config, text.clone(), purpose.clone(), None, true);
        check_purpose(&request)?;
        let ctx = datafusion::prelude::SessionContext::new();
        let (plan, _) = block_on(prove::plan(&ctx, &store, &request))??;
        for fingerprint in prove::setup_keys(&keys, &plan.circuits)? {
            println!("{fingerprint}");
        }
    }
    Ok(())
}

/// `zkfabric demo`.
pub fn demo(rows: usize, keep: Option<PathBuf>) -> Result<()> {
    let temporary = tempfile::TempDir::new().context("making a temporary directory")?;
    let dir = keep.unwrap_or_else(|| temporary.path().to_path_buf());
    std::fs::create_dir_all(&dir).with_context(|| format!("making {}", dir.display()))?;
    println!("zkfabric demo in {}\n", dir.display());
    let started = Instant::now();
    let store = zkfabric::demo::prepare(&dir, rows, 2026)?;
    let manifest = store.manifest("consumption", None)?;
    println!(
        "1. generated {rows} hourly household readings, ingested and sealed them in {:.1} s:\n   \
         epoch {}, {} chunks of {} rows, manifest signed by node key {}...",
        started.elapsed().as_secs_f64(),
        manifest.manifest.epoch,
        manifest.manifest.chunks.len(),
        manifest.manifest.chunk_rows,
        &manifest.node_key[..16],
    );
    drop(store);
    let data_dir = dir.join("data");
    let config = Config::default();
    for (n, q) in zkfabric::demo::QUERIES.iter().enumerate() {
        println!(
            "\n{}. {} (purpose {})\n   {}\n",
            n + 2,
            q.question,
            q.purpose,
            q.sql
        );
        let request = request(&config, q.sql.into(), Some(q.purpose.into()), None, true);
        let out = dir.join(format!("{}.zkf", q.name));
        query(&data_dir, &request, &out, false)?;
        println!("\n   verifying {} offline:", out.display());
        verify(&out, None, Some(&manifest.node_key))?;
    }
    if temporary.path() == dir {
        println!("\n(the demo's directory is removed; pass --keep DIR to keep it)");
    }
    Ok(())
}
