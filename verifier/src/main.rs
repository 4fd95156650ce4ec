//! `zkfabric-verify`: checks an answer bundle offline, for auditors who need nothing else
//! of zkfabric. Same flags and report as `zkfabric verify`, without the SQL planner: the
//! report prints, in words, the canonical query the proofs are about, and says that the
//! bundle's SQL text was not re-planned.

use std::{path::PathBuf, process::ExitCode, time::Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use zkfabric_verifier::{
    bundle,
    command::{error_message, print_report, SqlCheck, TableArgs, VerifyArgs},
    verify::verify,
};

/// Verify a zkfabric answer bundle offline: exits 0 only if every check holds.
#[derive(Parser)]
#[command(name = "zkfabric-verify", version)]
struct Cli {
    /// The bundle: a `.zkf` file (protobuf) or its `.zkf.json` form.
    bundle: PathBuf,
    #[command(flatten)]
    args: VerifyArgs,
    #[command(flatten)]
    table: TableArgs,
}

fn main() -> ExitCode {
    match run(&Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_message(&e));
            ExitCode::FAILURE
        }
    }
}

fn run(cli: &Cli) -> Result<()> {
    if cli.args.expected_sql.is_some() {
        bail!(
            "--sql: comparing SQL with the proven query needs the SQL planner, which \
             zkfabric-verify leaves out. Compare the query the report prints in words with \
             what you asked, or run `zkfabric verify --sql`"
        );
    }
    let started = Instant::now();
    let bundle = bundle::read(&cli.bundle)?;
    let report = cli
        .args
        .trust(None, || Ok(Vec::new()))
        .and_then(|trust| Ok(verify(&bundle, &trust)?))
        .with_context(|| format!("{}: REJECTED", cli.bundle.display()))?;
    print_report(
        &report,
        &bundle,
        started.elapsed().as_secs_f64(),
        &cli.args,
        SqlCheck::NotReplanned,
        &cli.table,
    )
}
