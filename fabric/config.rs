//! The node's configuration file (TOML). Every field has a default, so a node runs
//! without one.
//!
//! ```toml
//! [query]
//! default_purpose = "energy-research"  # used when a query names none
//! min_group_size = 10                  # k: smaller groups are suppressed
//! in_list_slots = 8                    # L: longest IN list
//! max_groups = 32                      # G: most codes of a GROUP BY column
//! combine_inputs = 8                   # K: partials one combine proof opens
//! ```

use std::path::Path;

use serde::Deserialize;

use crate::query::Limits;

/// The configuration.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// How queries are answered.
    #[serde(default)]
    pub query: QueryConfig,
}

/// The `[query]` table.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// Purpose of queries that name none.
    pub default_purpose: Option<String>,
    /// Minimum group size k.
    pub min_group_size: u64,
    /// IN-list slots L.
    pub in_list_slots: usize,
    /// Most group slots G.
    pub max_groups: usize,
    /// Combine fan-in K.
    pub combine_inputs: usize,
}

impl Default for QueryConfig {
    fn default() -> Self {
        let limits = Limits::default();
        Self {
            default_purpose: None,
            min_group_size: limits.min_group_size,
            in_list_slots: limits.in_list,
            max_groups: limits.max_groups,
            combine_inputs: limits.combine_inputs,
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
        let q = &config.query;
        if q.combine_inputs < 2 || q.in_list_slots == 0 || q.max_groups == 0 {
            return Err(ConfigError::Invalid {
                file: path.to_path_buf(),
                message: "[query]: combine_inputs must be at least 2, in_list_slots and \
                          max_groups at least 1"
                    .into(),
            });
        }
        Ok(config)
    }

    /// The shape limits and minimum group size queries run under.
    pub fn limits(&self) -> Limits {
        Limits {
            in_list: self.query.in_list_slots,
            max_groups: self.query.max_groups,
            combine_inputs: self.query.combine_inputs,
            min_group_size: self.query.min_group_size,
        }
    }
}
