//! The `zkfabric` command line.

mod cli;

fn main() -> std::process::ExitCode {
    // Crash tests set FAILPOINTS to stop the process at a chosen step (see `store`).
    let _failpoints = fail::FailScenario::setup();
    cli::run()
}
