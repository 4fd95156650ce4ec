//! The node's configuration file (TOML). Every field has a default, so a node runs
//! without one.
//!
//! ```toml
//! [store]
//! chunk_rows = 1024                    # rows per chunk of built-in datasets (power of two)
//!
//! [query]
//! default_purpose = "energy-research"  # used when a query names none
//! min_group_size = 10                  # k: smaller groups are suppressed
//! in_list_items = 64                   # the longest IN list (at most 64)
//! max_groups = 4096                    # G: most group slots (tuples of GROUP BY codes)
//! combine_inputs = 8                   # K: partials one combine proof opens
//! proof_cache_entries = 4096           # chunk proofs kept for reuse (0: none)
//!
//! [rollups]
//! prove_at_seal = false                # prove new sealings when `zkfabric seal`/`ingest`
//!                                      # seal (else `seal --prove-rollups` or a first
//!                                      # answer asked with `--path rollup` proves them)
//!
//! [privacy]                           # differential privacy of dp datasets' answers
//! epsilon = 1.0                        # what a query spends unless it says (--epsilon)
//! delta = 1e-7                         # likewise (--delta)
//! budget_epsilon = 10.0                # each dataset's total; then queries are refused
//! budget_delta = 1e-5
//! threshold_only = []                  # built-in datasets answered exactly, with k (data
//!                                      # about no one); their schema then says so
//! max_root_coins = 131072              # most noise coins one answer's root proof draws
//!                                      # (about 80 KB of memory each to set up and prove)
//!
//! [server]
//! listen = "127.0.0.1:50051"
//! data_dir = "zkfabric-data"           # --data-dir and ZKFABRIC_DATA_DIR take precedence
//! max_message_bytes = 16777216         # largest request or response
//! request_timeout_secs = 30            # longest wait for the store (admin calls wait on)
//! proving_workers = 1                  # queries proven at once (each uses every core)
//! queue_capacity = 8                   # queries waiting; more get RESOURCE_EXHAUSTED
//! queries_per_token = 2                # queued or proving at once for one token
//! max_concurrent_requests = 64         # calls in progress per connection
//! donations_per_minute = 30            # per client address
//! setup_missing_keys = false           # make development keys for researchers' queries
//!
//! [server.tls]                         # serve gRPC over TLS (required beyond loopback)
//! cert = "node.crt"                    # PEM certificate chain
//! key = "node.key.pem"                 # PEM private key
//! client_ca = "clients.crt"            # optional: require client certificates (mTLS)
//!
//! [keys]
//! mode = "development"                 # "ceremony": prove only with imported ceremony keys
//!
//! [[server.tokens]]                    # bearer tokens, stored hashed
//! name = "alice"
//! role = "researcher"                  # researcher or admin
//! sha256 = "..."                       # `zkfabric token --role researcher` makes one
//!
//! [donors.consumption]                 # donations to `consumption` need a credential
//! issuers = ["..."]                    # `zkfabric credential keygen --issuer` prints one
//! organisations = ["..."]              # `credential keygen --organisation`: bulk donors
//! districts = [4, 6]                   # allowed residence district codes (up to 16)
//! min_age = 18
//! donations_per_donor = 1
//! ```

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::{
    node::{donor::DonorPolicy, keys::KeyMode},
    verifier::{
        privacy::{Cost, MAX_ROOT_COINS},
        query::{Limits, MAX_GROUPS, MAX_IN_ITEMS},
        schema::Schema,
    },
};

/// The configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How records are stored.
    #[serde(default)]
    pub store: StoreConfig,
    /// How queries are answered.
    #[serde(default)]
    pub query: QueryConfig,
    /// How `zkfabric serve` serves.
    #[serde(default)]
    pub server: ServerConfig,
    /// Per dataset, what donations must prove (`[donors.<dataset>]`).
    #[serde(default)]
    pub donors: BTreeMap<String, DonorPolicy>,
    /// Which proving keys the node uses.
    #[serde(default)]
    pub keys: KeysConfig,
    /// Differential privacy: default costs and budgets.
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// When roll-ups' sealings are proven.
    #[serde(default)]
    pub rollups: RollupsConfig,
}

/// The `[rollups]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RollupsConfig {
    /// Whether the command line's seals (`zkfabric seal`, and `ingest` when it seals)
    /// prove the sealings they make. Off by default: proving a sealing costs several
    /// times an answer from its rows (benches/README.md), which a node pays once so
    /// that answers cost cells, but which a node that never asks roll-up-shaped
    /// questions need not pay. Until its sealings are proven, `--path auto` answers from
    /// the rows.
    pub prove_at_seal: bool,
}

/// The `[privacy]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PrivacyConfig {
    /// Epsilon a query spends unless it names one.
    pub epsilon: f64,
    /// Delta a query spends unless it names one.
    pub delta: f64,
    /// Each dp dataset's total epsilon: a query that would exceed it is refused.
    pub budget_epsilon: f64,
    /// Each dp dataset's total delta.
    pub budget_delta: f64,
    /// Built-in datasets this node answers exactly (threshold-only), for data about no
    /// one; their registered schema states it.
    pub threshold_only: Vec<String>,
    /// Most noise coins one answer's root proof may draw (groups x values x coins per
    /// value): a question beyond it is refused before any key is made, rather than
    /// exhausting the node's memory (setup and proving take some 80 KB a coin). At most
    /// [`MAX_ROOT_COINS`].
    pub max_root_coins: u64,
}

impl Default for PrivacyConfig {
    fn default() -> Self {
        Self {
            epsilon: 1.0,
            delta: 1e-7,
            budget_epsilon: 10.0,
            budget_delta: 1e-5,
            threshold_only: Vec::new(),
            max_root_coins: 1 << 17,
        }
    }
}

impl PrivacyConfig {
    /// The default cost of a query.
    pub fn default_cost(&self) -> Result<Cost, String> {
        Cost::new(self.epsilon, self.delta).map_err(|e| format!("[privacy]: {e}"))
    }

    /// Each dataset's budget.
    pub fn budget(&self) -> Cost {
        Cost {
            epsilon: self.budget_epsilon,
            delta: self.budget_delta,
        }
    }
}

/// The `[keys]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KeysConfig {
    /// `"development"` (default) or `"ceremony"`: ceremony keys only, for production.
    pub mode: KeyMode,
}

/// The `[store]` table.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// Rows per chunk of built-in datasets registered by this node (their schema's own
    /// value when absent).
    pub chunk_rows: Option<usize>,
}

/// A bearer token's role.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs and explains queries.
    Researcher,
    /// Everything a researcher does, and seals datasets and makes keys.
    Admin,
}

/// A configured bearer token: only its hash is kept.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Token {
    /// Who holds it (for logs).
    pub name: String,
    /// What it may do.
    pub role: Role,
    /// Hex SHA-256 of the token.
    pub sha256: String,
}

/// The `[server]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Data directory, when the command line and environment name none.
    pub data_dir: Option<PathBuf>,
    /// Largest request or response message.
    pub max_message_bytes: usize,
    /// Longest a call waits for the store before DEADLINE_EXCEEDED (administrators'
    /// calls wait as long as it takes).
    pub request_timeout_secs: u64,
    /// Queries proven at once.
    pub proving_workers: usize,
    /// Queries waiting for a worker beyond those being proven.
    pub queue_capacity: usize,
    /// Queries one token may have queued or proving at once (Flight SQL statements run
    /// to their end when their caller leaves, so without it one researcher could fill
    /// the queue).
    pub queries_per_token: usize,
    /// Calls in progress per connection.
    pub max_concurrent_requests: usize,
    /// Donor calls per client address per minute.
    pub donations_per_minute: u32,
    /// Whether researchers' queries may make missing keys by single-party setup.
    pub setup_missing_keys: bool,
    /// Bearer tokens of researchers and administrators.
    pub tokens: Vec<Token>,
    /// TLS for the gRPC services; without it the node serves plaintext, which it does
    /// only on a loopback address unless told `--insecure`.
    pub tls: Option<TlsConfig>,
}

/// The `[server.tls]` table: PEM files (paths relative to the working directory).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The node's certificate chain.
    pub cert: PathBuf,
    /// The certificate's private key.
    pub key: PathBuf,
    /// Certificate authorities whose client certificates the node requires (mutual
    /// TLS); without it, clients are not asked for one.
    pub client_ca: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 50051)),
            data_dir: None,
            max_message_bytes: 16 << 20,
            request_timeout_secs: 30,
            proving_workers: 1,
            queue_capacity: 8,
            queries_per_token: 2,
            max_concurrent_requests: 64,
            donations_per_minute: 30,
            setup_missing_keys: false,
            tokens: Vec::new(),
            tls: None,
        }
    }
}

/// The `[query]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Purpose of queries that name none.
    pub default_purpose: Option<String>,
    /// Minimum group size k.
    pub min_group_size: u64,
    /// The longest IN list.
    pub in_list_items: usize,
    /// Most group slots G.
    pub max_groups: usize,
    /// Combine fan-in K.
    pub combine_inputs: usize,
    /// Chunk proofs kept for reuse (`DATA_DIR/proofs.sqlite`); 0 turns the cache off,
    /// and the keeping of roll-up sealings' proofs with it (so auto never reads a
    /// roll-up).
    pub proof_cache_entries: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            default_purpose: None,
            min_group_size: limits.min_group_size,
            in_list_items: limits.in_list,
            max_groups: limits.max_groups,
            combine_inputs: limits.combine_inputs,
            proof_cache_entries: 4096,
        }
    }
}

/// Why the configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{file}: {source}", file = file.display())]
    Io {
        file: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid configuration; the message names line and field.
    #[error("{file}: {message}", file = file.display())]
    Invalid {
        file: std::path::PathBuf,
        message: String,
    },
}

impl Config {
    /// Loads `path`, or the defaults when `None`.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Io {
            file: path.to_path_buf(),
            source,
        })?;
        let config: Self = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            file: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.check().map_err(|message| ConfigError::Invalid {
            file: path.to_path_buf(),
            message,
        })?;
        Ok(config)
    }

    fn check(&self) -> Result<(), String> {
        let q = &self.query;
        if q.combine_inputs < 2 || q.in_list_items == 0 || q.max_groups == 0 {
            return Err(
                "[query]: combine_inputs must be at least 2, in_list_items and \
                        max_groups at least 1"
                    .into(),
            );
        }
        if q.in_list_items > MAX_IN_ITEMS {
            return Err(format!(
                "[query]: in_list_items = {} is above the longest IN list a query may have \
                 ({MAX_IN_ITEMS})",
                q.in_list_items
            ));
        }
        if q.max_groups > MAX_GROUPS {
            return Err(format!(
                "[query]: max_groups = {} is above the most any query has ({MAX_GROUPS})",
                q.max_groups
            ));
        }
        if q.min_group_size == 0 {
            return Err(
                "[query]: min_group_size (k) must be at least 1: with k = 0 an empty \
                        group would be released, and a predicate over no rows be true"
                    .into(),
            );
        }
        if let Some(rows) = self.store.chunk_rows {
            if !rows.is_power_of_two() || !(2..=1 << 20).contains(&rows) {
                return Err(format!(
                    "[store]: chunk_rows = {rows} is not a power of two in 2..=1048576"
                ));
            }
        }
        let s = &self.server;
        if s.proving_workers == 0
            || s.max_concurrent_requests == 0
            || s.donations_per_minute == 0
            || s.queries_per_token == 0
        {
            return Err("[server]: proving_workers, max_concurrent_requests, \
                        donations_per_minute and queries_per_token must be at least 1"
                .into());
        }
        for t in &s.tokens {
            if t.sha256.len() != 64 || hex::decode(&t.sha256).is_err() {
                return Err(format!(
                    "[[server.tokens]] {}: sha256 must be 64 hex digits",
                    t.name
                ));
            }
        }
        let p = &self.privacy;
        p.default_cost()?;
        if !(1..=MAX_ROOT_COINS).contains(&p.max_root_coins) {
            return Err(format!(
                "[privacy]: max_root_coins = {} is outside 1 to {MAX_ROOT_COINS}",
                p.max_root_coins
            ));
        }
        if !(p.budget_epsilon >= p.epsilon && p.budget_delta >= p.delta) {
            return Err(format!(
                "[privacy]: the budget ({}, {:e}) is smaller than one default query ({}, {:e})",
                p.budget_epsilon, p.budget_delta, p.epsilon, p.delta
            ));
        }
        if let Some(d) = p
            .threshold_only
            .iter()
            .find(|d| Schema::builtin(d).is_none())
        {
            return Err(format!(
                "[privacy]: threshold_only names {d:?}, which is not a built-in dataset"
            ));
        }
        for (dataset, policy) in &self.donors {
            policy
                .check()
                .map_err(|e| format!("[donors.{dataset}]: {e}"))?;
        }
        Ok(())
    }

    /// The built-in dataset `name` as this node registers it (with its chunk capacity,
    /// and threshold-only when `[privacy] threshold_only` names it).
    pub fn builtin_schema(&self, name: &str) -> Option<Schema> {
        let mut schema = Schema::builtin(name)?;
        if let Some(rows) = self.store.chunk_rows.filter(|r| *r != schema.chunk_rows) {
            schema = schema.with_chunk_rows(rows).ok()?;
        }
        if self.privacy.threshold_only.iter().any(|d| d == name) {
            schema = schema.threshold_only().ok()?;
        }
        Some(schema)
    }

    /// The shape limits and minimum group size queries run under.
    pub fn limits(&self) -> Limits {
        Limits {
            in_list: self.query.in_list_items,
            max_groups: self.query.max_groups,
            combine_inputs: self.query.combine_inputs,
            min_group_size: self.query.min_group_size,
        }
    }
}
