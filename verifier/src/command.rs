//! The verifier's command line: the flags that say what to trust and what was asked, the
//! [`Trust`] they pin, and the printed report. The small `zkfabric-verify` binary and
//! `zkfabric verify` share all of it; the full CLI adds the SQL planner's check that the
//! bundle's SQL text (and the researcher's `--sql`) means the query the proofs are about.

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
};

use anyhow::{anyhow, bail, Context, Result};
use ed25519_dalek::VerifyingKey as NodeKey;

use crate::{
    bundle::Bundle,
    manifest::{parse_ed25519_key, Backing, SignedManifest},
    privacy::Cost,
    query::ProvableQuery,
    schema::Schema,
    table::{self, Format},
    verify::{Expected, KeyPins, ManifestHead, PinnedKey, Report, Trust},
};

/// How a verifier is told what to trust and what was asked.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct VerifyArgs {
    /// Trusted verifying keys: a file, or a directory of files, with one `sha256:...
    /// SHAPE` line per key (as `zkfabric setup` and `zkfabric keys import` print them). A
    /// key verifies only statements of the shape it is listed with.
    #[arg(long)]
    pub trusted_keys: Option<PathBuf>,
    /// Verify with the bundle's own verifying keys when none are pinned. Whoever made
    /// them can prove anything: the answer is then UNVERIFIED, and the report says so
    /// first.
    #[arg(long)]
    pub allow_unpinned_keys: bool,
    /// The node's Ed25519 public key (hex) the manifest must be signed with.
    #[arg(long)]
    pub node_key: Option<String>,
    /// The SQL asked: the bundle must answer exactly this query (needs the SQL planner:
    /// `zkfabric verify` checks it, `zkfabric-verify` refuses it).
    #[arg(long = "sql")]
    pub expected_sql: Option<String>,
    /// The consent purpose asked for.
    #[arg(long = "purpose")]
    pub expected_purpose: Option<String>,
    /// The minimum group size (k) accepted: the bundle's must be this.
    #[arg(long = "min-group-size")]
    pub expected_min_group_size: Option<u64>,
    /// The epoch asked about.
    #[arg(long = "epoch")]
    pub expected_epoch: Option<u64>,
    /// The epsilon the researcher asked to spend: a dp bundle must spend exactly this
    /// (with --delta).
    #[arg(long = "epsilon", requires = "expected_delta")]
    pub expected_epsilon: Option<f64>,
    /// The delta the researcher asked to spend (with --epsilon).
    #[arg(long = "delta", requires = "expected_epsilon")]
    pub expected_delta: Option<f64>,
    /// The latest manifest hash of the bundle's dataset you know of (`zkfabric catalog
    /// show` prints it): the bundle's epoch must lie on the chain that ends there, and the
    /// report says how many epochs behind it is (rows withdrawn since still count in it).
    #[arg(long)]
    pub manifest_head: Option<String>,
    /// The manifests after the bundle's epoch up to --manifest-head, as `zkfabric catalog
    /// chain` writes them, to check offline; with `zkfabric verify --remote` they are
    /// fetched from the node.
    #[arg(long, requires = "manifest_head")]
    pub manifest_chain: Option<PathBuf>,
    /// The privacy ledger as `zkfabric ledger --json` writes it: a differentially
    /// private answer's charge must stand in it at its position, and its chain must check.
    #[arg(long)]
    pub ledger: Option<PathBuf>,
}

impl VerifyArgs {
    /// The trust these flags pin. `reported_key` is the key a node reached over the
    /// network reports (it must equal `--node-key` when both are given); `fetch_later`
    /// fetches the manifests after the bundle's epoch from that node, and is called only
    /// when `--manifest-head` is given without `--manifest-chain`.
    pub fn trust(
        &self,
        reported_key: Option<NodeKey>,
        fetch_later: impl FnOnce() -> Result<Vec<SignedManifest>>,
    ) -> Result<Trust> {
        let head = match &self.manifest_head {
            None => None,
            Some(hash) => {
                let later = match &self.manifest_chain {
                    Some(file) => manifest_chain(file)?,
                    None => fetch_later()?,
                };
                Some(ManifestHead {
                    hash: hash.clone(),
                    later,
                })
            }
        };
        let given = self
            .node_key
            .as_deref()
            .map(|hex_key| parse_ed25519_key(hex_key).map_err(|e| anyhow!("--node-key: {e}")))
            .transpose()?;
        let node_key = match (given, reported_key) {
            (Some(a), Some(b)) if a != b => {
                bail!("--node-key differs from the key the --remote node reports")
            }
            (a, b) => a.or(b),
        };
        let keys = match (&self.trusted_keys, self.allow_unpinned_keys) {
            (Some(file), _) => KeyPins::Pinned(trusted_keys(file)?),
            (None, true) => KeyPins::Unpinned,
            (None, false) => bail!(
                "keys: no verifying keys are pinned. Pass --trusted-keys FILE (the `sha256:... \
                 SHAPE` lines `zkfabric setup` or `keys import` printed for keys you trust), \
                 or --allow-unpinned-keys to check the proofs against the bundle's own keys, \
                 which proves nothing about the answer"
            ),
        };
        let ledgers = match &self.ledger {
            None => None,
            Some(file) => {
                let text =
                    std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
                Some(serde_json::from_slice(&text).with_context(|| {
                    format!(
                        "{}: not a ledger (`zkfabric ledger --json`)",
                        file.display()
                    )
                })?)
            }
        };
        Ok(Trust {
            node_key,
            keys,
            ledgers,
            expected: Expected {
                epoch: self.expected_epoch,
                purpose: self.expected_purpose.clone(),
                min_group_size: self.expected_min_group_size,
                cost: match (self.expected_epsilon, self.expected_delta) {
                    (Some(epsilon), Some(delta)) => Some(
                        Cost::new(epsilon, delta).map_err(|e| anyhow!("--epsilon/--delta: {e}"))?,
                    ),
                    _ => None,
                },
                head,
            },
        })
    }
}

/// Reads a manifest chain file (`zkfabric catalog chain`).
fn manifest_chain(file: &Path) -> Result<Vec<SignedManifest>> {
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    serde_json::from_slice(&text).with_context(|| {
        format!(
            "{}: not a manifest chain (`zkfabric catalog chain`)",
            file.display()
        )
    })
}

/// Reads a trusted-keys file, or every file of a directory.
fn trusted_keys(path: &Path) -> Result<HashSet<PinnedKey>> {
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
        out.extend(
            PinnedKey::parse_all(&text, &file.display().to_string()).map_err(|e| anyhow!(e))?,
        );
    }
    if out.is_empty() {
        bail!("--trusted-keys {}: no keys listed", path.display());
    }
    Ok(out)
}

/// What was established about the bundle's SQL text.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlCheck {
    /// The SQL planner lowered the bundle's text (and `--sql`, when given) to the query
    /// the proofs are about.
    Replanned,
    /// No planner ran: the proofs are about the canonical query the report prints in
    /// words, whatever the SQL text says.
    NotReplanned,
}

/// Prints the report on a verified bundle: what was checked, against what, and the
/// answer, where `table` says (the report goes to standard error when standard output
/// carries a CSV or JSON answer alone). Its first line is UNVERIFIED when no keys were
/// pinned.
pub fn print_report(
    report: &Report,
    bundle: &Bundle,
    secs: f64,
    args: &VerifyArgs,
    sql: SqlCheck,
    table: &TableArgs,
) -> Result<()> {
    macro_rules! say {
        ($($arg:tt)*) => { table.say(&format!($($arg)*)) };
    }
    if !report.keys_pinned {
        say!(
            "UNVERIFIED   keys not pinned (--allow-unpinned-keys): the proofs were checked \
             against the bundle's own keys, and whoever made those can prove any answer"
        );
    }
    say!("verified     {} epoch {}", report.dataset, report.epoch);
    match &report.noise {
        Some((plan, charge)) => say!(
            "privacy      dp: every number is noisy (epsilon {}, delta {:e}, Binomial({}, 1/2) \
             noise per value, proven drawn from the committed secret and the nonce); charged \
             as ledger entry {}, spent ({}, {:e}) of the budget ({}, {:e})",
            plan.cost.epsilon,
            plan.cost.delta,
            plan.coins,
            charge.seq,
            charge.spent_epsilon,
            charge.spent_delta,
            charge.budget_epsilon,
            charge.budget_delta
        ),
        None => say!(
            "privacy      {}: exact answers, groups under k = {} rows suppressed",
            report.mode,
            report.min_group_size
        ),
    }
    match sql {
        SqlCheck::Replanned => say!("sql          {}", bundle.sql),
        SqlCheck::NotReplanned => {
            say!(
                "sql          {} (not re-planned: this verifier has no SQL planner)",
                bundle.sql
            );
            say!(
                "query        the proofs are about {}",
                report.query.in_words(&report.schema)
            );
        }
    }
    say!(
        "node key     {} (manifest signature valid)",
        report.node_key
    );
    match &report.rollup {
        None => say!(
            "coverage     all {} chunks of the epoch proven, each under the index and row \
             count the manifest lists",
            report.chunks
        ),
        Some((name, sealings)) => say!(
            "coverage     from roll-up {name}: all {} cell chunks of its {sealings} sealing(s) \
             proven, and each sealing proven to hold exactly its chunks' rows (every chunk \
             of the epoch, as the manifest lists them)",
            report.chunks
        ),
    }
    say!(
        "backing      {}",
        backing_in_words(&report.backing, &report.schema)
    );
    say!(
        "proofs       {} verified in {:.1} ms",
        report.proofs,
        secs * 1000.0
    );
    if let Some(file) = args.trusted_keys.as_ref().filter(|_| report.keys_pinned) {
        say!(
            "keys         pinned by {}: each proof's key is listed there for its shape",
            file.display()
        );
    }
    let checked = |given: bool| {
        if given {
            "as asked"
        } else {
            "not checked: pass it to compare"
        }
    };
    if report.noise.is_some() {
        match report.charge_in_ledger {
            true => say!(
                "ledger       the charge stands at its position in the ledger you gave, whose \
                 chain checks"
            ),
            false => say!(
                "ledger       position not checked: pass --ledger (`zkfabric ledger --json`) to \
                 refuse an answer whose cost the node left out of its ledger"
            ),
        }
    }
    match report.epochs_behind {
        Some(0) => say!("epoch        the latest: its manifest is the head you pinned"),
        Some(n) => say!(
            "epoch        {n} epoch(s) behind the head you pinned: rows withdrawn since may \
             still count in this answer"
        ),
        None => say!(
            "epoch        freshness not checked: pass --manifest-head (`zkfabric catalog \
             show` prints the latest manifest's hash) to refuse a stale or forked epoch"
        ),
    }
    let sql_asked = match sql {
        SqlCheck::Replanned => checked(args.expected_sql.is_some()),
        SqlCheck::NotReplanned => {
            "not checked: compare the query above with what you asked, or run `zkfabric \
             verify --sql`"
        }
    };
    let protection = match &report.noise {
        Some((plan, _)) => format!(
            "epsilon {} and delta {:e} {}",
            plan.cost.epsilon,
            plan.cost.delta,
            checked(args.expected_epsilon.is_some())
        ),
        None => format!(
            "k = {} {}",
            report.min_group_size,
            checked(args.expected_min_group_size.is_some())
        ),
    };
    say!(
        "asked        sql {}; purpose {} {}; {protection}; epoch {}",
        sql_asked,
        report.query.purpose,
        checked(args.expected_purpose.is_some()),
        checked(args.expected_epoch.is_some()),
    );
    say!("");
    table.write_answer(&report.schema, &report.query, bundle)
}

/// Who vouches for an epoch's rows, in words: credential-backed rows (with the values
/// their credentials back, from the schema), organisation-signed rows, and the rest.
pub fn backing_in_words(backing: &Backing, schema: &Schema) -> String {
    let percent = |n: u64| 100.0 * n as f64 / backing.rows.max(1) as f64;
    let bound = schema.attested().bound;
    let proven = match bound.any() {
        true => format!("their {} proven against it", bound.in_words()),
        false => "the donor's eligibility proven; no column is credential-backed".into(),
    };
    format!(
        "of the epoch's {} rows, {} ({:.1}%) donated with a credential ({proven}), {} \
         ({:.1}%) signed by an organisation, {} ({:.1}%) ingested by the node's operator, as \
         its signed manifest states",
        backing.rows,
        backing.credential,
        percent(backing.credential),
        backing.organisation,
        percent(backing.organisation),
        backing.operator(),
        percent(backing.operator())
    )
}

/// Prints the answer as a table: the query's output columns after its HAVING, ORDER BY
/// and LIMIT, numbers in each measure's unit (see [`crate::table`]).
pub fn print_answer(schema: &Schema, query: &ProvableQuery, bundle: &Bundle) {
    print!("{}", table::render(schema, query, bundle, Format::Table));
}

/// Where the answer goes and in what form: `--format` and `--out-table`, for `query` and
/// `verify` alike.
#[derive(Clone, Debug, Default, clap::Args)]
pub struct TableArgs {
    /// The answer as an aligned table, CSV or JSON: the rows SQL shows, columns named as
    /// the SQL names them, numbers in each measure's unit, suppressed cells empty (the
    /// bundle keeps the exact stored integers). With csv or json, standard output
    /// carries the answer alone, and the rest of the report goes to standard error.
    #[arg(long, value_enum, default_value_t)]
    pub format: Format,
    /// Write the answer (in --format) to this file instead, and print the table.
    #[arg(long)]
    pub out_table: Option<PathBuf>,
}

impl TableArgs {
    /// Whether standard output carries a CSV or JSON answer, and nothing else.
    pub fn answer_on_stdout(&self) -> bool {
        self.format != Format::Table && self.out_table.is_none()
    }

    /// Prints a line of the report: to standard output, or to standard error when
    /// standard output carries the answer alone.
    pub fn say(&self, line: &str) {
        match self.answer_on_stdout() {
            true => eprintln!("{line}"),
            false => println!("{line}"),
        }
    }

    /// Writes the answer: to `--out-table` (written whole, and the table printed too),
    /// or to standard output in `--format`.
    pub fn write_answer(
        &self,
        schema: &Schema,
        query: &ProvableQuery,
        bundle: &Bundle,
    ) -> Result<()> {
        let answer = table::render(schema, query, bundle, self.format);
        match &self.out_table {
            Some(path) => {
                crate::files::write_bytes_atomically(path, answer.as_bytes())
                    .with_context(|| format!("writing {}", path.display()))?;
                print_answer(schema, query, bundle);
                self.say(&format!(
                    "table        {} ({:?})",
                    path.display(),
                    self.format
                ));
            }
            None => print!("{answer}"),
        }
        Ok(())
    }
}

/// An error for the command line: its chain of causes, each once (many errors already
/// print their source).
pub fn error_message(error: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
    }
    message
}
