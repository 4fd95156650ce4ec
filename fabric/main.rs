//! The `zkfabric` command line (see [`zkfabric::clients::cli`]).

fn main() -> std::process::ExitCode {
    // Crash tests set FAILPOINTS to stop the process at a chosen step (see `store`). Only
    // test builds compile failpoints in (see Cargo.toml); elsewhere FAILPOINTS is ignored.
    let _failpoints = fail::has_failpoints().then(fail::FailScenario::setup);
    zkfabric::clients::cli::run()
}
