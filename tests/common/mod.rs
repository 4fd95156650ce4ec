//! Helpers the integration tests share: running the `zkfabric` binary.

use std::{
    ffi::OsStr,
    path::Path,
    process::{Command, Output},
};

/// Runs `zkfabric` with a global `option` naming `path`, then `args`.
pub fn zkfabric_with(option: &str, path: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_zkfabric"))
        .arg(option)
        .arg(path)
        .args(args.iter().map(OsStr::new))
        .output()
        .unwrap()
}

/// The command's stdout, after asserting it succeeded (showing both streams if not).
pub fn ok(out: Output) -> String {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "stdout: {text}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}
