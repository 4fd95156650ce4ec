//! The verified-query commands: `query`, `verify`, `setup` and `demo`.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicUsize, Ordering},
        OnceLock,
    },
    time::Instant,
};

use crate::{
    clients::remote::Remote,
    node::config::Config,
    node::keys::{KeyCache, KeyMode},
    node::proofs::ProofCache,
    node::prove::{self, Progress, Request},
    node::sql,
    verifier::bundle::{self, Bundle},
    verifier::command::{print_report, SqlCheck, TableArgs, VerifyArgs},
    verifier::files,
    verifier::privacy::fresh_nonce,
    verifier::query::ProvableQuery,
    verifier::schema::Schema,
    verifier::table::Answer,
    verifier::verify::{self, Report},
};
use anyhow::{anyhow, bail, Context, Result};
use indicatif::{ProgressBar, ProgressStyle};
use zkfabric_proto::v1 as pb;

use super::{open, CostArgs};

/// Runs `future` on the command's one async runtime (a gRPC channel lives on the runtime
/// it was made on, so every call of a command shares it).
pub fn block_on<F: Future>(future: F) -> Result<F::Output> {
    static RUNTIME: OnceLock<std::io::Result<tokio::runtime::Runtime>> = OnceLock::new();
    let runtime = RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
    });
    match runtime {
        Ok(runtime) => Ok(runtime.block_on(future)),
        Err(e) => Err(anyhow!("starting the async runtime: {e}")),
    }
}

fn check_purpose(request: &Request) -> Result<()> {
    if request.purpose.is_empty() {
        bail!("name the query's consent purpose with --purpose (or set [query] default_purpose in the configuration)");
    }
    Ok(())
}

/// `zkfabric query --explain`: the provable plan and its circuits, nothing proven.
pub fn explain_query(data_dir: &Path, config: &Config, request: &Request) -> Result<()> {
    check_purpose(request)?;
    let store = open(data_dir)?;
    let keys = KeyCache::new(data_dir);
    let proofs = ProofCache::open(data_dir, config.query.proof_cache_entries)?;
    let explanation = block_on(prove::explain(&store, &keys, &proofs, request))??;
    print_explanation(&explanation.to_proto(prove::assumed_seconds_per_constraint()))
}

/// Prints an explanation, local or from a node.
pub fn print_explanation(e: &pb::ExplainResponse) -> Result<()> {
    let (query, _) = bundle::query_from_proto(e.query.as_ref())?;
    println!("dataset      {} epoch {}", e.dataset, e.epoch);
    print_query(&query);
    if !e.path.is_empty() {
        println!("path         {}", e.path);
    }
    println!(
        "chunks       {} of {} touched: one proof each",
        e.chunks_touched, e.chunks_total
    );
    for c in &e.circuits {
        let key = match c.constraints {
            Some(n) if c.key_present => format!("{n} constraints"),
            _ => "key missing".into(),
        };
        println!("{:<12} {} x {} ({key})", c.role, c.proofs, c.shape);
    }
    match (e.estimated_constraints, e.estimated_seconds) {
        (Some(n), Some(secs)) => {
            println!("total        {n} constraints, about {secs:.0} s of proving")
        }
        _ => println!(
            "total        unknown until every key is made (`zkfabric setup`, or Admin.Setup)"
        ),
    }
    match e.privacy.as_ref().filter(|p| p.mode == "dp") {
        Some(p) => println!(
            "privacy      dp: costs epsilon {} and delta {:e} of the budget (left: {} and \
             {:e}); Binomial({}, 1/2) noise per value",
            p.epsilon,
            p.delta,
            e.remaining_epsilon.unwrap_or_default(),
            e.remaining_delta.unwrap_or_default(),
            p.coins
        ),
        None => println!("privacy      threshold-only: exact answers, no epsilon spent"),
    }
    Ok(())
}

fn print_query(q: &ProvableQuery) {
    println!("purpose      {}", q.purpose);
    for f in &q.filters {
        println!("filter       {} {:?}", f.column, f.test);
    }
    if !q.group_by.is_empty() {
        let groupings: Vec<String> = q.group_by.iter().map(ToString::to_string).collect();
        println!("group by     {}", groupings.join(", "));
    }
    println!("aggregand    {:?}", q.aggregand);
}

/// `zkfabric query`: answers with proofs, prints the answer, writes the bundle.
pub fn query(
    data_dir: &Path,
    config: &Config,
    request: &Request,
    out: &Path,
    json: bool,
    table: &TableArgs,
    chart: Option<&Path>,
) -> Result<Bundle> {
    check_purpose(request)?;
    let store = open(data_dir)?;
    let keys = KeyCache::new(data_dir).with_mode(config.keys.mode);
    let proofs = ProofCache::open(data_dir, config.query.proof_cache_entries)?;
    let reused = AtomicUsize::new(0);
    let started = Instant::now();
    let bar = chunk_bar("planning");
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
        Progress::ChunkProven { reused: hit } => {
            reused.fetch_add(usize::from(hit), Ordering::Relaxed);
            bar.inc(1)
        }
        Progress::Combining => bar.set_message("combining"),
    };
    let answer = block_on(prove::answer(&store, &keys, &proofs, request, progress))?;
    bar.finish_and_clear();
    let bundle = answer.context("the query was not answered")?;
    let total = started.elapsed().as_secs_f64();
    let proving = proving_started
        .into_inner()
        .expect("not poisoned")
        .map_or(total, |t| t.elapsed().as_secs_f64());
    finish_answer(&bundle, out, json, table, chart)?;
    let reused = match reused.into_inner() {
        0 => String::new(),
        n => format!(" ({n} reused from the proof cache)"),
    };
    let source = match bundle.rollup.as_str() {
        "" => "chunk(s)".to_string(),
        rollup => format!(
            "cell chunk(s) of roll-up {rollup} (with its {} sealing proof(s))",
            bundle.sealing_proofs.len()
        ),
    };
    table.say(&format!(
        "\nproved {} {source}{reused} and {} combine(s) in {proving:.1} s ({:.0} rows/s; \
         {total:.1} s with planning and keys)",
        bundle.chunk_proofs.len(),
        bundle.combine_proofs.len(),
        proven_rows(&bundle) as f64 / proving,
    ));
    Ok(bundle)
}

/// A progress bar over chunk proofs, starting with `message`.
pub fn chunk_bar(message: &'static str) -> ProgressBar {
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} {msg} [{bar:30}] {pos}/{len} chunks, {per_sec}, {eta} left",
        )
        .expect("valid template")
        .progress_chars("=> "),
    );
    bar.set_message(message);
    bar
}

/// Rows the chunk proofs of `bundle` cover (full chunks).
pub fn proven_rows(bundle: &Bundle) -> u64 {
    let chunk_rows = bundle
        .manifest
        .as_ref()
        .and_then(|m| bundle::manifest_from_proto(Some(m)).ok())
        .map_or(0, |m| m.manifest.chunk_rows as u64);
    bundle.chunk_proofs.len() as u64 * chunk_rows
}

/// Writes the bundle (and its JSON form), the answer it carries as `table` says, and
/// its chart to `chart` (SVG) when asked.
pub fn finish_answer(
    bundle: &Bundle,
    out: &Path,
    json: bool,
    table: &TableArgs,
    chart: Option<&Path>,
) -> Result<()> {
    bundle::write(bundle, out, json).with_context(|| format!("writing {}", out.display()))?;
    let schema = Schema::parse("the bundle's schema", &bundle.schema)?;
    let (query, _) = bundle::query_from_proto(bundle.query.as_ref())?;
    table.write_answer(&schema, &query, bundle)?;
    table.say(&format!(
        "bundle       {}{}",
        out.display(),
        if json { " (and .json)" } else { "" }
    ));
    match chart {
        Some(path) => write_chart(path, &schema, &query, bundle, table),
        None => Ok(()),
    }
}

/// Draws the answer of `bundle` to `path` (SVG) and says where.
fn write_chart(
    path: &Path,
    schema: &Schema,
    query: &ProvableQuery,
    bundle: &Bundle,
    table: &TableArgs,
) -> Result<()> {
    let answer = Answer::of(schema, query, bundle);
    crate::clients::chart::write(path, &answer, &bundle.sql)?;
    table.say(&format!("chart        {}", path.display()));
    Ok(())
}

/// `zkfabric verify`: exits 0 only if every check holds. The manifest must be signed by
/// `--node-key` and by the key a `remote` node reports when given.
pub fn verify(
    path: &Path,
    args: &VerifyArgs,
    table: &TableArgs,
    chart: Option<&Path>,
    remote: Option<&Remote>,
) -> Result<()> {
    let started = Instant::now();
    let bundle = bundle::read(path)?;
    let report =
        verified(&bundle, args, remote).with_context(|| format!("{}: REJECTED", path.display()))?;
    print_report(
        &report,
        &bundle,
        started.elapsed().as_secs_f64(),
        args,
        SqlCheck::Replanned,
        table,
    )?;
    match chart {
        Some(path) => write_chart(path, &report.schema, &report.query, &bundle, table),
        None => Ok(()),
    }
}

/// `zkfabric export snarkjs`: verifies the bundle as `verify` does, then writes each proof
/// with its verifying key and public signals in snarkjs' formats under `out`.
pub fn export_snarkjs(path: &Path, out: &Path, args: &VerifyArgs) -> Result<()> {
    let bundle = bundle::read(path)?;
    let report =
        verified(&bundle, args, None).with_context(|| format!("{}: REJECTED", path.display()))?;
    let folders = crate::verifier::snarkjs::write(&report.statements, out)?;
    for (folder, statement) in folders.iter().zip(&report.statements) {
        println!("{}  {}", folder.display(), statement.shape);
    }
    println!(
        "{} verified proofs written; check one with: snarkjs groth16 verify \
         DIR/verification_key.json DIR/public.json DIR/proof.json",
        folders.len()
    );
    Ok(())
}

/// The report on `bundle` once every check holds: the verifier's, then (with the SQL
/// planner) that the bundle's SQL text, and the researcher's when given, mean the query
/// the proofs are about. A `remote` node gives its key and the manifests after the
/// bundle's epoch.
pub fn verified(bundle: &Bundle, args: &VerifyArgs, remote: Option<&Remote>) -> Result<Report> {
    let reported_key = remote
        .map(|r| block_on(r.node_key()))
        .transpose()?
        .transpose()?;
    let mut trust = args.trust(reported_key, || match remote {
        Some(r) => Ok(block_on(r.manifests_after(&bundle.dataset, bundle.epoch))??),
        None => Ok(Vec::new()),
    })?;
    // A node's answer is checked against the ledger it publishes: its charge must be there.
    if let (Some(r), None) = (remote, &trust.ledgers) {
        trust.ledgers = Some(vec![block_on(r.ledger(&bundle.dataset))??]);
    }
    let report = verify::verify(bundle, &trust)?;
    if sql::canonical(&bundle.sql)? != bundle.sql {
        bail!(
            "sql: the bundle's SQL text is not in canonical form (comments or formatting \
             beside the proven query could carry anything)"
        );
    }
    // The SQL text must mean the query the proofs are about, and so must the researcher's.
    let texts = [
        Some(("the bundle's SQL", &bundle.sql)),
        args.expected_sql.as_ref().map(|s| ("--sql", s)),
    ];
    for (what, text) in texts.into_iter().flatten() {
        let relowered = block_on(sql::lower_without_data(
            &report.schema,
            text,
            &report.query.purpose,
        ))?
        .map_err(|e| anyhow!("sql: {what}: {e}"))?;
        if relowered != report.query {
            bail!("sql: {what} does not mean the query the proofs are about");
        }
    }
    Ok(report)
}

/// The plan each query of `sql` is proven with (its path and circuits), over the local
/// store.
pub fn planned(
    data_dir: &Path,
    config: &Config,
    sql: &[String],
    purpose: Option<String>,
    cost: &CostArgs,
) -> Result<Vec<prove::Plan>> {
    let store = open(data_dir)?;
    let keys = KeyCache::new(data_dir);
    let proofs = ProofCache::open(data_dir, config.query.proof_cache_entries)?;
    sql.iter()
        .map(|text| {
            let request = Request::new(config, text.clone(), purpose.clone(), None, true)
                .with_privacy(cost.epsilon, cost.delta, None)?;
            check_purpose(&request)?;
            let ctx = datafusion::prelude::SessionContext::new();
            let (plan, _) = block_on(prove::plan(&ctx, &store, &keys, &proofs, &request))??;
            Ok(plan)
        })
        .collect()
}

/// `zkfabric setup`: makes the keys of the queries' shapes and prints fingerprints.
pub fn setup(
    data_dir: &Path,
    config: &Config,
    sql: &[String],
    purpose: Option<String>,
    cost: &CostArgs,
) -> Result<()> {
    let keys = KeyCache::new(data_dir).with_mode(config.keys.mode);
    let origin = match keys.mode() {
        KeyMode::Development => "development keys (single-party setup)",
        KeyMode::Ceremony => "ceremony keys",
    };
    println!("# {origin}: {}", data_dir.display());
    for plan in planned(data_dir, config, sql, purpose, cost)? {
        for fingerprint in prove::setup_keys(&keys, &plan)? {
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
    let store = crate::clients::demo::prepare(&dir, rows, 2026)?;
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
    for (n, q) in crate::clients::demo::QUERIES.iter().enumerate() {
        println!(
            "\n{}. {} (purpose {})\n   {}\n",
            n + 2,
            q.question,
            q.purpose,
            q.sql
        );
        let request = Request::new(&config, q.sql.into(), Some(q.purpose.into()), None, true)
            .with_privacy(None, None, Some(fresh_nonce()))?;
        let out = dir.join(format!("{}.zkf", q.name));
        let chart = out.with_extension("svg");
        query(
            &data_dir,
            &config,
            &request,
            &out,
            false,
            &TableArgs::default(),
            Some(&chart),
        )?;
        // The demo trusts the keys it made itself: pinned by fingerprint and shape.
        let pins = dir.join("trusted-keys");
        let lines: String = KeyCache::new(&data_dir)
            .infos()?
            .iter()
            .map(|k| format!("{} {}\n", k.fingerprint, k.shape))
            .collect();
        files::write_bytes_atomically(&pins, lines.as_bytes())?;
        // The dataset's privacy ledger as the node publishes it (`zkfabric ledger --json`).
        let ledger = dir.join("ledger.json");
        let published = open(&data_dir)?
            .ledger("consumption")?
            .to_proto("consumption", config.privacy.budget());
        files::write_bytes_atomically(&ledger, &serde_json::to_vec_pretty(&[published])?)?;
        println!(
            "\n   verifying {} offline, with the keys pinned in {} (made by this demo's \
             single-party setup: development only, whoever runs it could forge proofs), the \
             question asked and the privacy ledger ({}):",
            out.display(),
            pins.display(),
            ledger.display()
        );
        let args = VerifyArgs {
            trusted_keys: Some(pins),
            node_key: Some(manifest.node_key.clone()),
            expected_sql: Some(q.sql.into()),
            expected_purpose: Some(q.purpose.into()),
            expected_min_group_size: Some(config.query.min_group_size),
            expected_epoch: Some(manifest.manifest.epoch),
            expected_epsilon: Some(config.privacy.epsilon),
            expected_delta: Some(config.privacy.delta),
            manifest_head: Some(manifest.manifest.hash()),
            ledger: Some(ledger),
            ..VerifyArgs::default()
        };
        verify(&out, &args, &TableArgs::default(), None, None)?;
    }
    if temporary.path() == dir {
        println!("\n(the demo's directory is removed; pass --keep DIR to keep it)");
    }
    Ok(())
}
