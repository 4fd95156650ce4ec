//! Helpers the integration tests share: running the `zkfabric` binary, and a node it
//! serves.
#![allow(dead_code)]

use std::{
    ffi::OsStr,
    io::{BufRead, BufReader},
    path::Path,
    process::{Child, ChildStdout, Command, Output, Stdio},
};

use zkfabric::{
    clients::remote::Remote,
    node::{
        keys::KeyCache,
        proofs::ProofCache,
        prove::{self, ProveError, Request},
        store::Store,
    },
    shared::records,
    verifier::{bundle::Bundle, schema::Schema},
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

/// A `zkfabric serve` process on a free loopback port.
pub struct Server {
    child: Child,
    /// Its address, `http://127.0.0.1:PORT` (`https://` when it serves TLS).
    pub url: String,
    stdout: BufReader<ChildStdout>,
}

impl Server {
    /// Starts a node with `config`, and `failpoints` set (see `fabric/node/store.rs`).
    pub fn start(config: &Path, failpoints: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_zkfabric"))
            .arg("--config")
            .arg(config)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .env("FAILPOINTS", failpoints)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://") || w.starts_with("https://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Self { child, url, stdout }
    }

    /// A client on the caller's runtime (a channel's connection lives there).
    pub fn client(&self, rt: &tokio::runtime::Runtime, token: Option<&str>) -> Remote {
        rt.block_on(Remote::connect(&self.url, token.map(String::from)))
            .unwrap()
    }

    /// Sends SIGTERM and waits: the exit status and what the node printed.
    pub fn terminate(mut self) -> (std::process::ExitStatus, String) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success());
        let status = self.child.wait().unwrap();
        let mut rest = String::new();
        std::io::Read::read_to_string(&mut self.stdout, &mut rest).unwrap();
        (status, rest)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A multi-threaded runtime for a test's clients.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// The code and message of a call that must fail.
pub fn status<T: std::fmt::Debug>(
    result: Result<tonic::Response<T>, tonic::Status>,
) -> (tonic::Code, String) {
    let s = result.expect_err("expected an error status");
    (s.code(), s.message().to_string())
}

/// A node's store and caches in a temporary directory, for tests that prove in-process.
pub struct ProvingNode {
    /// The temporary directory (`data/` holds the store).
    pub dir: tempfile::TempDir,
    pub store: Store,
    pub keys: KeyCache,
    pub proofs: ProofCache,
}

impl ProvingNode {
    /// A node holding `columns` of `schema`'s dataset, sealed in one epoch.
    pub fn new(schema: &Schema, columns: &[Vec<u64>]) -> Self {
        let dir = tempfile::TempDir::new().unwrap();
        let store = sealed_store(dir.path(), schema, columns);
        let data = dir.path().join("data");
        Self {
            keys: KeyCache::new(&data),
            proofs: ProofCache::open(&data, 64).unwrap(),
            dir,
            store,
        }
    }

    /// Answers `request` with proofs (keys made as needed), as a node would.
    pub fn answer(&self, request: &Request) -> Result<Bundle, ProveError> {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(prove::answer(
                &self.store,
                &self.keys,
                &self.proofs,
                request,
                |_| {},
            ))
    }
}

/// A store under `dir/data` holding `columns` of `schema`'s dataset: written to a
/// Parquet file, ingested and sealed in one epoch.
fn sealed_store(dir: &Path, schema: &Schema, columns: &[Vec<u64>]) -> Store {
    let rows = columns[0].len();
    let file = dir.join("rows.parquet");
    records::write_file(
        &file,
        records::arrow_schema(schema),
        [records::to_batch(schema, columns, 0..rows)],
    )
    .unwrap();
    let mut store = Store::open(&dir.join("data")).unwrap();
    store.register(schema).unwrap();
    store.ingest(&schema.name, &[file], false).unwrap();
    store.seal(&schema.name).unwrap();
    store
}

/// `base` with its roll-ups replaced by one: `name`, keyed by `dimensions` (`"day(time)"` for
/// buckets), summing `measures`.
pub fn with_rollup(base: &Schema, name: &str, dimensions: &[&str], measures: &[&str]) -> Schema {
    let list = |items: &[&str]| {
        items
            .iter()
            .map(|i| format!("{i:?}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    // In place of the schema's own roll-ups: every `[[rollups]]` table left out.
    let mut own = String::new();
    let mut in_rollup = false;
    for line in base.source.lines() {
        if line.trim_start().starts_with('[') {
            in_rollup = line.trim() == "[[rollups]]";
        }
        if !in_rollup {
            own.push_str(line);
            own.push('\n');
        }
    }
    let text = format!(
        "{own}\n[[rollups]]\nname = {name:?}\ndimensions = [{}]\nmeasures = [{}]\n",
        list(dimensions),
        list(measures)
    );
    Schema::parse(&format!("{name}.toml"), &text).unwrap()
}
